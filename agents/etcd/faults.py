"""Fault injection for tests (only with --experimental-fault-injection).

``GET /debug/partition?peers=ID,ID`` on the metrics URL drops all Raft traffic to and
from those members (hex IDs; no IDs heals). It partitions a member without touching the
host's firewall.
"""

from __future__ import annotations

from urllib.parse import parse_qs


def install(http, node) -> None:
    def partition(query: str):
        ids = [p for p in ",".join(parse_qs(query).get("peers", [""])).split(",") if p]
        node.transport.blocked = {int(p, 16) for p in ids}
        node.log.warn("fault injection: blocking peer traffic", peers=ids)
        return "200 OK", "text/plain", b"ok\n"

    http.hooks["/debug/partition"] = partition
