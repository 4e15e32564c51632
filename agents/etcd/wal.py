"""Write-ahead log: Raft entries and hard states, checksummed, fsynced before acknowledging.

A WAL is a directory of segment files ``<seq:016x>.wal``; each holds records
``[u32 length][u32 crc32(type+payload)][u8 type][payload]``. Recovery reads the segments
in order. A damaged record at the very end (the write was torn by a crash: the record
runs past the end of the file, or its checksum fails and nothing follows) is cut off;
damage with valid data after it means the log itself is corrupt, and the member refuses
to start rather than silently losing acknowledged writes.

After a snapshot the log is rewritten into a new segment holding only the hard state and
the entries after the snapshot (``rewrite``), then older segments are deleted.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass, field

HEADER = struct.Struct("<II")
ENTRY = struct.Struct("<QQB")
HARD_STATE = struct.Struct("<QQQ")

REC_ENTRY = 1
REC_HARD_STATE = 2


class WalCorrupt(Exception):
    """The log is damaged before its end: starting would lose or invent data."""


@dataclass
class WalContents:
    """What recovery found: entries (index, term, type, data) and the last hard state."""

    entries: list[tuple[int, int, int, bytes]] = field(default_factory=list)
    hard_state: tuple[int, int, int] | None = None  # term, vote, commit
    truncated_bytes: int = 0


def _segments(dirpath: str) -> list[str]:
    names = sorted(n for n in os.listdir(dirpath) if n.endswith(".wal"))
    return [os.path.join(dirpath, n) for n in names]


def _fsync_dir(dirpath: str) -> None:
    fd = os.open(dirpath, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def encode_entry(index: int, term: int, etype: int, data: bytes) -> bytes:
    return _record(REC_ENTRY, ENTRY.pack(index, term, etype) + data)


def encode_hard_state(term: int, vote: int, commit: int) -> bytes:
    return _record(REC_HARD_STATE, HARD_STATE.pack(term, vote, commit))


def _record(rtype: int, payload: bytes) -> bytes:
    body = bytes((rtype,)) + payload
    return HEADER.pack(len(body), zlib.crc32(body)) + body


def _parse(path: str, data: bytes, out: WalContents, is_last: bool) -> int:
    """Apply the records of one segment to out; returns the length of its valid prefix."""
    pos, size = 0, len(data)
    while pos < size:
        bad = None
        if pos + HEADER.size > size:
            bad = "a record header runs past the end of the file"
        else:
            length, crc = HEADER.unpack_from(data, pos)
            end = pos + HEADER.size + length
            if length == 0 or end > size:
                bad = f"a record of {length} bytes runs past the end of the file"
            elif zlib.crc32(data[pos + HEADER.size : end]) != crc:
                bad = "checksum mismatch"
                if end < size:
                    raise WalCorrupt(
                        f"WAL {path} is corrupt at byte {pos}: {bad} with more records after it; "
                        "refusing to start (restore this member from a snapshot or remove it "
                        "from the cluster and add it back)"
                    )
        if bad is not None:
            if not is_last:
                raise WalCorrupt(f"WAL {path} is corrupt at byte {pos}: {bad}, and it is not the last segment")
            return pos
        rtype = data[pos + HEADER.size]
        body = data[pos + HEADER.size + 1 : end]
        if rtype == REC_ENTRY:
            index, term, etype = ENTRY.unpack_from(body)
            entry = (index, term, etype, bytes(body[ENTRY.size :]))
            ents = out.entries
            if ents and index <= ents[-1][0]:
                # A newer leader overwrote the tail: drop the replaced entries.
                first = ents[0][0]
                del ents[max(0, index - first) :]
            ents.append(entry)
        elif rtype == REC_HARD_STATE:
            out.hard_state = HARD_STATE.unpack_from(body)
        else:
            raise WalCorrupt(f"WAL {path} has an unknown record type {rtype} at byte {pos}")
        pos = end
    return pos


def read_wal(dirpath: str, repair: bool = True) -> WalContents:
    """Read every segment; cut a torn tail off the last one (when repair is set)."""
    out = WalContents()
    if not os.path.isdir(dirpath):
        return out
    segs = _segments(dirpath)
    for n, path in enumerate(segs):
        with open(path, "rb") as f:
            data = f.read()
        valid = _parse(path, data, out, is_last=n == len(segs) - 1)
        if valid < len(data):
            out.truncated_bytes = len(data) - valid
            if repair:
                with open(path, "r+b") as f:
                    f.truncate(valid)
                    os.fsync(f.fileno())
    return out


class Wal:
    """Appends records to the newest segment; ``sync`` makes them durable."""

    def __init__(self, dirpath: str) -> None:
        self.dir = dirpath
        os.makedirs(dirpath, exist_ok=True)
        segs = _segments(dirpath)
        if segs:
            self.seq = int(os.path.basename(segs[-1])[:-4], 16)
            self.f = open(segs[-1], "ab", buffering=0)  # noqa: SIM115 - lives as long as the WAL
        else:
            self.seq = 0
            self.f = self._create(0)
        self.pending: list[bytes] = []

    def _create(self, seq: int):
        path = os.path.join(self.dir, f"{seq:016x}.wal")
        f = open(path, "ab", buffering=0)  # noqa: SIM115
        _fsync_dir(self.dir)
        return f

    def append(self, record: bytes) -> None:
        self.pending.append(record)

    def write(self) -> bool:
        """Write buffered records to the file (no fsync); True if there were any."""
        if not self.pending:
            return False
        self.f.write(b"".join(self.pending))
        self.pending.clear()
        return True

    def sync(self) -> None:
        os.fdatasync(self.f.fileno())

    def rewrite(self, records: list[bytes]) -> None:
        """Start a new segment with exactly these records, then drop the older ones."""
        self.write()
        self.sync()
        old = _segments(self.dir)
        new = self._create(self.seq + 1)
        new.write(b"".join(records))
        os.fdatasync(new.fileno())
        self.f.close()
        self.f, self.seq = new, self.seq + 1
        for path in old:
            os.unlink(path)
        _fsync_dir(self.dir)

    def close(self) -> None:
        self.write()
        self.f.close()
