"""Keeping pods inside the lab (pure): policy-routing rules for traffic that pods send
through the node.

A lab host may have a default route (to the lab machine). Without these rules a node
would forward a pod's packet for any address along it, un-NATed, and whoever answers
would send the reply to a pod address through *its* default route, out of the lab. So,
for packets arriving from the pod bridge with a pod source address:

1. destinations listed as unreachable (the lab machine's own address) are refused;
2. the main table is consulted without its default route (`suppress_prefixlength 0`):
   the lab network, other nodes' pod CIDRs and this node's own addresses still route;
3. anything else is refused (`unreachable`: the pod gets an ICMP error at once).

Rules live in a band of priorities before the main table's (32766); rules in the band
that are not wanted any more (an old pod CIDR) are deleted.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

BAND = (32600, 32701)  # inclusive
SUPPRESS_PRIORITY = 32700
REFUSE_PRIORITY = 32701
UNREACHABLE_FIRST = 32600


@dataclass(frozen=True)
class PolicyRule:
    priority: int
    src: str            # CIDR
    iif: str
    action: str         # "main-without-default" | "unreachable"
    dst: str | None = None

    def args(self) -> list[str]:
        out = ["pref", str(self.priority), "from", self.src]
        if self.dst:
            out += ["to", self.dst]
        out += ["iif", self.iif]
        if self.action == "main-without-default":
            return out + ["lookup", "main", "suppress_prefixlength", "0"]
        return out + ["unreachable"]


def pod_rules(pod_cidr: str, bridge: str, unreachable: list[str] = ()) -> list[PolicyRule]:
    if len(unreachable) > SUPPRESS_PRIORITY - UNREACHABLE_FIRST:
        raise ValueError(f"at most {SUPPRESS_PRIORITY - UNREACHABLE_FIRST} unreachable "
                         "destinations")
    rules = [PolicyRule(UNREACHABLE_FIRST + i, pod_cidr, bridge, "unreachable",
                        str(ipaddress.ip_network(dst, strict=False)))
             for i, dst in enumerate(unreachable)]
    rules.append(PolicyRule(SUPPRESS_PRIORITY, pod_cidr, bridge, "main-without-default"))
    rules.append(PolicyRule(REFUSE_PRIORITY, pod_cidr, bridge, "unreachable"))
    return rules


def _cidr(addr: str | None, length) -> str | None:
    if not addr or addr == "all":
        return None
    return str(ipaddress.ip_network(f"{addr}/{32 if length is None else length}",
                                    strict=False))


def parse_rules(rules_json: list[dict]) -> list[PolicyRule]:
    """`ip -j rule show` → the rules in our band (others are not ours to read)."""
    out = []
    for r in rules_json:
        prio = r.get("priority")
        if prio is None or not BAND[0] <= prio <= BAND[1]:
            continue
        if r.get("table") == "main" and r.get("suppress_prefixlen") == 0:
            action = "main-without-default"
        elif r.get("action") == "unreachable":
            action = "unreachable"
        else:
            action = f"other:{r.get('table') or r.get('action')}"
        out.append(PolicyRule(prio, _cidr(r.get("src"), r.get("srclen")) or "0.0.0.0/0",
                              r.get("iif", ""), action, _cidr(r.get("dst"), r.get("dstlen"))))
    return out
