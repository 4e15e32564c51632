"""Processes identified by pid + start time, so a reused pid is never mistaken for a
shim that is gone."""

from __future__ import annotations

from pathlib import Path


def start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat; None when there is no such (live) process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = stat[stat.rindex(")") + 2 :].split()
    if rest[0] == "Z":
        return None
    return int(rest[19])


def is_alive(pid: int | None, started: int | None) -> bool:
    return bool(pid) and started is not None and start_time(int(pid)) == int(started)
