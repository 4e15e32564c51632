"""Snapshot files: the member's periodic snapshots and `etcdctl snapshot save` output.

One format for both: ``MAGIC, u64 body length, body, zero padding to a multiple of 512
bytes, sha256 of everything before it``. The padding and trailing 32-byte sha256 are what
etcdctl checks on save (size % 512 == 32); the body is a marshal of plain values
(index, term, voters, learners, application data), never code.
"""

from __future__ import annotations

import hashlib
import marshal
import os
import struct
from dataclasses import dataclass

MAGIC = b"LABETCD1"
LENGTH = struct.Struct("<Q")


class SnapshotError(Exception):
    pass


@dataclass(frozen=True)
class SnapshotFile:
    index: int
    term: int
    voters: tuple[int, ...]
    learners: tuple[int, ...]
    data: bytes  # the application's state (see agents.etcd.state)


def encode(snap: SnapshotFile) -> bytes:
    body = marshal.dumps((snap.index, snap.term, list(snap.voters), list(snap.learners), snap.data))
    raw = MAGIC + LENGTH.pack(len(body)) + body
    raw += b"\0" * (-len(raw) % 512)
    return raw + hashlib.sha256(raw).digest()


def decode(blob: bytes, what: str = "snapshot") -> SnapshotFile:
    if len(blob) < 512 + 32 or len(blob) % 512 != 32:
        raise SnapshotError(f"{what}: not a snapshot file (size {len(blob)} is not 512*n+32)")
    raw, digest = blob[:-32], blob[-32:]
    if hashlib.sha256(raw).digest() != digest:
        raise SnapshotError(f"{what}: sha256 mismatch (the file is damaged or incomplete)")
    if raw[: len(MAGIC)] != MAGIC:
        raise SnapshotError(f"{what}: unknown format (this member only reads its own snapshots)")
    (length,) = LENGTH.unpack_from(raw, len(MAGIC))
    start = len(MAGIC) + LENGTH.size
    index, term, voters, learners, data = marshal.loads(raw[start : start + length])
    return SnapshotFile(index, term, tuple(voters), tuple(learners), data)


def write_atomic(path: str, blob: bytes) -> None:
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(blob)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SnapDir:
    """``<dir>/<term:016x>-<index:016x>.snap``; keeps the newest few."""

    def __init__(self, dirpath: str, keep: int = 2) -> None:
        self.dir = dirpath
        self.keep = keep
        os.makedirs(dirpath, exist_ok=True)

    def _names(self) -> list[str]:
        names = [n for n in os.listdir(self.dir) if n.endswith(".snap")]
        return sorted(names, key=lambda n: int(n[17:33], 16))

    def save(self, snap: SnapshotFile) -> None:
        write_atomic(os.path.join(self.dir, f"{snap.term:016x}-{snap.index:016x}.snap"), encode(snap))
        for old in self._names()[: -self.keep]:
            os.unlink(os.path.join(self.dir, old))

    def load_newest(self) -> SnapshotFile | None:
        """The newest snapshot. A damaged one raises SnapshotError: the WAL was cut at
        it, so falling back to an older snapshot would silently lose writes."""
        names = self._names()
        if not names:
            return None
        path = os.path.join(self.dir, names[-1])
        with open(path, "rb") as f:
            return decode(f.read(), path)
