"""End to end: a register replicated by the Raft core, driven by concurrent clients
under partitions, crashes and message loss, produces a linearizable history
(checked with labctl.chaos's WGL checker); local reads on a deposed leader do not.

Operations are entries ``op-id|f|key|arg``; a node's register state is the replay
of its applied entries (so it survives snapshots). A write or cas completes when
the client's node applies it; a read goes through ReadIndex and completes when the
node has applied up to the read index. The mod_revision of a key is the Raft
index of the entry that last changed it.
"""

from __future__ import annotations

import contextlib
import json
import os
import random

import pytest

from agents.etcd.raft import MessageType, ProposalDropped
from agents.etcd.raft.testing import Network
from labctl.chaos import Event, check

pytestmark = pytest.mark.unit

SEEDS = int(os.environ.get("RAFT_LIN_SEEDS", "6"))


_replayed: dict[int, tuple[list, int, dict, dict]] = {}


def replay(applied: list[tuple[int, bytes]]) -> tuple[dict, dict]:
    """Register state {key: (value, mod_revision)} and op outcomes {op_id: (ok, revision)}.

    Incremental: a node's applied list only grows until a snapshot or restart
    replaces it (a new list object)."""
    cached = _replayed.get(id(applied))
    if cached is not None and cached[0] is applied and cached[1] <= len(applied):
        _, done, state, outcome = cached
    else:
        done, state, outcome = 0, {}, {}
    for index, data in applied[done:]:
        op = json.loads(data)
        value, rev = state.get(op["key"], (None, 0))
        if op["f"] == "write":
            state[op["key"]] = (op["arg"], index)
            outcome[op["id"]] = (True, index)
        elif op["f"] == "cas":
            expected, new = op["arg"]
            if value == expected:
                state[op["key"]] = (new, index)
                outcome[op["id"]] = (True, index)
            else:
                outcome[op["id"]] = (False, None)
    _replayed[id(applied)] = (applied, len(applied), state, outcome)
    return dict(state), outcome


class Clients:
    """Concurrent clients, each attached to one node, recording a Jepsen-style history."""

    def __init__(self, net: Network, rng: random.Random, n: int, keys=("x", "y")) -> None:
        self.net, self.rng, self.keys = net, rng, keys
        self.history: list[Event] = []
        self.now = 0.0
        self.pending: dict[int, dict] = {}  # client -> op in flight
        self.process = {c: c for c in range(n)}  # a client gets a new process id after an info
        self.next_id = 0
        self.n = n
        self.timeout = 60

    def _event(self, c: int, kind: str, op: dict, value=None, revision=None) -> None:
        self.now += 1
        self.history.append(
            Event(self.process[c], kind, op["f"], op["key"], value, self.now, revision)
        )

    def invoke(self, c: int, local_reads: bool = False) -> None:
        up = self.net.up()
        node = self.rng.choice(up)
        f = self.rng.choice(["read", "read", "write", "cas"])
        key = self.rng.choice(self.keys)
        self.next_id += 1
        op = {"id": self.next_id, "f": f, "key": key, "node": node, "age": 0}
        if f == "write":
            op["arg"] = self.next_id
        elif f == "cas":
            op["arg"] = [
                self.rng.choice([None, *range(max(1, self.next_id - 6), self.next_id)]),
                self.next_id,
            ]
        inv_value = tuple(op["arg"]) if f == "cas" else op.get("arg")
        self._event(c, "invoke", op, inv_value)
        self.pending[c] = op
        try:
            if f == "read":
                if local_reads:  # serve from local state without ReadIndex (NOT linearizable)
                    state, _ = replay(self.net.applied[node])
                    value, rev = state.get(key, (None, 0))
                    del self.pending[c]
                    self._event(c, "ok", op, value, rev)
                    return
                self.net.nodes[node].read_index(b"%d" % op["id"])
            else:
                payload = {k: op[k] for k in ("id", "f", "key", "arg")}
                self.net.nodes[node].propose(json.dumps(payload).encode())
        except ProposalDropped:
            del self.pending[c]
            self._event(c, "fail", op, inv_value)

    def poll(self) -> None:
        for c, op in list(self.pending.items()):
            node = op["node"]
            op["age"] += 1
            if node in self.net.down or op["age"] > self.timeout:
                self._give_up(c, op)
                continue
            if op["f"] == "read":
                rs = next(
                    (r for r in self.net.read_states[node] if r.request_ctx == b"%d" % op["id"]),
                    None,
                )
                if rs is None or self.net.nodes[node].raft.log.applied < rs.index:
                    continue
                state, _ = replay(self.net.applied[node])
                value, rev = state.get(op["key"], (None, 0))
                del self.pending[c]
                self._event(c, "ok", op, value, rev)
            else:
                _, outcome = replay(self.net.applied[node])
                if op["id"] not in outcome:
                    continue
                ok, rev = outcome[op["id"]]
                del self.pending[c]
                arg = tuple(op["arg"]) if op["f"] == "cas" else op["arg"]
                self._event(c, "ok" if ok else "fail", op, arg, rev)

    def _give_up(self, c: int, op: dict) -> None:
        del self.pending[c]
        arg = tuple(op["arg"]) if op["f"] == "cas" else op.get("arg")
        self._event(c, "info", op, arg)
        self.process[c] = (c, self.next_id)  # the old process may still be in flight

    def finish(self) -> None:
        for c, op in list(self.pending.items()):
            self._give_up(c, op)


def run_history(seed: int, steps: int = 300) -> list[Event]:
    rng = random.Random(seed)
    ids = [1, 2, 3] if seed % 2 else [1, 2, 3, 4, 5]
    net = Network(ids, seed=seed, election_tick=6, pre_vote=True, check_quorum=True)
    clients = Clients(net, rng, n=5)
    for _ in range(steps):
        x = rng.random()
        if x < 0.03:
            k = rng.randrange(1, len(ids))
            shuffled = rng.sample(ids, len(ids))
            net.partition(shuffled[:k], shuffled[k:])
        elif x < 0.06:
            net.heal()
        elif x < 0.08 and len(net.up()) > len(ids) // 2 + 1:
            net.crash(rng.choice(net.up()))
        elif x < 0.11 and net.down:
            net.restart(rng.choice(sorted(net.down)))
        elif x < 0.13:
            i = rng.choice(net.up())
            st = net.storages[i]
            if net.nodes[i].raft.log.applied > st.snapshot().metadata.index:
                net.compact(i)
        for c in range(clients.n):
            if c not in clients.pending and rng.random() < 0.5:
                clients.invoke(c)
        net.tick(1, stabilize=False)
        for _ in range(3):
            net.process_all()
            rng.shuffle(net.queue)
            net.drop(lambda m: rng.random() < 0.05)
            net.deliver()
        clients.poll()
    clients.finish()
    net.monitor.assert_safe()
    return clients.history


@pytest.fixture(scope="module")
def histories() -> dict[int, list[Event]]:
    return {seed: run_history(seed) for seed in range(SEEDS)}


def test_register_histories_under_faults_are_linearizable(histories):
    for seed, history in histories.items():
        result = check(history)
        assert result.linearizable is True, f"seed {seed}: {result.explain()}"
        assert sum(1 for e in history if e.type == "ok") > 50, seed


def test_histories_include_indeterminate_and_failed_operations(histories):
    kinds = [e.type for h in histories.values() for e in h]
    assert "info" in kinds and "fail" in kinds
    assert {e.f for h in histories.values() for e in h} == {"read", "write", "cas"}


def test_local_reads_on_a_deposed_leader_are_caught():
    """Reading local state without ReadIndex on a partitioned old leader returns a
    stale value; the checker finds the anomaly. The same read through ReadIndex
    never completes instead."""
    net = Network([1, 2, 3], seed=3)
    net.elect(1)
    clients = Clients(net, random.Random(0), n=3, keys=("x",))
    rng = clients.rng

    def do(c, node, f, local=False):
        clients.rng = _Fixed(node, f, "x")
        clients.invoke(c, local_reads=local)
        net.stabilize()
        clients.poll()
        clients.rng = rng

    do(0, 1, "write")  # x = 1, acknowledged
    net.isolate(1)
    net.tick(12, ids=[2, 3])  # 2 and 3 elect a new leader; 1 still believes it leads
    assert net.nodes[1].is_leader and net.leader() in (2, 3)
    do(1, net.leader(), "write")  # x = 2, acknowledged by the new majority
    do(2, 1, "read", local=True)  # stale local read on the old leader
    result = check(clients.history)
    assert result.linearizable is False
    assert result.failing_op.f == "read"

    # Through ReadIndex the old leader cannot confirm its leadership: no answer.
    do(2, 1, "read")
    assert 2 in clients.pending
    clients.finish()


class _Fixed:
    """A stand-in random source that makes Clients.invoke pick a given node and op."""

    def __init__(self, node, f, key):
        self.node, self.f, self.key = node, f, key

    def choice(self, seq):
        if self.node in seq:
            return self.node
        if self.f in seq:
            return self.f
        if self.key in seq:
            return self.key
        return seq[-1]


def test_message_types_used_on_the_wire_are_exercised():
    seen = set()
    net = Network([1, 2, 3], seed=5)
    orig = net.deliver_one

    def spy(m):
        seen.add(m.type)
        orig(m)

    net.deliver_one = spy
    clients = Clients(net, random.Random(5), n=3)
    for _ in range(150):
        for c in range(3):
            if c not in clients.pending:
                with contextlib.suppress(ProposalDropped):
                    clients.invoke(c)
        net.tick(1)
        clients.poll()
    assert {
        MessageType.MsgApp,
        MessageType.MsgAppResp,
        MessageType.MsgHeartbeat,
        MessageType.MsgPreVote,
        MessageType.MsgVote,
    } <= seen
