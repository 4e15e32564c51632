"""RawNode: the application's handle on the Raft core, and the Ready batch.

The application loop (one thread, or one asyncio task):

    node.tick()                       # every heartbeat interval / N
    node.step(msg)                    # every message from a peer
    node.propose(data)                # client writes (many per Ready is fine)
    if node.has_ready():
        rd = node.ready()
        persist rd.snapshot, rd.entries, rd.hard_state   (fsync if rd.must_sync)
        send rd.messages              # only after persisting
        apply rd.snapshot, then rd.committed_entries in order
        (call node.apply_conf_change(cc) for conf-change entries)
        serve rd.read_states once applied >= read_state.index
        node.advance(rd)

``ready()`` must be followed by ``advance()`` before the next ``ready()``.
Read requests need unique contexts (``read_index(ctx)``): a ReadState answers the
request with the same ``request_ctx``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .progress import ProgressState
from .raft import CAMPAIGN_ELECTION, CAMPAIGN_PRE_ELECTION, Config, Raft
from .storage import Storage
from .types import (
    LOCAL_MESSAGES,
    NONE,
    RESPONSE_MESSAGES,
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    ProposalDropped,
    ReadState,
    Snapshot,
    SoftState,
    StateType,
)

MT = MessageType


@dataclass(slots=True)
class Ready:
    soft_state: SoftState | None = None
    hard_state: HardState | None = None
    entries: list[Entry] = field(default_factory=list)
    snapshot: Snapshot | None = None
    committed_entries: list[Entry] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    read_states: list[ReadState] = field(default_factory=list)
    must_sync: bool = False


class RawNode:
    def __init__(self, config: Config, storage: Storage, peers: list[int] | None = None) -> None:
        self.raft = Raft(config, storage)
        if peers:
            self._bootstrap(storage, peers)
        self._prev_soft = self.raft.soft_state()
        self._prev_hard = self.raft.hard_state() if not peers else HardState()
        self._outstanding: Ready | None = None

    def _bootstrap(self, storage: Storage, peers: list[int]) -> None:
        """Start a brand-new cluster: the first log entries add every peer (term 1)."""
        if storage.last_index() != 0:
            raise ValueError(
                "cannot bootstrap with peers: storage already holds a log "
                "(restart with peers=None to resume from storage)"
            )
        if len(set(peers)) != len(peers) or any(p <= 0 for p in peers):
            raise ValueError(f"peers must be distinct positive ids, got {peers}")
        r = self.raft
        r.become_follower(1, NONE)
        ents = [
            Entry(
                1,
                i + 1,
                EntryType.EntryConfChange,
                ConfChange(ConfChangeType.ConfChangeAddNode, p).encode(),
            )
            for i, p in enumerate(peers)
        ]
        r.log.append(ents)
        r.log.committed = len(ents)  # everyone bootstraps the same entries
        for p in peers:
            r.apply_conf_change(ConfChange(ConfChangeType.ConfChangeAddNode, p))

    # ---- inputs
    def tick(self) -> None:
        self.raft.tick()

    def campaign(self) -> None:
        """Start an election now (with pre-vote if configured). Ignored on a leader, a
        learner, or while committed conf changes wait to be applied."""
        r = self.raft
        r.hup(CAMPAIGN_PRE_ELECTION if r.pre_vote else CAMPAIGN_ELECTION)

    def propose(self, data: bytes) -> None:
        """Propose one entry; raises ProposalDropped (NotLeader when there is no leader)."""
        r = self.raft
        r.step(Message(MT.MsgProp, from_=r.id, entries=(Entry(0, 0, EntryType.EntryNormal, data),)))

    def propose_many(self, datas: list[bytes]) -> None:
        """Propose several entries in one message (cheaper than one propose each)."""
        r = self.raft
        ents = tuple(Entry(0, 0, EntryType.EntryNormal, d) for d in datas)
        r.step(Message(MT.MsgProp, from_=r.id, entries=ents))

    def propose_conf_change(self, cc: ConfChange) -> None:
        r = self.raft
        e = Entry(0, 0, EntryType.EntryConfChange, cc.encode())
        r.step(Message(MT.MsgProp, from_=r.id, entries=(e,)))

    def apply_conf_change(self, cc: ConfChange) -> ConfState:
        return self.raft.apply_conf_change(cc)

    def step(self, m: Message) -> None:
        """Feed a message from a peer. Messages from unknown peers' responses are ignored."""
        if m.type in LOCAL_MESSAGES:
            raise ValueError(f"{m.type.name} is local to a node and cannot arrive from a peer")
        if m.type in RESPONSE_MESSAGES and m.from_ not in self.raft.trk.progress:
            return
        try:
            self.raft.step(m)
        except ProposalDropped:
            if m.from_ in (NONE, self.raft.id):
                raise
            # a proposal forwarded by a peer: the peer's client retries

    def read_index(self, ctx: bytes) -> None:
        """Ask for a linearizable read point; the answer comes as a ReadState with ``ctx``."""
        r = self.raft
        r.step(Message(MT.MsgReadIndex, from_=r.id, context=bytes(ctx)))

    def transfer_leader(self, to_id: int) -> None:
        self.raft.step(Message(MT.MsgTransferLeader, from_=to_id))

    def report_unreachable(self, node_id: int) -> None:
        self.raft.step(Message(MT.MsgUnreachable, from_=node_id))

    def report_snapshot(self, node_id: int, ok: bool) -> None:
        self.raft.step(Message(MT.MsgSnapStatus, from_=node_id, reject=not ok))

    # ---- outputs
    def has_ready(self) -> bool:
        """Is there anything to persist, send or apply? (Also emits the appends and
        heartbeats deferred to batch them, so call it after a burst of inputs.)"""
        r = self.raft
        r.flush_appends()
        if r.msgs or r.read_states:
            return True
        log = r.log
        if log.unstable.entries or log.unstable.snapshot is not None:
            return True
        if log.has_next_committed_ents():
            return True
        soft, hard = self._prev_soft, self._prev_hard
        if r.lead != soft.lead or r.state != soft.raft_state:
            return True
        return (r.term, r.vote, log.committed) != (hard.term, hard.vote, hard.commit) and bool(
            r.term or r.vote or log.committed
        )

    def ready(self) -> Ready:
        if self._outstanding is not None:
            raise RuntimeError("ready() called again before advance() of the previous Ready")
        r = self.raft
        r.flush_appends()
        log = r.log
        rd = Ready(
            entries=log.unstable_entries(),
            committed_entries=log.next_committed_ents(),
            messages=r.msgs,
            read_states=r.read_states,
            snapshot=log.unstable.snapshot,
        )
        r.msgs = []
        r.read_states = []
        soft = r.soft_state()
        if soft != self._prev_soft:
            rd.soft_state = soft
            self._prev_soft = soft
        hs = r.hard_state()
        if hs != self._prev_hard:
            rd.hard_state = hs
            rd.must_sync = hs.term != self._prev_hard.term or hs.vote != self._prev_hard.vote
            self._prev_hard = hs
        if rd.entries or rd.snapshot is not None:
            rd.must_sync = True
        self._outstanding = rd
        return rd

    def advance(self, rd: Ready) -> None:
        if rd is not self._outstanding:
            raise RuntimeError("advance() must be given the Ready returned by the last ready()")
        self._outstanding = None
        log = self.raft.log
        if rd.snapshot is not None:
            log.stable_snap_to(rd.snapshot.metadata.index)
        if rd.entries:
            last = rd.entries[-1]
            log.stable_to(last.index, last.term)
        applied = 0
        if rd.committed_entries:
            applied = rd.committed_entries[-1].index
        elif rd.snapshot is not None:
            applied = rd.snapshot.metadata.index
        if applied > log.applied:
            log.applied_to(applied)

    # ---- introspection
    def status(self) -> dict:
        r = self.raft
        st = {
            "id": r.id,
            "term": r.term,
            "vote": r.vote,
            "lead": r.lead,
            "state": r.state.name,
            "commit": r.log.committed,
            "applied": r.log.applied,
            "last_index": r.log.last_index(),
            "lead_transferee": r.lead_transferee,
            "voters": sorted(r.trk.voters),
            "learners": sorted(r.trk.learners),
            "progress": {},
        }
        if r.state == StateType.StateLeader:
            st["progress"] = {
                i: {
                    "match": pr.match,
                    "next": pr.next,
                    "state": ProgressState(pr.state).name,
                    "learner": pr.is_learner,
                    "recent_active": pr.recent_active,
                    "paused": pr.is_paused(),
                    "inflight": pr.inflights.count(),
                }
                for i, pr in r.trk.progress.items()
            }
        return st

    @property
    def id(self) -> int:
        return self.raft.id

    @property
    def lead(self) -> int:
        return self.raft.lead

    @property
    def is_leader(self) -> bool:
        return self.raft.state == StateType.StateLeader
