"""The Raft state machine: no I/O, no threads, no clock (time is ``tick()``).

Rules this module keeps (numbers refer to the Raft paper / thesis):
- Every message from a higher term makes us a follower of that term first, except
  pre-votes (they never change terms) and votes inside a leader lease when
  check-quorum is on (a node that heard from a leader recently ignores them, §4.2.3).
- A node grants one vote per term, only to a log at least as up to date as its own.
- Pre-vote (§9.6): a node first asks whether it *could* win at term+1; only if a
  quorum says yes does it bump its term, so a node rejoining from a partition
  cannot depose a healthy leader.
- The leader appends an empty entry when elected and commits only entries of its
  own term by counting replicas (§5.4.2); earlier entries commit with them.
- Outgoing messages accumulate in ``msgs``; the caller persists new entries and
  hard state before sending them (the RawNode's Ready contract).
- Proposals and commit-index advances are broadcast lazily (``flush_appends``): many
  proposals between two Ready batches become one MsgApp per follower.
- Membership changes are single-node steps taking effect when the app applies the
  entry; only one may be pending (uncommitted or unapplied) at a time.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from .log import RaftLog
from .progress import ProgressState, ProgressTracker, VoteResult
from .readonly import ReadOnly
from .storage import Storage
from .types import (
    NONE,
    CompactedError,
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    NotLeader,
    ProposalDropped,
    ReadState,
    Snapshot,
    SnapshotTemporarilyUnavailable,
    SoftState,
    StateType,
    UnavailableError,
)

MT = MessageType
CAMPAIGN_PRE_ELECTION = b"CampaignPreElection"
CAMPAIGN_ELECTION = b"CampaignElection"
CAMPAIGN_TRANSFER = b"CampaignTransfer"


@dataclass(slots=True)
class Config:
    id: int
    election_tick: int = 10
    heartbeat_tick: int = 1
    pre_vote: bool = True
    check_quorum: bool = True
    max_inflight_msgs: int = 256
    max_size_per_msg: int = 1 << 20
    applied: int = 0
    seed: int | None = None
    disable_proposal_forwarding: bool = False
    # Serve ReadIndex from the leader lease instead of a heartbeat round (needs check_quorum).
    read_only_lease_based: bool = False

    def validate(self) -> None:
        if self.id <= 0:
            raise ValueError(f"Config.id must be a positive integer, got {self.id}")
        if self.heartbeat_tick <= 0:
            raise ValueError(f"Config.heartbeat_tick must be > 0, got {self.heartbeat_tick}")
        if self.election_tick <= self.heartbeat_tick:
            raise ValueError(
                f"Config.election_tick ({self.election_tick}) must be greater than "
                f"heartbeat_tick ({self.heartbeat_tick})"
            )
        if self.max_inflight_msgs <= 0:
            raise ValueError(f"Config.max_inflight_msgs must be > 0, got {self.max_inflight_msgs}")
        if self.read_only_lease_based and not self.check_quorum:
            raise ValueError("Config.read_only_lease_based needs check_quorum=True")


def vote_response_type(t: MessageType) -> MessageType:
    return MT.MsgPreVoteResp if t == MT.MsgPreVote else MT.MsgVoteResp


class Raft:
    def __init__(self, config: Config, storage: Storage) -> None:
        config.validate()
        self.id = config.id
        self.log = RaftLog(storage, config.max_size_per_msg)
        self.max_msg_size = config.max_size_per_msg
        self.trk = ProgressTracker(config.max_inflight_msgs)
        self.term = 0
        self.vote = NONE
        self.lead = NONE
        self.state = StateType.StateFollower
        self.is_learner = False
        self.msgs: list[Message] = []
        self.read_states: list[ReadState] = []
        self.lead_transferee = NONE
        self.pending_conf_index = 0
        self.read_only = ReadOnly()
        self.pending_read_index_messages: list[Message] = []
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.check_quorum = config.check_quorum
        self.pre_vote = config.pre_vote
        self.lease_reads = config.read_only_lease_based
        self.heartbeat_timeout = config.heartbeat_tick
        self.election_timeout = config.election_tick
        self.randomized_election_timeout = config.election_tick
        self.disable_proposal_forwarding = config.disable_proposal_forwarding
        self.rand = random.Random(config.seed if config.seed is not None else config.id)
        self.append_pending = False  # entries or a new commit index await broadcast
        self.read_heartbeat_pending = False  # ReadIndex requests await a heartbeat round

        hs, cs = storage.initial_state()
        self._apply_conf_state(cs)
        if hs != HardState():
            self._load_state(hs)
        if config.applied > 0:
            self.log.applied_to(config.applied)
        self.become_follower(self.term, NONE)

    # ------------------------------------------------------------------ state
    def soft_state(self) -> SoftState:
        return SoftState(self.lead, self.state)

    def hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.log.committed)

    def _load_state(self, hs: HardState) -> None:
        if hs.commit < self.log.committed or hs.commit > self.log.last_index():
            raise ValueError(
                f"hard state commit {hs.commit} is out of range "
                f"[{self.log.committed}, {self.log.last_index()}]: storage is inconsistent"
            )
        self.log.committed = hs.commit
        self.term = hs.term
        self.vote = hs.vote

    def conf_state(self) -> ConfState:
        return ConfState(tuple(sorted(self.trk.voters)), tuple(sorted(self.trk.learners)))

    def _apply_conf_state(self, cs: ConfState) -> None:
        self.trk = ProgressTracker(self.trk.max_inflight)
        nxt = self.log.last_index() + 1
        for v in cs.voters:
            self.trk.set_progress(v, 0, nxt, False)
        for v in cs.learners:
            self.trk.set_progress(v, 0, nxt, True)
        me = self.trk.progress.get(self.id)
        if me is not None:
            me.match = self.log.last_index()
        self.is_learner = self.id in self.trk.learners

    def promotable(self) -> bool:
        return (
            self.id in self.trk.progress
            and self.id in self.trk.voters
            and not self.log.has_pending_snapshot()
        )

    # ------------------------------------------------------------------ sending
    def send(self, m: Message) -> None:
        if m.from_ == NONE:
            m = replace(m, from_=self.id)
        if m.type in (MT.MsgVote, MT.MsgVoteResp, MT.MsgPreVote, MT.MsgPreVoteResp):
            assert m.term != 0, f"{m.type.name} must carry a term"
        elif m.term == 0 and m.type not in (MT.MsgProp, MT.MsgReadIndex):
            m = replace(m, term=self.term)
        self.msgs.append(m)

    def _send(self, t: MessageType, to: int = NONE, term: int = 0, **fields) -> None:
        """Queue a message from us; ``term`` defaults to ours (votes always give one)."""
        if term == 0 and t not in (MT.MsgProp, MT.MsgReadIndex):
            term = self.term
        self.msgs.append(Message(t, to=to, from_=self.id, term=term, **fields))

    def maybe_send_append(self, to: int, send_if_empty: bool = True) -> bool:
        pr = self.trk.progress[to]
        if pr.is_paused():
            return False
        prev = pr.next - 1
        try:
            log_term = self.log.term(prev)
            ents = self.log.entries(pr.next, self.max_msg_size)
        except (CompactedError, UnavailableError):
            return self._send_snapshot(to)
        if not ents and not send_if_empty:
            return False
        self.msgs.append(
            Message(
                MT.MsgApp,
                to=to,
                from_=self.id,
                term=self.term,
                log_term=log_term,
                index=prev,
                entries=tuple(ents),
                commit=self.log.committed,
            )
        )
        if pr.state == ProgressState.Replicate:
            if ents:
                last = ents[-1].index
                pr.next = last + 1
                pr.inflights.add(last)
        elif pr.state == ProgressState.Probe:
            pr.probe_sent = True
        return True

    def _send_snapshot(self, to: int) -> bool:
        pr = self.trk.progress[to]
        if not pr.recent_active:
            return False  # do not ship a snapshot to a peer that may be down
        try:
            snap = self.log.snapshot()
        except SnapshotTemporarilyUnavailable:
            return False
        if snap.is_empty():
            raise AssertionError("need a non-empty snapshot to catch up a follower")
        self._send(MT.MsgSnap, to=to, snapshot=snap)
        pr.become_snapshot(snap.metadata.index)
        return True

    def send_heartbeat(self, to: int, ctx: bytes) -> None:
        # A follower may not have the entries up to our commit yet.
        commit = min(self.trk.progress[to].match, self.log.committed)
        self.msgs.append(
            Message(
                MT.MsgHeartbeat, to=to, from_=self.id, term=self.term, commit=commit, context=ctx
            )
        )

    def _peers(self) -> list[int]:
        return [i for i in self.trk.progress if i != self.id]

    def bcast_append(self) -> None:
        for to in self._peers():
            if self.maybe_send_append(to, True):
                while self.maybe_send_append(to, False):
                    pass

    def bcast_heartbeat(self, ctx: bytes | None = None) -> None:
        if ctx is None:
            ctx = self.read_only.last_pending_request_ctx()
        for to in self._peers():
            self.send_heartbeat(to, ctx)

    def flush_appends(self) -> None:
        """Send what was deferred since the last Ready: appends (batched proposals and
        commit-index advances) and the heartbeat round confirming pending reads."""
        if self.append_pending:
            self.append_pending = False
            if self.state == StateType.StateLeader:
                self.bcast_append()
        if self.read_heartbeat_pending:
            self.read_heartbeat_pending = False
            if self.state == StateType.StateLeader:
                self.bcast_heartbeat()

    # ------------------------------------------------------------------ transitions
    def reset(self, term: int) -> None:
        if self.term != term:
            self.term = term
            self.vote = NONE
        self.lead = NONE
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.reset_randomized_election_timeout()
        self.lead_transferee = NONE
        self.trk.reset_votes()
        last = self.log.last_index()
        for node_id, pr in list(self.trk.progress.items()):
            new = self.trk.set_progress(node_id, 0, last + 1, pr.is_learner)
            if node_id == self.id:
                new.match = last
        self.pending_conf_index = 0
        self.read_only = ReadOnly()
        self.append_pending = False
        self.read_heartbeat_pending = False

    def reset_randomized_election_timeout(self) -> None:
        self.randomized_election_timeout = self.election_timeout + self.rand.randrange(
            self.election_timeout
        )

    def become_follower(self, term: int, lead: int) -> None:
        self.reset(term)
        self.lead = lead
        self.state = StateType.StateFollower
        self.pending_read_index_messages = []

    def become_pre_candidate(self) -> None:
        assert self.state != StateType.StateLeader, "leader cannot become pre-candidate"
        self.trk.reset_votes()
        self.lead = NONE
        self.state = StateType.StatePreCandidate

    def become_candidate(self) -> None:
        assert self.state != StateType.StateLeader, "leader cannot become candidate"
        self.reset(self.term + 1)
        self.vote = self.id
        self.state = StateType.StateCandidate

    def become_leader(self) -> None:
        assert self.state != StateType.StateFollower, "follower cannot become leader"
        self.reset(self.term)
        self.lead = self.id
        self.state = StateType.StateLeader
        me = self.trk.progress[self.id]
        me.become_replicate()
        me.recent_active = True
        # Conservatively treat any unapplied entry as a possible conf change.
        self.pending_conf_index = self.log.last_index()
        self.append_entries([Entry()])
        self.append_pending = True

    # ------------------------------------------------------------------ ticks
    def tick(self) -> None:
        if self.state == StateType.StateLeader:
            self._tick_heartbeat()
        else:
            self._tick_election()

    def past_election_timeout(self) -> bool:
        return self.election_elapsed >= self.randomized_election_timeout

    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if self.promotable() and self.past_election_timeout():
            self.election_elapsed = 0
            self.step(Message(MT.MsgHup, from_=self.id))

    def _tick_heartbeat(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.election_timeout:
            self.election_elapsed = 0
            if self.check_quorum:
                self.step(Message(MT.MsgCheckQuorum, from_=self.id))
            if self.state == StateType.StateLeader and self.lead_transferee != NONE:
                self.lead_transferee = NONE  # transfer did not finish in time
        if self.state != StateType.StateLeader:
            return
        if self.heartbeat_elapsed >= self.heartbeat_timeout:
            self.heartbeat_elapsed = 0
            self.step(Message(MT.MsgBeat, from_=self.id))

    # ------------------------------------------------------------------ elections
    def hup(self, kind: bytes) -> None:
        if self.state == StateType.StateLeader:
            return
        if not self.promotable():
            return
        if self._has_unapplied_conf_change():
            return  # the config we would campaign under is about to change
        self.campaign(kind)

    def _has_unapplied_conf_change(self) -> bool:
        if self.log.applied >= self.log.committed:
            return False
        try:
            ents = self.log.slice(
                max(self.log.applied + 1, self.log.first_index()), self.log.committed + 1, None
            )
        except CompactedError:
            return False
        return any(e.type == EntryType.EntryConfChange for e in ents)

    def campaign(self, kind: bytes) -> None:
        if not self.promotable():
            return
        if kind == CAMPAIGN_PRE_ELECTION:
            self.become_pre_candidate()
            vote_msg = MT.MsgPreVote
            term = self.term + 1
        else:
            self.become_candidate()
            vote_msg = MT.MsgVote
            term = self.term
        if self._poll(self.id, vote_response_type(vote_msg), True) == VoteResult.Won:
            # single-voter cluster
            if kind == CAMPAIGN_PRE_ELECTION:
                self.campaign(CAMPAIGN_ELECTION)
            else:
                self.become_leader()
            return
        ctx = CAMPAIGN_TRANSFER if kind == CAMPAIGN_TRANSFER else b""
        last = self.log.last_index()
        last_term = self.log.last_term()
        for v in sorted(self.trk.voters):
            if v == self.id:
                continue
            self._send(vote_msg, to=v, term=term, index=last, log_term=last_term, context=ctx)

    def _poll(self, node_id: int, t: MessageType, granted: bool) -> VoteResult:
        self.trk.record_vote(node_id, granted)
        return self.trk.tally_votes()[2]

    # ------------------------------------------------------------------ step
    def step(self, m: Message) -> None:
        """Feed one message; raises ProposalDropped/NotLeader for refused local requests."""
        if m.term == 0:
            pass  # local message
        elif m.term > self.term:
            if m.type in (MT.MsgVote, MT.MsgPreVote):
                force = m.context == CAMPAIGN_TRANSFER
                in_lease = (
                    self.check_quorum
                    and self.lead != NONE
                    and self.election_elapsed < self.election_timeout
                )
                if not force and in_lease:
                    return  # we heard from a live leader recently: ignore (§4.2.3)
            if m.type == MT.MsgPreVote:
                pass  # never change term on a pre-vote
            elif m.type == MT.MsgPreVoteResp and not m.reject:
                pass  # the term is bumped once a quorum grants the pre-vote
            elif m.type in (MT.MsgApp, MT.MsgHeartbeat, MT.MsgSnap):
                self.become_follower(m.term, m.from_)
            else:
                self.become_follower(m.term, NONE)
        elif m.term < self.term:
            if (self.check_quorum or self.pre_vote) and m.type in (MT.MsgHeartbeat, MT.MsgApp):
                # A stale leader (e.g. back from a partition) learns our term and steps
                # down; otherwise it could keep a follower from ever campaigning.
                self._send(MT.MsgAppResp, to=m.from_)
            elif m.type == MT.MsgPreVote:
                self._send(MT.MsgPreVoteResp, to=m.from_, term=self.term, reject=True)
            return

        t = m.type
        if t == MT.MsgHup:
            self.hup(CAMPAIGN_PRE_ELECTION if self.pre_vote else CAMPAIGN_ELECTION)
        elif t in (MT.MsgVote, MT.MsgPreVote):
            can_vote = (
                self.vote == m.from_
                or (self.vote == NONE and self.lead == NONE)
                or (t == MT.MsgPreVote and m.term > self.term)
            )
            if can_vote and self.log.is_up_to_date(m.index, m.log_term):
                self._send(vote_response_type(t), to=m.from_, term=m.term)
                if t == MT.MsgVote:
                    self.election_elapsed = 0
                    self.vote = m.from_
            else:
                self._send(vote_response_type(t), to=m.from_, term=self.term, reject=True)
        elif self.state == StateType.StateLeader:
            self._step_leader(m)
        elif self.state == StateType.StateFollower:
            self._step_follower(m)
        else:
            self._step_candidate(m)

    # ---- leader
    def _step_leader(self, m: Message) -> None:
        t = m.type
        if t == MT.MsgBeat:
            self.bcast_heartbeat()
            return
        if t == MT.MsgCheckQuorum:
            if not self.trk.quorum_active():
                self.become_follower(self.term, NONE)
            for node_id, pr in self.trk.progress.items():
                if node_id != self.id:
                    pr.recent_active = False
            return
        if t == MT.MsgProp:
            self._propose(m)
            return
        if t == MT.MsgReadIndex:
            if self.trk.is_singleton():
                self._respond_read_index(m, self.log.committed)
            elif not self._committed_entry_in_current_term():
                # The commit index is only known to be current once an entry of our
                # term commits (§6.4): hold the request until then.
                self.pending_read_index_messages.append(m)
            else:
                self._send_read_index_response(m)
            return

        pr = self.trk.progress.get(m.from_)
        if pr is None:
            return
        if t == MT.MsgAppResp:
            pr.recent_active = True
            if m.reject:
                next_probe = m.reject_hint
                if m.log_term > 0:
                    next_probe, _ = self.log.find_conflict_by_term(m.reject_hint, m.log_term)
                if pr.maybe_decr_to(m.index, next_probe):
                    if pr.state == ProgressState.Replicate:
                        pr.become_probe()
                    self.maybe_send_append(m.from_)
                return
            old_paused = pr.is_paused()
            if not pr.maybe_update(m.index):
                return
            if pr.state == ProgressState.Probe:
                pr.become_replicate()
            elif pr.state == ProgressState.Snapshot and pr.match + 1 >= self.log.first_index():
                pr.become_probe()
                pr.become_replicate()
            elif pr.state == ProgressState.Replicate:
                pr.inflights.free_le(m.index)
            if self._maybe_commit():
                self._release_pending_read_index_messages()
                self.append_pending = True
            elif old_paused:
                self.maybe_send_append(m.from_)
            while self.maybe_send_append(m.from_, False):
                pass
            if m.from_ == self.lead_transferee and pr.match == self.log.last_index():
                self._send(MT.MsgTimeoutNow, to=m.from_)
        elif t == MT.MsgHeartbeatResp:
            pr.recent_active = True
            pr.probe_sent = False
            if pr.state == ProgressState.Replicate and pr.inflights.full():
                pr.inflights.free_first_one()
            if pr.match < self.log.last_index():
                self.maybe_send_append(m.from_)
            if self.lease_reads or not m.context:
                return
            acks = self.read_only.recv_ack(m.from_, m.context)
            if acks is None or self.trk.vote_result(acks) != VoteResult.Won:
                return
            for rs in self.read_only.advance(m.context):
                self._respond_read_index(rs.req, rs.index)
        elif t == MT.MsgSnapStatus:
            if pr.state != ProgressState.Snapshot:
                return
            if m.reject:
                pr.pending_snapshot = 0
            pr.become_probe()
            # wait for a heartbeat response before probing again
            pr.probe_sent = True
        elif t == MT.MsgUnreachable:
            if pr.state == ProgressState.Replicate:
                pr.become_probe()
        elif t == MT.MsgTransferLeader:
            if pr.is_learner:
                return
            transferee = m.from_
            if self.lead_transferee != NONE:
                if self.lead_transferee == transferee:
                    return
                self.lead_transferee = NONE
            if transferee == self.id:
                return
            self.election_elapsed = 0  # the transfer must finish within an election timeout
            self.lead_transferee = transferee
            if pr.match == self.log.last_index():
                self._send(MT.MsgTimeoutNow, to=transferee)
            else:
                self.maybe_send_append(transferee)

    def _propose(self, m: Message) -> None:
        if not m.entries:
            raise ValueError("MsgProp without entries")
        if self.id not in self.trk.progress:
            raise ProposalDropped("this node was removed from the cluster")
        if self.lead_transferee != NONE:
            raise ProposalDropped(f"leadership is being transferred to {self.lead_transferee}")
        ents = list(m.entries)
        for i, e in enumerate(ents):
            if e.type == EntryType.EntryConfChange:
                if self.pending_conf_index > self.log.applied:
                    raise ProposalDropped(
                        "a configuration change is still pending; retry once it is applied"
                    )
                self.pending_conf_index = self.log.last_index() + i + 1
        self.append_entries(ents)
        self.append_pending = True

    def append_entries(self, ents: list[Entry]) -> None:
        li = self.log.last_index()
        term = self.term
        es = [Entry(term, li + 1 + i, e.type, e.data) for i, e in enumerate(ents)]
        li = self.log.append(es)
        self.trk.progress[self.id].maybe_update(li)
        self._maybe_commit()

    def _maybe_commit(self) -> bool:
        return self.log.maybe_commit(self.trk.committed(), self.term)

    def _committed_entry_in_current_term(self) -> bool:
        return self.log.term_or_zero(self.log.committed) == self.term

    def _release_pending_read_index_messages(self) -> None:
        if not self._committed_entry_in_current_term():
            return
        msgs, self.pending_read_index_messages = self.pending_read_index_messages, []
        for m in msgs:
            self._send_read_index_response(m)

    def _send_read_index_response(self, m: Message) -> None:
        if self.lease_reads:
            self._respond_read_index(m, self.log.committed)
            return
        self.read_only.add_request(self.log.committed, m)
        self.read_only.recv_ack(self.id, m.context)
        # One heartbeat round (at the next Ready) confirms every read queued so far.
        self.read_heartbeat_pending = True

    def _respond_read_index(self, req: Message, index: int) -> None:
        if req.from_ in (NONE, self.id):
            self.read_states.append(ReadState(index, req.context))
        else:
            self._send(MT.MsgReadIndexResp, to=req.from_, index=index, context=req.context)

    # ---- candidate
    def _step_candidate(self, m: Message) -> None:
        t = m.type
        my_resp = MT.MsgPreVoteResp if self.state == StateType.StatePreCandidate else MT.MsgVoteResp
        if t == MT.MsgProp:
            raise NotLeader(NONE, "no leader: an election is in progress")
        if t == MT.MsgReadIndex:
            raise NotLeader(NONE, "no leader: an election is in progress")
        if t == MT.MsgApp:
            self.become_follower(m.term, m.from_)
            self._handle_append_entries(m)
        elif t == MT.MsgHeartbeat:
            self.become_follower(m.term, m.from_)
            self._handle_heartbeat(m)
        elif t == MT.MsgSnap:
            self.become_follower(m.term, m.from_)
            self._handle_snapshot(m)
        elif t == my_resp:
            res = self._poll(m.from_, t, not m.reject)
            if res == VoteResult.Won:
                if self.state == StateType.StatePreCandidate:
                    self.campaign(CAMPAIGN_ELECTION)
                else:
                    self.become_leader()
            elif res == VoteResult.Lost:
                # MsgPreVoteResp carries a future term when rejected for being stale.
                self.become_follower(self.term, NONE)

    # ---- follower
    def _step_follower(self, m: Message) -> None:
        t = m.type
        if t == MT.MsgProp:
            if self.lead == NONE:
                raise NotLeader(NONE, "no leader known: proposal dropped")
            if self.disable_proposal_forwarding:
                raise NotLeader(self.lead)
            self.send(replace(m, to=self.lead))
        elif t == MT.MsgApp:
            self.election_elapsed = 0
            self.lead = m.from_
            self._handle_append_entries(m)
        elif t == MT.MsgHeartbeat:
            self.election_elapsed = 0
            self.lead = m.from_
            self._handle_heartbeat(m)
        elif t == MT.MsgSnap:
            self.election_elapsed = 0
            self.lead = m.from_
            self._handle_snapshot(m)
        elif t == MT.MsgTransferLeader:
            if self.lead == NONE:
                raise NotLeader(NONE, "no leader known: cannot transfer leadership")
            self.send(replace(m, to=self.lead))
        elif t == MT.MsgTimeoutNow:
            # Leadership transfer never uses pre-vote: the leader asked for it.
            self.hup(CAMPAIGN_TRANSFER)
        elif t == MT.MsgReadIndex:
            if self.lead == NONE:
                raise NotLeader(NONE, "no leader known: read index dropped")
            self.send(replace(m, to=self.lead))
        elif t == MT.MsgReadIndexResp:
            self.read_states.append(ReadState(m.index, m.context))

    def _handle_append_entries(self, m: Message) -> None:
        if m.index < self.log.committed:
            self._send(MT.MsgAppResp, to=m.from_, index=self.log.committed)
            return
        last_new = self.log.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if last_new is not None:
            self._send(MT.MsgAppResp, to=m.from_, index=last_new)
            return
        # Reject with a hint: our largest index <= m.index whose term <= m.log_term.
        hint_index = min(m.index, self.log.last_index())
        hint_index, hint_term = self.log.find_conflict_by_term(hint_index, m.log_term)
        self._send(
            MT.MsgAppResp,
            to=m.from_,
            index=m.index,
            reject=True,
            reject_hint=hint_index,
            log_term=hint_term,
        )

    def _handle_heartbeat(self, m: Message) -> None:
        self.log.commit_to(m.commit)
        self._send(MT.MsgHeartbeatResp, to=m.from_, context=m.context)

    def _handle_snapshot(self, m: Message) -> None:
        snap = m.snapshot
        if snap is not None and self.restore(snap):
            self._send(MT.MsgAppResp, to=m.from_, index=self.log.last_index())
        else:
            self._send(MT.MsgAppResp, to=m.from_, index=self.log.committed)

    def restore(self, snap: Snapshot) -> bool:
        """Adopt a leader's snapshot; False if it brings nothing new."""
        if snap.metadata.index <= self.log.committed:
            return False
        if self.state != StateType.StateFollower:
            self.become_follower(self.term + 1, NONE)
        if self.log.match_term(snap.metadata.index, snap.metadata.term):
            # We already have the entries: just fast-forward the commit index.
            self.log.commit_to(snap.metadata.index)
            return False
        self.log.restore(snap)
        self._apply_conf_state(snap.metadata.conf_state)
        return True

    # ------------------------------------------------------------------ membership
    def apply_conf_change(self, cc: ConfChange) -> ConfState:
        if cc.node_id == NONE:
            return self.conf_state()
        if cc.type == ConfChangeType.ConfChangeAddNode:
            self._add_node(cc.node_id, learner=False)
        elif cc.type == ConfChangeType.ConfChangeAddLearnerNode:
            self._add_node(cc.node_id, learner=True)
        elif cc.type == ConfChangeType.ConfChangeRemoveNode:
            self._remove_node(cc.node_id)
        return self.conf_state()

    def _add_node(self, node_id: int, learner: bool) -> None:
        pr = self.trk.progress.get(node_id)
        if pr is None:
            pr = self.trk.set_progress(node_id, 0, self.log.last_index() + 1, learner)
            # A fresh member counts as active, or check-quorum could depose us at once.
            pr.recent_active = True
            if node_id == self.id:
                pr.match = self.log.last_index()
        elif learner and not pr.is_learner:
            return  # a voter is never demoted to learner by AddLearner
        elif learner == pr.is_learner:
            return  # already there
        else:
            pr.is_learner = False
            self.trk.learners.discard(node_id)
            self.trk.voters.add(node_id)
        if node_id == self.id:
            self.is_learner = learner
        if self.state == StateType.StateLeader and self._maybe_commit():
            self.append_pending = True

    def _remove_node(self, node_id: int) -> None:
        self.trk.remove(node_id)
        if node_id == self.id:
            self.is_learner = False
        if not self.trk.voters:
            return
        if self.state != StateType.StateLeader:
            return
        if node_id == self.id:
            # We removed ourselves: hand over to the most up-to-date voter at once
            # rather than letting the cluster wait for an election timeout.
            best = max(self.trk.voters, key=lambda v: self.trk.progress[v].match)
            if self.trk.progress[best].match == self.log.last_index():
                self._send(MT.MsgTimeoutNow, to=best)
            self.become_follower(self.term, NONE)
            return
        if self._maybe_commit():
            self.append_pending = True
        if self.lead_transferee == node_id:
            self.lead_transferee = NONE
