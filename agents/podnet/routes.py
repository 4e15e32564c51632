"""Host-gw routing (pure): the routes a host needs are a function of the Node list, and
reaching them from what the kernel has is a diff.

Rules:
1. Every Node other than this host's own, with an IPv4 pod CIDR (`spec.podCIDRs`, or
   `spec.podCIDR`) and an IPv4 InternalIP, gives one route: its pod CIDR via its
   InternalIP.
2. Two Nodes claiming one pod CIDR (a transient state of Node IPAM): the first by name
   wins, deterministically on every host. A CIDR overlapping this host's own is skipped:
   those pods live here, on the bridge.
3. We only ever touch routes of our own protocol number. A destination that another
   route (a connected subnet, an admin's static route) already covers at the same
   metric is left alone and reported as blocked, never replaced.
4. Owned routes nobody wants any more are deleted.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Route:
    dst: str      # network, e.g. "10.244.2.0/24"
    gateway: str  # the node's InternalIP


@dataclass
class Plan:
    replace: list[Route] = field(default_factory=list)  # add, or change the gateway
    delete: list[str] = field(default_factory=list)      # owned destinations to remove
    blocked: list[Route] = field(default_factory=list)   # wanted but held by another route

    @property
    def empty(self) -> bool:
        return not (self.replace or self.delete)


def _ipv4_network(text) -> ipaddress.IPv4Network | None:
    try:
        net = ipaddress.ip_network(str(text), strict=False)
    except ValueError:
        return None
    return net if net.version == 4 else None


def _ipv4_address(text) -> str | None:
    try:
        addr = ipaddress.ip_address(str(text))
    except ValueError:
        return None
    return str(addr) if addr.version == 4 else None


def node_pod_cidrs(node: dict) -> list[ipaddress.IPv4Network]:
    spec = node.get("spec") or {}
    cidrs = spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else [])
    return [n for n in map(_ipv4_network, cidrs) if n is not None]


def node_internal_ip(node: dict) -> str | None:
    for addr in (node.get("status") or {}).get("addresses") or []:
        if addr.get("type") == "InternalIP":
            ip = _ipv4_address(addr.get("address"))
            if ip:
                return ip
    return None


def desired_routes(nodes: list[dict], self_name: str) -> dict[str, str]:
    """destination CIDR → gateway, for every other node (rules 1 and 2)."""
    def name(n):
        return (n.get("metadata") or {}).get("name", "")
    own = [c for n in nodes if name(n) == self_name for c in node_pod_cidrs(n)]
    routes: dict[str, str] = {}
    for node in sorted(nodes, key=name):
        if name(node) == self_name:
            continue
        gateway = node_internal_ip(node)
        if gateway is None:
            continue
        for cidr in node_pod_cidrs(node):
            if any(cidr.overlaps(mine) for mine in own):
                continue
            routes.setdefault(str(cidr), gateway)
    return routes


def normalize_dst(dst: str) -> str:
    """`ip -j route` prints host routes without /32 and the default route as "default"."""
    if dst == "default":
        return "0.0.0.0/0"
    net = _ipv4_network(dst)
    return str(net) if net is not None else dst


def plan(desired: dict[str, str], owned: dict[str, str], foreign: set[str]) -> Plan:
    """What to change so the owned routes equal `desired` (rules 3 and 4).

    `owned`: destination → gateway of the routes carrying our protocol number;
    `foreign`: destinations of every other route in the table at our metric."""
    result = Plan()
    for dst in sorted(desired, key=lambda d: ipaddress.ip_network(d)):
        gateway = desired[dst]
        if dst in foreign and dst not in owned:
            result.blocked.append(Route(dst, gateway))
        elif owned.get(dst) != gateway:
            result.replace.append(Route(dst, gateway))
    result.delete = sorted((d for d in owned if d not in desired),
                           key=lambda d: ipaddress.ip_network(d))
    return result
