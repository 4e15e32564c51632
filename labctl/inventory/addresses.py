"""Stable host addresses on the lab network.

A host without ``ansible_host`` gets the address its name hashes to in the usable range
(everything but the network address, the gateway = first host address, and the
broadcast). A taken slot moves the host to the next free one; hosts are placed in
sorted-name order, after the explicit addresses, so the result depends only on the set
of names, and a host keeps its address when others come and go unless they collide with
it. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import ipaddress


def usable_range(network: ipaddress.IPv4Network) -> tuple[int, int]:
    """First and last address (as ints) a host may get: after the gateway, before broadcast."""
    return int(network.network_address) + 2, int(network.broadcast_address) - 1


def capacity(network: ipaddress.IPv4Network) -> int:
    first, last = usable_range(network)
    return max(0, last - first + 1)


def allocate(
    network: ipaddress.IPv4Network, names: list[str], taken: set[str] = frozenset()
) -> dict[str, str]:
    """Addresses for ``names`` avoiding the ``taken`` ones; raises ValueError when full."""
    first, _ = usable_range(network)
    size = capacity(network)
    used = {int(ipaddress.IPv4Address(address)) for address in taken}
    free = sum(1 for n in range(first, first + size) if n not in used)
    if len(names) > free:
        raise ValueError(f"{network} has {free} free addresses for {len(names)} hosts")
    result: dict[str, str] = {}
    for name in sorted(names):
        slot = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") % size
        while first + slot in used:
            slot = (slot + 1) % size
        used.add(first + slot)
        result[name] = str(ipaddress.IPv4Address(first + slot))
    return result
