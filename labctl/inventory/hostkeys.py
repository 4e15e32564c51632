"""Host keys of a YAML inventory as Ansible reads them: ranges and an optional port.

``etcd-[1:3]`` is etcd-1, etcd-2, etcd-3; ``w[01:10:3]`` keeps the zero padding; ``[a:c]``
ranges over letters; ``name:2222`` sets ``ansible_port``.
"""

from __future__ import annotations

import re
import string

_RANGE = re.compile(r"^(.*?)\[([0-9a-zA-Z]*):([0-9a-zA-Z]+)(?::([0-9]+))?\](.*)$")


class HostKeyError(ValueError):
    pass


def split_port(key: str) -> tuple[str, int | None]:
    """``name:22`` -> ("name", 22); a key without a port comes back unchanged."""
    outside_ranges = re.sub(r"\[[^\]]*\]", "", key)
    if outside_ranges.count(":") == 1:
        head, _, port = key.rpartition(":")
        if port.isdigit():
            return head, int(port)
    return key, None


def expand_ranges(key: str) -> list[str]:
    """All names a host key stands for (each ``[x:y(:step)]`` range expanded, inclusive)."""
    match = _RANGE.match(key)
    if not match:
        return [key]
    head, begin, end, step, tail = match.groups()
    values = _range_values(key, begin or "0", end, int(step) if step else 1)
    return [name for value in values for name in expand_ranges(f"{head}{value}{tail}")]


def _range_values(key: str, begin: str, end: str, step: int) -> list[str]:
    if step < 1:
        raise HostKeyError(f"host range {key!r}: the step must be at least 1")
    if begin.isdigit() and end.isdigit():
        if len(begin) > 1 and begin.startswith("0"):
            if len(begin) != len(end):
                raise HostKeyError(
                    f"host range {key!r}: a zero-padded range needs begin and end of equal length"
                )
            width = len(begin)
        else:
            width = 0
        first, last = int(begin), int(end)
        if first > last:
            raise HostKeyError(f"host range {key!r}: the begin is after the end")
        return [str(n).zfill(width) for n in range(first, last + 1, step)]
    letters = string.ascii_letters
    if len(begin) == 1 and len(end) == 1 and begin in letters and end in letters:
        first, last = letters.index(begin), letters.index(end)
        if first > last:
            raise HostKeyError(f"host range {key!r}: the begin is after the end")
        return list(letters[first : last + 1 : step])
    raise HostKeyError(f"host range {key!r}: use numbers ([1:3], [01:10]) or single letters ([a:c])")


def expand_host_key(key: str) -> tuple[list[str], int | None]:
    name, port = split_port(key)
    return expand_ranges(name), port
