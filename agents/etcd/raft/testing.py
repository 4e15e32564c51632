"""An in-memory network of Raft nodes for scripted and randomized tests.

Each node is a RawNode over a MemoryStorage that stands for its disk. The harness
plays the application: it persists each Ready, puts its messages on the wire,
applies committed entries to a tiny state machine (the list of applied payloads)
and advances. The test controls the wire: deliver, drop, reorder, partition,
isolate, heal, crash and restart (from the persisted storage only).

A ``SafetyMonitor`` watches every Ready and records violations of the Raft
safety properties (election safety, leader append-only, log matching, leader
completeness, state machine safety); ``network.monitor.assert_safe()`` checks them.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .raft import Config
from .rawnode import RawNode, Ready
from .storage import MemoryStorage
from .types import (
    ConfChange,
    ConfState,
    Entry,
    EntryType,
    Message,
    MessageType,
    Snapshot,
    StateType,
)

MT = MessageType


def encode_app_state(applied: list[tuple[int, bytes]]) -> bytes:
    return json.dumps([[i, d.hex()] for i, d in applied]).encode()


def decode_app_state(data: bytes) -> list[tuple[int, bytes]]:
    if not data:
        return []
    return [(i, bytes.fromhex(h)) for i, h in json.loads(data)]


@dataclass
class SafetyMonitor:
    leader_of_term: dict[int, int] = field(default_factory=dict)
    applied_at: dict[int, tuple[int, bytes]] = field(default_factory=dict)  # index -> (term, data)
    committed: dict[int, tuple[int, bytes]] = field(default_factory=dict)
    # (leader id, term) -> last index of its log at the last observation
    leader_logs: dict[tuple[int, int], int] = field(default_factory=dict)
    violations: dict[str, list[str]] = field(
        default_factory=lambda: {
            "election_safety": [],
            "leader_append_only": [],
            "log_matching": [],
            "leader_completeness": [],
            "state_machine_safety": [],
        }
    )

    def _violate(self, prop: str, what: str) -> None:
        self.violations[prop].append(what)

    def assert_safe(self) -> None:
        bad = {k: v[:3] for k, v in self.violations.items() if v}
        assert not bad, f"Raft safety violated: {bad}"

    def observe_leader(self, node_id: int, term: int, log_entries: dict[int, Entry]) -> None:
        prev = self.leader_of_term.setdefault(term, node_id)
        if prev != node_id:
            self._violate("election_safety", f"term {term} has two leaders: {prev} and {node_id}")
        # Leader completeness: every entry known committed is in the new leader's log.
        for i, (t, d) in self.committed.items():
            e = log_entries.get(i)
            if e is not None and (e.term != t or e.data != d):
                self._violate(
                    "leader_completeness",
                    f"leader {node_id} of term {term} has ({e.term}) at {i}, committed was ({t})",
                )
            elif e is None and i > max(log_entries, default=0):
                self._violate(
                    "leader_completeness",
                    f"leader {node_id} of term {term} lacks committed entry {i}",
                )

    def observe_leader_append(self, node_id: int, term: int, last_index: int, rd: Ready) -> None:
        """A leader only ever appends: each batch it persists extends its own log."""
        key = (node_id, term)
        prev_last = self.leader_logs.get(key)
        if rd.snapshot is not None:
            self._violate("leader_append_only", f"leader {node_id} (term {term}) took a snapshot")
        if rd.entries:
            first = rd.entries[0].index
            if prev_last is not None and first != prev_last + 1:
                self._violate(
                    "leader_append_only",
                    f"leader {node_id} (term {term}) rewrote its log from {first} (last was {prev_last})",
                )
            if any(e.term != term for e in rd.entries):
                self._violate(
                    "leader_append_only", f"leader {node_id} appended entries of another term"
                )
        if prev_last is not None and last_index < prev_last:
            self._violate("leader_append_only", f"leader {node_id} (term {term}) lost entries")
        self.leader_logs[key] = last_index

    def observe_commit(self, entries: Iterable[Entry]) -> None:
        for e in entries:
            self.committed.setdefault(e.index, (e.term, e.data))

    def observe_apply(self, node_id: int, e: Entry) -> None:
        prev = self.applied_at.setdefault(e.index, (e.term, e.data))
        if prev != (e.term, e.data):
            self._violate(
                "state_machine_safety",
                f"node {node_id} applied ({e.term}, {e.data!r}) at {e.index}, another applied {prev}",
            )

    def check_log_matching(self, logs: dict[int, dict[int, Entry]]) -> None:
        ids = sorted(logs)
        for a_pos, a in enumerate(ids):
            for b in ids[a_pos + 1 :]:
                la, lb = logs[a], logs[b]
                common = sorted(set(la) & set(lb))
                top = next((i for i in reversed(common) if la[i].term == lb[i].term), None)
                if top is None:
                    continue
                for i in common:
                    if i > top:
                        break
                    if la[i] != lb[i]:
                        self._violate(
                            "log_matching",
                            f"nodes {a} and {b} agree at {top} but differ at {i}: {la[i]} vs {lb[i]}",
                        )
                        break


class Network:
    def __init__(
        self,
        ids: Iterable[int] = (1, 2, 3),
        *,
        seed: int = 0,
        bootstrap: bool = True,
        **config: object,
    ) -> None:
        self.rand = random.Random(seed)
        self.config = dict(config)
        self.seed = seed
        self.nodes: dict[int, RawNode] = {}
        self.storages: dict[int, MemoryStorage] = {}
        self.applied: dict[int, list[tuple[int, bytes]]] = {}
        self.conf_states: dict[int, ConfState] = {}
        self.read_states: dict[int, list] = {}
        self.queue: list[Message] = []
        self.blocked: set[tuple[int, int]] = set()
        self.down: set[int] = set()
        self.monitor = SafetyMonitor()
        self.delivered = 0
        ids = list(ids)
        for i in ids:
            self.add_node(i, peers=ids if bootstrap else None)
        self.stabilize()

    # ------------------------------------------------------------------ nodes
    def _config(self, node_id: int, applied: int = 0) -> Config:
        cfg = dict(self.config)
        cfg.setdefault("seed", self.seed * 1000 + node_id)
        return Config(id=node_id, applied=applied, **cfg)

    def add_node(self, node_id: int, peers: list[int] | None = None) -> RawNode:
        """Start a node with empty storage (a new member when ``peers`` is None)."""
        st = MemoryStorage()
        self.storages[node_id] = st
        self.applied[node_id] = []
        self.read_states[node_id] = []
        self.conf_states[node_id] = ConfState()
        node = RawNode(self._config(node_id), st, peers=peers)
        self.nodes[node_id] = node
        self.down.discard(node_id)
        return node

    def crash(self, node_id: int) -> None:
        """Lose everything not persisted: the node, its unstable log, its messages."""
        self.down.add(node_id)
        # Messages it already sent stay on the wire (they may arrive after a restart).
        lost = [m for m in self.queue if m.to == node_id]
        self.queue = [m for m in self.queue if m.to != node_id]
        for m in lost:
            self._discard(m)  # a sender learns its snapshot was not delivered

    def restart(self, node_id: int) -> RawNode:
        """Bring a crashed node back from its persisted storage only."""
        st = self.storages[node_id]
        snap = st.snapshot()
        self.applied[node_id] = decode_app_state(snap.data)
        self.conf_states[node_id] = snap.metadata.conf_state
        self.read_states[node_id] = []
        node = RawNode(self._config(node_id, applied=snap.metadata.index), st)
        self.nodes[node_id] = node
        self.down.discard(node_id)
        return node

    def up(self) -> list[int]:
        return [i for i in self.nodes if i not in self.down]

    def compact(self, node_id: int) -> Snapshot:
        """Snapshot the node's state machine at its applied index and compact the log."""
        node = self.nodes[node_id]
        st = self.storages[node_id]
        idx = node.raft.log.applied
        snap = st.create_snapshot(
            idx, self.conf_states[node_id], encode_app_state(self.applied[node_id])
        )
        st.compact(idx)
        return snap

    # ------------------------------------------------------------------ the app loop
    def process_ready(self, node_id: int) -> bool:
        if node_id in self.down:
            return False
        node = self.nodes[node_id]
        if not node.has_ready():
            return False
        rd = node.ready()
        self._persist(node_id, rd)
        self._observe(node_id, rd)
        for m in rd.messages:
            self._send(m)
        self._apply(node_id, node, rd)
        node.advance(rd)
        return True

    def _persist(self, node_id: int, rd: Ready) -> None:
        st = self.storages[node_id]
        if rd.snapshot is not None:
            st.apply_snapshot(rd.snapshot)
        st.append(rd.entries)
        if rd.hard_state is not None:
            st.set_hard_state(rd.hard_state)

    def _apply(self, node_id: int, node: RawNode, rd: Ready) -> None:
        if rd.snapshot is not None:
            self.applied[node_id] = decode_app_state(rd.snapshot.data)
            self.conf_states[node_id] = rd.snapshot.metadata.conf_state
            for i, d in self.applied[node_id]:
                self.monitor.observe_apply(
                    node_id, Entry(self._term_hint(i), i, EntryType.EntryNormal, d)
                )
        for e in rd.committed_entries:
            if e.type == EntryType.EntryConfChange:
                self.conf_states[node_id] = node.apply_conf_change(ConfChange.decode(e.data))
            elif e.data:
                self.applied[node_id].append((e.index, e.data))
                self.monitor.observe_apply(node_id, e)
        self.read_states[node_id].extend(rd.read_states)

    def _term_hint(self, index: int) -> int:
        # Snapshots carry payloads, not terms: compare with what was applied elsewhere.
        return self.monitor.applied_at.get(index, (0, b""))[0]

    def _observe(self, node_id: int, rd: Ready) -> None:
        mon = self.monitor
        mon.observe_commit(rd.committed_entries)
        r = self.nodes[node_id].raft
        if r.state == StateType.StateLeader:
            if rd.soft_state is not None and rd.soft_state.raft_state == StateType.StateLeader:
                mon.observe_leader(node_id, r.term, self.log_of(node_id))
                # The batch that made us leader may still persist older entries
                # received as a follower; our own entries start at the first of our term.
                own = [e for e in rd.entries if e.term == r.term]
                if own:
                    mon.leader_logs[(node_id, r.term)] = own[0].index - 1
                    rd = Ready(entries=own)
            mon.observe_leader_append(node_id, r.term, r.log.last_index(), rd)

    def log_of(self, node_id: int) -> dict[int, Entry]:
        """The node's log (persisted and not), index -> entry, from its first index."""
        r = self.nodes[node_id].raft
        return {e.index: e for e in r.log.all_entries()}

    # ------------------------------------------------------------------ the wire
    def _send(self, m: Message) -> None:
        self.queue.append(m)

    def _can_deliver(self, m: Message) -> bool:
        return m.to in self.nodes and m.to not in self.down and (m.from_, m.to) not in self.blocked

    def _discard(self, m: Message) -> None:
        if m.type == MT.MsgSnap and m.from_ not in self.down and m.from_ in self.nodes:
            self.nodes[m.from_].report_snapshot(m.to, False)

    def deliver_one(self, m: Message) -> None:
        if not self._can_deliver(m):
            self._discard(m)
            return
        self.delivered += 1
        self.nodes[m.to].step(m)
        if m.type == MT.MsgSnap and m.from_ not in self.down:
            self.nodes[m.from_].report_snapshot(m.to, True)

    def deliver(self, pick: Callable[[Message], bool] | None = None) -> int:
        """Deliver the queued messages (those ``pick`` accepts; the rest stay queued)."""
        batch, keep = [], []
        for m in self.queue:
            (batch if pick is None or pick(m) else keep).append(m)
        self.queue = keep
        for m in batch:
            self.deliver_one(m)
        return len(batch)

    def drop(self, pick: Callable[[Message], bool] | None = None) -> list[Message]:
        """Remove queued messages (all, or those ``pick`` accepts) from the wire."""
        dropped = [m for m in self.queue if pick is None or pick(m)]
        self.queue = [m for m in self.queue if not (pick is None or pick(m))]
        for m in dropped:
            self._discard(m)
        return dropped

    def reorder(self) -> None:
        self.rand.shuffle(self.queue)

    def partition(self, *groups: Iterable[int]) -> None:
        """Only nodes within the same group can talk; nodes in no group are isolated."""
        groups = [set(g) for g in groups]
        self.blocked = set()
        for a in self.nodes:
            for b in self.nodes:
                if a != b and not any(a in g and b in g for g in groups):
                    self.blocked.add((a, b))

    def isolate(self, node_id: int) -> None:
        for other in self.nodes:
            if other != node_id:
                self.blocked.add((node_id, other))
                self.blocked.add((other, node_id))

    def cut(self, a: int, b: int) -> None:
        self.blocked.update({(a, b), (b, a)})

    def heal(self) -> None:
        self.blocked = set()

    # ------------------------------------------------------------------ driving
    def process_all(self) -> bool:
        did = False
        for i in list(self.nodes):
            did |= self.process_ready(i)
        return did

    def stabilize(self, max_rounds: int = 10_000) -> None:
        """Process Readies and deliver messages until nothing moves."""
        for _ in range(max_rounds):
            did = self.process_all()
            if self.queue:
                self.deliver()
                did = True
            if not did:
                return
        raise AssertionError(f"network did not stabilize within {max_rounds} rounds")

    def tick(self, n: int = 1, ids: Iterable[int] | None = None, stabilize: bool = True) -> None:
        ids = list(ids) if ids is not None else self.up()
        for _ in range(n):
            for i in ids:
                if i not in self.down:
                    self.nodes[i].tick()
            if stabilize:
                self.stabilize()

    def tick_until(self, cond: Callable[[], bool], max_ticks: int = 500) -> int:
        for n in range(max_ticks):
            if cond():
                return n
            self.tick()
        if cond():
            return max_ticks
        raise AssertionError(f"condition not reached within {max_ticks} ticks: {self.describe()}")

    def campaign(self, node_id: int) -> None:
        self.nodes[node_id].campaign()
        self.stabilize()

    def elect(self, node_id: int) -> None:
        self.campaign(node_id)
        assert self.nodes[node_id].is_leader, f"node {node_id} failed to win: {self.describe()}"

    def propose(self, node_id: int, data: bytes) -> None:
        self.nodes[node_id].propose(data)

    def leaders(self) -> list[int]:
        return [i for i in self.up() if self.nodes[i].is_leader]

    def leader(self) -> int | None:
        """The leader with the highest term among up nodes (None when there is none)."""
        ls = self.leaders()
        if not ls:
            return None
        return max(ls, key=lambda i: self.nodes[i].raft.term)

    def values(self, node_id: int) -> list[bytes]:
        return [d for _, d in self.applied[node_id]]

    def check_logs(self) -> None:
        self.monitor.check_log_matching({i: self.log_of(i) for i in self.nodes})

    def describe(self) -> str:
        parts = []
        for i, n in self.nodes.items():
            r = n.raft
            parts.append(
                f"{i}:{'DOWN ' if i in self.down else ''}{r.state.name[5:]} t{r.term} "
                f"lead={r.lead} commit={r.log.committed} last={r.log.last_index()}"
            )
        return "; ".join(parts)
