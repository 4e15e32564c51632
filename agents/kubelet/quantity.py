"""Kubernetes resource quantities → cpu millis and bytes."""

from __future__ import annotations

import re
from decimal import Decimal

_SUFFIX = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15,
           "E": 10**18, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50,
           "Ei": 2**60, "m": Decimal("0.001")}
_QTY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)$")


def parse(q: str | int | float) -> Decimal:
    m = _QTY.match(str(q).strip())
    if not m or m.group(2) not in _SUFFIX:
        raise ValueError(f"not a Kubernetes quantity: {q!r} (e.g. 500m, 1, 64Mi, 1G)")
    return Decimal(m.group(1)) * Decimal(_SUFFIX[m.group(2)])


def cpu_millis(q) -> int:
    return int((parse(q) * 1000).to_integral_value(rounding="ROUND_CEILING"))


def memory_bytes(q) -> int:
    return int(parse(q).to_integral_value(rounding="ROUND_CEILING"))
