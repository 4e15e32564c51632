"""The application's persisted view of the log, as the Raft core reads it.

``Storage`` is what the core needs; ``MemoryStorage`` keeps it in memory (the app
writes its durable copy elsewhere and mirrors it here, as etcd does). The first
element of ``MemoryStorage._ents`` is a dummy entry carrying the snapshot's index
and term, so ``term(snapshot.index)`` is answerable after compaction.
"""

from __future__ import annotations

from typing import Protocol

from .types import (
    CompactedError,
    ConfState,
    Entry,
    HardState,
    Snapshot,
    SnapshotMeta,
    UnavailableError,
)


class Storage(Protocol):
    def initial_state(self) -> tuple[HardState, ConfState]: ...
    def entries(self, lo: int, hi: int, max_size: int | None = None) -> list[Entry]: ...
    def term(self, i: int) -> int: ...
    def last_index(self) -> int: ...
    def first_index(self) -> int: ...
    def snapshot(self) -> Snapshot: ...


def limit_size(ents: list[Entry], max_size: int | None) -> list[Entry]:
    """Keep a prefix of ``ents`` whose data fits ``max_size`` (always at least one)."""
    if max_size is None or len(ents) <= 1:
        return ents
    size = 0
    for n, e in enumerate(ents):
        size += len(e.data) + 24
        if size > max_size and n > 0:
            return ents[:n]
    return ents


class MemoryStorage:
    def __init__(self) -> None:
        self.hard_state = HardState()
        self._snapshot = Snapshot()
        self._ents: list[Entry] = [Entry(0, 0)]

    # ---- reads (used by the core) ----
    def initial_state(self) -> tuple[HardState, ConfState]:
        return self.hard_state, self._snapshot.metadata.conf_state

    def _offset(self) -> int:
        return self._ents[0].index

    def first_index(self) -> int:
        return self._ents[0].index + 1

    def last_index(self) -> int:
        return self._ents[0].index + len(self._ents) - 1

    def term(self, i: int) -> int:
        offset = self._ents[0].index
        if i < offset:
            raise CompactedError(f"index {i} is compacted (first is {offset + 1})")
        if i - offset >= len(self._ents):
            raise UnavailableError(f"index {i} is beyond the last entry {self.last_index()}")
        return self._ents[i - offset].term

    def entries(self, lo: int, hi: int, max_size: int | None = None) -> list[Entry]:
        """Entries [lo, hi)."""
        offset = self._ents[0].index
        if lo <= offset:
            raise CompactedError(f"index {lo} is compacted (first is {offset + 1})")
        if hi > self.last_index() + 1:
            raise UnavailableError(f"entries up to {hi - 1} requested, last is {self.last_index()}")
        return limit_size(self._ents[lo - offset : hi - offset], max_size)

    def snapshot(self) -> Snapshot:
        return self._snapshot

    # ---- writes (used by the application) ----
    def set_hard_state(self, hs: HardState) -> None:
        self.hard_state = hs

    def apply_snapshot(self, snap: Snapshot) -> None:
        """Replace the whole log with a snapshot received from the leader."""
        if snap.metadata.index <= self._snapshot.metadata.index:
            raise CompactedError(
                f"snapshot at {snap.metadata.index} is not newer than {self._snapshot.metadata.index}"
            )
        self._snapshot = snap
        self._ents = [Entry(snap.metadata.term, snap.metadata.index)]

    def create_snapshot(self, index: int, conf_state: ConfState | None, data: bytes) -> Snapshot:
        """Record the application's state as of applied ``index`` (entries are kept:
        call ``compact`` to drop them)."""
        if index <= self._snapshot.metadata.index:
            raise CompactedError(
                f"snapshot index {index} is not newer than {self._snapshot.metadata.index}"
            )
        if index > self.last_index():
            raise UnavailableError(
                f"snapshot index {index} is beyond the last entry {self.last_index()}"
            )
        cs = conf_state if conf_state is not None else self._snapshot.metadata.conf_state
        meta = SnapshotMeta(index=index, term=self.term(index), conf_state=cs)
        self._snapshot = Snapshot(meta, data)
        return self._snapshot

    def compact(self, index: int) -> None:
        """Drop entries up to and including ``index`` (they must be in a snapshot)."""
        offset = self._ents[0].index
        if index <= offset:
            raise CompactedError(f"index {index} is already compacted (first is {offset + 1})")
        if index > self.last_index():
            raise UnavailableError(f"compact {index} is beyond the last entry {self.last_index()}")
        i = index - offset
        self._ents = [Entry(self._ents[i].term, self._ents[i].index)] + self._ents[i + 1 :]

    def append(self, entries: list[Entry] | tuple[Entry, ...]) -> None:
        """Persist entries; a conflicting suffix of the stored log is replaced."""
        if not entries:
            return
        first = self.first_index()
        last = entries[-1].index
        if last < first:
            return  # all already compacted
        if first > entries[0].index:
            entries = entries[first - entries[0].index :]
        offset = entries[0].index - self._ents[0].index
        if offset > len(self._ents):
            raise UnavailableError(
                f"missing log entries: last stored {self.last_index()}, appending from {entries[0].index}"
            )
        del self._ents[offset:]
        self._ents.extend(entries)
