"""/proc/self/mountinfo, parsed: which paths are mount points (and of what)."""

from __future__ import annotations

from pathlib import Path


def unescape_mountinfo(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (``\\040``)."""
    out, i = [], 0
    while i < len(field):
        code = field[i + 1 : i + 4]
        if field[i] == "\\" and len(code) == 3 and code.isdigit():
            out.append(chr(int(code, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mount_points(mountinfo: str) -> list[str]:
    return [unescape_mountinfo(line.split()[4]) for line in mountinfo.splitlines() if line]


def read_mountinfo() -> str:
    return Path("/proc/self/mountinfo").read_text()


def is_mounted(path: Path) -> bool:
    return str(path) in mount_points(read_mountinfo())
