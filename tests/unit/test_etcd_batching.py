"""Adaptive batching in the member's loop: new proposals wait while a batch is in flight.

The Raft node is a recording fake: these tests check only when proposals (local ones and
peers' forwarded MsgProp) are handed to Raft, not Raft itself.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from agents.etcd import raft, state
from agents.etcd.config import parse_args
from agents.etcd.node import Node

pytestmark = pytest.mark.unit

MT = raft.MessageType


class FakeRawNode:
    def __init__(self) -> None:
        self.raft = SimpleNamespace(log=SimpleNamespace(committed=0, last=0))
        self.raft.log.last_index = lambda: self.raft.log.last
        self.calls: list[tuple[str, object]] = []

    def step(self, m: raft.Message) -> None:
        self.calls.append(("step", m.type))

    def propose_many(self, datas: list[bytes]) -> None:
        self.calls.append(("propose", [state.decode_head(d)[1] for d in datas]))
        self.raft.log.last += len(datas)

    def report_unreachable(self, peer_id: int) -> None:
        self.calls.append(("unreachable", peer_id))


def make_node(tmp_path, leader: bool, hold_ms: float = 20) -> tuple[Node, FakeRawNode]:
    cfg = parse_args([
        "--name", "n1", "--data-dir", str(tmp_path),
        "--initial-cluster", "n1=http://127.0.0.1:1,n2=http://127.0.0.1:2,n3=http://127.0.0.1:3",
        "--initial-advertise-peer-urls", "http://127.0.0.1:1",
    ])  # fmt: skip
    node = Node(cfg)
    node.max_hold_s = hold_ms / 1000
    node.is_leader = leader
    node.leader = node.id if leader else 2
    return node, FakeRawNode()


def client_proposal(node: Node, req_id: int) -> None:
    """What Node.propose queues for a client (without awaiting the answer)."""
    node.waiters[req_id] = (None, None, 1e18)  # only its presence matters here
    node.proposals.append(state.encode_entry(state.OP_PUT, req_id, b""))


def forwarded(from_: int) -> raft.Message:
    e = raft.Entry(0, 0, raft.EntryType.EntryNormal, state.encode_entry(state.OP_PUT, 99, b""))
    return raft.Message(MT.MsgProp, from_=from_, entries=(e,))


def test_lone_proposal_goes_out_at_once(tmp_path) -> None:
    node, rn = make_node(tmp_path, leader=True)
    client_proposal(node, 1)
    node._feed(rn)
    assert rn.calls == [("propose", [1])]
    assert not node.proposals and not node._hold_since


def test_leader_holds_local_and_forwarded_proposals_while_a_batch_is_uncommitted(tmp_path) -> None:
    node, rn = make_node(tmp_path, leader=True)
    client_proposal(node, 1)
    node._feed(rn)  # batch 1 in flight: last index 1, committed 0
    client_proposal(node, 2)
    client_proposal(node, 3)
    node.inbox += [forwarded(2), raft.Message(MT.MsgAppResp, from_=2, index=1)]
    node._feed(rn)
    # the ack is stepped (it is what commits batch 1); the proposals wait
    assert rn.calls == [("propose", [1]), ("step", MT.MsgAppResp)]
    assert len(node.held_props) == 1 and len(node.proposals) == 2
    rn.raft.log.committed = 1  # batch 1 committed
    node._feed(rn)
    assert rn.calls[2:] == [("step", MT.MsgProp), ("propose", [2, 3])]
    assert not node.held_props and not node.proposals and not node._hold_since


def test_held_proposals_go_out_after_max_hold_even_if_the_batch_never_commits(tmp_path) -> None:
    node, rn = make_node(tmp_path, leader=True, hold_ms=5)
    client_proposal(node, 1)
    node._feed(rn)
    client_proposal(node, 2)
    node._feed(rn)
    assert rn.calls == [("propose", [1])]
    deadline = time.monotonic() + 2
    while len(rn.calls) == 1 and time.monotonic() < deadline:
        node._feed(rn)
    assert rn.calls == [("propose", [1]), ("propose", [2])]
    assert node._hold_since == 0


def test_follower_holds_until_its_previous_batch_is_applied(tmp_path) -> None:
    node, rn = make_node(tmp_path, leader=False)
    client_proposal(node, 1)
    node._feed(rn)  # forwarded to the leader by Raft
    client_proposal(node, 2)
    node._feed(rn)
    assert rn.calls == [("propose", [1])]
    del node.waiters[1]  # applied here: its client was answered
    node._feed(rn)
    assert rn.calls == [("propose", [1]), ("propose", [2])]


def test_zero_max_hold_turns_batching_off(tmp_path) -> None:
    node, rn = make_node(tmp_path, leader=True, hold_ms=0)
    client_proposal(node, 1)
    node._feed(rn)
    client_proposal(node, 2)
    node.inbox.append(forwarded(3))
    node._feed(rn)
    assert rn.calls == [("propose", [1]), ("step", MT.MsgProp), ("propose", [2])]
