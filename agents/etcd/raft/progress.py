"""The leader's view of each peer's log (Progress) and the quorum arithmetic.

A follower's progress is in one of three states:
- Probe: we do not know where its log matches; send one append, then wait for a
  reply (or a heartbeat reply) before the next one.
- Replicate: it accepted our appends; send optimistically (``next`` runs ahead of
  ``match``) with at most ``max_inflight`` unacknowledged appends in flight.
- Snapshot: it needs entries we compacted; a snapshot is on its way, send nothing.
"""

from __future__ import annotations

from collections import deque
from enum import IntEnum


class ProgressState(IntEnum):
    Probe = 0
    Replicate = 1
    Snapshot = 2


class VoteResult(IntEnum):
    Pending = 0
    Lost = 1
    Won = 2


class Inflights:
    """Last indexes of appends sent but not yet acknowledged, oldest first."""

    __slots__ = ("size", "_q")

    def __init__(self, size: int) -> None:
        self.size = size
        self._q: deque[int] = deque()

    def add(self, last_index: int) -> None:
        self._q.append(last_index)

    def free_le(self, to: int) -> None:
        q = self._q
        while q and q[0] <= to:
            q.popleft()

    def free_first_one(self) -> None:
        if self._q:
            self._q.popleft()

    def full(self) -> bool:
        return len(self._q) >= self.size

    def count(self) -> int:
        return len(self._q)

    def reset(self) -> None:
        self._q.clear()


class Progress:
    __slots__ = (
        "match",
        "next",
        "state",
        "pending_snapshot",
        "recent_active",
        "probe_sent",
        "inflights",
        "is_learner",
    )

    def __init__(self, next_index: int, max_inflight: int, is_learner: bool = False) -> None:
        self.match = 0
        self.next = next_index
        self.state = ProgressState.Probe
        self.pending_snapshot = 0
        self.recent_active = False
        self.probe_sent = False
        self.inflights = Inflights(max_inflight)
        self.is_learner = is_learner

    def __repr__(self) -> str:
        return (
            f"Progress({self.state.name} match={self.match} next={self.next}"
            f"{' learner' if self.is_learner else ''}"
            f"{' paused' if self.is_paused() else ''}"
            f"{f' pending_snap={self.pending_snapshot}' if self.state == ProgressState.Snapshot else ''})"
        )

    def _reset_state(self, state: ProgressState) -> None:
        self.probe_sent = False
        self.pending_snapshot = 0
        self.state = state
        self.inflights.reset()

    def become_probe(self) -> None:
        if self.state == ProgressState.Snapshot:
            pending = self.pending_snapshot
            self._reset_state(ProgressState.Probe)
            self.next = max(self.match + 1, pending + 1)
        else:
            self._reset_state(ProgressState.Probe)
            self.next = self.match + 1

    def become_replicate(self) -> None:
        self._reset_state(ProgressState.Replicate)
        self.next = self.match + 1

    def become_snapshot(self, snapshot_index: int) -> None:
        self._reset_state(ProgressState.Snapshot)
        self.pending_snapshot = snapshot_index

    def maybe_update(self, n: int) -> bool:
        """The peer acknowledged entries up to ``n``; False if that is old news."""
        updated = False
        if self.match < n:
            self.match = n
            updated = True
            self.probe_sent = False
        self.next = max(self.next, n + 1)
        return updated

    def maybe_decr_to(self, rejected: int, match_hint: int) -> bool:
        """The peer rejected an append at ``rejected``; move ``next`` back.

        False when the rejection is stale (answers an append we already moved past)."""
        if self.state == ProgressState.Replicate:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, match_hint + 1), self.match + 1)
        self.probe_sent = False
        return True

    def is_paused(self) -> bool:
        if self.state == ProgressState.Probe:
            return self.probe_sent
        if self.state == ProgressState.Replicate:
            return self.inflights.full()
        return True


class ProgressTracker:
    """Voters, learners, their progress, and the votes of the current election."""

    def __init__(self, max_inflight: int) -> None:
        self.max_inflight = max_inflight
        self.voters: set[int] = set()
        self.learners: set[int] = set()
        self.progress: dict[int, Progress] = {}
        self.votes: dict[int, bool] = {}

    def quorum(self) -> int:
        return len(self.voters) // 2 + 1

    def is_singleton(self) -> bool:
        return len(self.voters) == 1

    def committed(self) -> int:
        """Highest index replicated on a quorum of voters."""
        if not self.voters:
            return 0
        matches = sorted((self.progress[v].match for v in self.voters), reverse=True)
        return matches[self.quorum() - 1]

    def quorum_active(self) -> bool:
        active = sum(1 for v in self.voters if self.progress[v].recent_active)
        return active >= self.quorum()

    def reset_votes(self) -> None:
        self.votes = {}

    def record_vote(self, node_id: int, granted: bool) -> None:
        self.votes.setdefault(node_id, granted)

    def vote_result(self, votes: dict[int, bool] | set[int]) -> VoteResult:
        """Outcome of ``votes`` (granted set, or id -> granted) among the voters."""
        if isinstance(votes, set):
            votes = {v: True for v in votes}
        granted = sum(1 for v in self.voters if votes.get(v) is True)
        rejected = sum(1 for v in self.voters if votes.get(v) is False)
        if granted >= self.quorum():
            return VoteResult.Won
        if len(self.voters) - rejected >= self.quorum():
            return VoteResult.Pending
        return VoteResult.Lost

    def tally_votes(self) -> tuple[int, int, VoteResult]:
        granted = sum(1 for v in self.voters if self.votes.get(v) is True)
        rejected = sum(1 for v in self.voters if self.votes.get(v) is False)
        return granted, rejected, self.vote_result(self.votes)

    def set_progress(self, node_id: int, match: int, next_index: int, is_learner: bool) -> Progress:
        pr = Progress(next_index, self.max_inflight, is_learner)
        pr.match = match
        self.progress[node_id] = pr
        (self.learners if is_learner else self.voters).add(node_id)
        (self.voters if is_learner else self.learners).discard(node_id)
        return pr

    def remove(self, node_id: int) -> None:
        self.progress.pop(node_id, None)
        self.voters.discard(node_id)
        self.learners.discard(node_id)
