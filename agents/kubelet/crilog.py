"""Container log files in the CRI format, and reading them the way `kubectl logs` asks.

A line: `<RFC3339Nano time> <stdout|stderr> <F|P> <text>`; P marks a partial line whose
text continues in the next record (F ends it). Files live at
<pod_log_dir>/<namespace>_<name>_<uid>/<container>/<attempt>.log.
`select` (pure) applies tailLines, sinceSeconds, timestamps and limitBytes."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime

from .observed import to_epoch


@dataclass(frozen=True)
class LogLine:
    time: str          # as written (RFC 3339 with nanoseconds)
    stream: str
    text: bytes        # the full line, newline included


def log_path(root: str, namespace: str, name: str, uid: str, container: str,
             attempt: int) -> str:
    return os.path.join(root, f"{namespace}_{name}_{uid}", container, f"{attempt}.log")


def format_record(stream: str, text: bytes, when: datetime | None = None) -> bytes:
    """One full (F) record; `text` without its newline."""
    t = (when or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")
    return f"{t} {stream} F ".encode() + text + b"\n"


def parse_records(data: bytes) -> tuple[list[LogLine], bytes]:
    """Complete lines from a chunk of a log file; returns (lines, unparsed rest)."""
    lines: list[LogLine] = []
    partial = b""
    pending_time, pending_stream = "", ""
    *records, rest = data.split(b"\n")
    for record in records:
        parts = record.split(b" ", 3)
        if len(parts) < 3:
            continue
        text = parts[3] if len(parts) == 4 else b""
        tag = parts[2]
        if not partial:
            pending_time, pending_stream = parts[0].decode(), parts[1].decode()
        partial += text
        if tag == b"F":
            lines.append(LogLine(pending_time, pending_stream, partial + b"\n"))
            partial = b""
    if partial:  # a P record without its F yet: leave it for the next read
        return lines, _unfinished(records, rest)
    return lines, rest


def _unfinished(records: list[bytes], rest: bytes) -> bytes:
    """The trailing P records (and the rest) that do not yet form a line."""
    tail: list[bytes] = []
    for record in reversed(records):
        parts = record.split(b" ", 3)
        if len(parts) >= 3 and parts[2] == b"P":
            tail.insert(0, record)
        else:
            break
    return b"\n".join(tail) + b"\n" + rest


@dataclass(frozen=True)
class LogOptions:
    tail_lines: int | None = None
    since_seconds: float | None = None
    since_time: str | None = None
    timestamps: bool = False
    limit_bytes: int | None = None
    follow: bool = False
    previous: bool = False

    @classmethod
    def from_query(cls, query) -> LogOptions:
        def number(key):
            value = query.get(key)
            if value in (None, ""):
                return None
            try:
                n = int(value)
            except ValueError:
                raise ValueError(f"{key} must be an integer, got {value!r}") from None
            if n < 0:
                raise ValueError(f"{key} must not be negative")
            return n

        def flag(key):
            return str(query.get(key, "")).lower() in ("true", "1")
        return cls(number("tailLines"), number("sinceSeconds"), query.get("sinceTime"),
                   flag("timestamps"), number("limitBytes"), flag("follow"),
                   flag("previous"))

    def since(self, now: float) -> float | None:
        if self.since_seconds is not None:
            return now - self.since_seconds
        if self.since_time:
            return to_epoch(self.since_time)
        return None


def render(line: LogLine, timestamps: bool) -> bytes:
    return (line.time.encode() + b" " + line.text) if timestamps else line.text


def select(lines: list[LogLine], options: LogOptions, now: float) -> list[LogLine]:
    since = options.since(now)
    if since is not None:
        lines = [line for line in lines if (to_epoch(line.time) or 0) >= since]
    if options.tail_lines is not None:
        lines = lines[-options.tail_lines:] if options.tail_lines else []
    return lines


class ByteLimit:
    """limitBytes: cut the output after this many bytes."""

    def __init__(self, limit: int | None):
        self.left = limit

    def take(self, data: bytes) -> bytes:
        if self.left is None:
            return data
        data = data[:self.left]
        self.left -= len(data)
        return data

    @property
    def exhausted(self) -> bool:
        return self.left is not None and self.left <= 0
