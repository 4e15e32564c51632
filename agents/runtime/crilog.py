"""Container logs in the CRI file format the kubelet reads and serves:

    <RFC3339Nano timestamp> <stdout|stderr> <F|P> <content>\\n

``F`` marks the end of a line of the container's output, ``P`` a partial piece (a line
longer than ``MAX_LINE`` is split into P pieces and a final F one; output that ends
without a newline is written as F when the stream closes). Pure formatting and
splitting here; the shim owns the file. The shim imports this module on every container
start: only ``time`` (no datetime, no typing).
"""

from __future__ import annotations

import time

MAX_LINE = 16 * 1024
STREAMS = ("stdout", "stderr")


def rfc3339_nano(epoch_ns: int) -> str:
    seconds, nanos = divmod(epoch_ns, 1_000_000_000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{stamp}.{nanos:09d}Z"


def format_line(epoch_ns: int, stream: str, content: bytes, partial: bool) -> bytes:
    if stream not in STREAMS:
        raise ValueError(f"stream must be stdout or stderr, not {stream!r}")
    tag = b"P" if partial else b"F"
    return rfc3339_nano(epoch_ns).encode() + b" " + stream.encode() + b" " + tag + b" " + content + b"\n"


class LogEntry(tuple):
    """(timestamp, stream, partial, content), with those names as attributes."""

    __slots__ = ()

    def __new__(cls, timestamp: str, stream: str, partial: bool, content: bytes):
        return super().__new__(cls, (timestamp, stream, partial, content))

    timestamp = property(lambda self: self[0])
    stream = property(lambda self: self[1])
    partial = property(lambda self: self[2])
    content = property(lambda self: self[3])


def parse_line(line: bytes) -> LogEntry:
    """One line of a CRI log file (without or with its trailing newline)."""
    parts = line.rstrip(b"\n").split(b" ", 3)
    if len(parts) < 3 or parts[1].decode() not in STREAMS or parts[2] not in (b"F", b"P"):
        raise ValueError(f"not a CRI log line: {line[:80]!r}")
    content = parts[3] if len(parts) == 4 else b""
    return LogEntry(parts[0].decode(), parts[1].decode(), parts[2] == b"P", content)


class LineSplitter:
    """Feed raw bytes of one stream; get back (content, partial) pieces to log."""

    def __init__(self, max_line: int = MAX_LINE):
        self.max_line = max_line
        self._pending = b""

    def feed(self, data: bytes) -> list[tuple[bytes, bool]]:
        self._pending += data
        out: list[tuple[bytes, bool]] = []
        while True:
            newline = self._pending.find(b"\n", 0, self.max_line + 1)
            if newline >= 0:
                out.append((self._pending[:newline], False))
                self._pending = self._pending[newline + 1 :]
            elif len(self._pending) > self.max_line:
                out.append((self._pending[: self.max_line], True))
                self._pending = self._pending[self.max_line :]
            else:
                return out

    def close(self) -> list[tuple[bytes, bool]]:
        """The stream ended: whatever is left is the end of a (last) line."""
        rest, self._pending = self._pending, b""
        return [(rest, False)] if rest else []
