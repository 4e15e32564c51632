"""The pure core: (Services, Endpoints, this node) → what the proxy must program.

One `ServicePort` per (service, port) with a ClusterIP or a NodePort: its virtual address,
and the ready endpoints (address + resolved target port) traffic is spread over. The
target port comes from the Endpoints object: a service port is matched to the endpoint
ports of the same name and protocol (how the endpoints controller publishes them, so a
named targetPort is already resolved to each pod's number there).

Services skipped on purpose: ExternalName, headless (clusterIP None) without NodePorts,
IPv6 ClusterIPs. Malformed objects are skipped too and described in `problems` so the
daemon can log them; they never stop the other services from being programmed.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field

PROTOCOLS = ("tcp", "udp", "sctp")


@dataclass(frozen=True, order=True)
class Endpoint:
    ip: str
    port: int


@dataclass(frozen=True)
class ServicePort:
    namespace: str
    name: str
    port_name: str          # "" for the single unnamed port of a service
    protocol: str           # tcp | udp | sctp (lower case, as nft and iptables spell them)
    cluster_ip: str | None  # None: headless, only the NodePort is programmed
    port: int
    node_port: int          # 0: none
    endpoints: tuple[Endpoint, ...]  # sorted, de-duplicated, ready only

    @property
    def key(self) -> str:
        """Unique per service port and readable in rule listings: ns/name/proto/port."""
        return f"{self.namespace}/{self.name}/{self.protocol}/{self.port}"


@dataclass(frozen=True)
class NodeInfo:
    name: str
    # CIDRs whose local addresses accept NodePort traffic; empty: every local address
    # except loopback (kube-proxy's default).
    nodeport_cidrs: tuple[str, ...] = ()


@dataclass
class ProxyModel:
    service_ports: dict[str, ServicePort]
    nodeport_cidrs: tuple[str, ...] = ()
    problems: list[str] = field(default_factory=list, compare=False)


@functools.lru_cache(maxsize=65536)
def _ipv4_cached(value: str) -> str | None:
    try:
        return str(ipaddress.IPv4Address(value))
    except (ipaddress.AddressValueError, ValueError):
        return None


def _ipv4(value) -> str | None:
    # Cached: every sync parses every address again (ipaddress is slow at 1000s).
    return _ipv4_cached(value) if isinstance(value, str) else None


def _ip_order(endpoint: Endpoint) -> tuple[bytes, int]:
    return socket.inet_aton(endpoint.ip), endpoint.port


def _port_number(value) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if 0 < number < 65536 else None


def _ready_endpoints(endpoints: dict | None, port_name: str, protocol: str) -> tuple:
    """Ready (address, port) pairs of the endpoint ports matching a service port."""
    found = set()
    for subset in (endpoints or {}).get("subsets") or []:
        for ep_port in subset.get("ports") or []:
            if (ep_port.get("name") or "") != port_name or \
                    (ep_port.get("protocol") or "TCP").lower() != protocol:
                continue
            number = _port_number(ep_port.get("port"))
            if number is None:
                continue
            for address in subset.get("addresses") or []:
                ip = _ipv4(address.get("ip"))
                if ip:
                    found.add(Endpoint(ip, number))
    return tuple(sorted(found, key=_ip_order))


def service_ports_of(service: dict, endpoints: dict | None,
                     problems: list[str] | None = None) -> list[ServicePort]:
    """The ServicePorts one Service contributes (empty for the kinds not proxied)."""
    problems = problems if problems is not None else []
    meta, spec = service.get("metadata") or {}, service.get("spec") or {}
    ns, name = meta.get("namespace") or "default", meta.get("name") or ""
    where = f"service {ns}/{name}"
    if spec.get("type") == "ExternalName":
        return []
    raw_ip = spec.get("clusterIP")
    if raw_ip in (None, "", "None"):
        cluster_ip = None
    else:
        cluster_ip = _ipv4(raw_ip)
        if cluster_ip is None:
            problems.append(f"{where}: clusterIP {raw_ip!r} is not IPv4; skipped")
            return []
    out = []
    for sp in spec.get("ports") or []:
        protocol = (sp.get("protocol") or "TCP").lower()
        port = _port_number(sp.get("port"))
        if protocol not in PROTOCOLS or port is None:
            problems.append(f"{where}: port {sp!r} has a bad protocol or number; skipped")
            continue
        node_port = 0
        if spec.get("type") in ("NodePort", "LoadBalancer") and sp.get("nodePort"):
            node_port = _port_number(sp.get("nodePort")) or 0
            if not node_port:
                problems.append(f"{where}: nodePort {sp.get('nodePort')!r} is not a port")
        if cluster_ip is None and not node_port:
            continue
        port_name = sp.get("name") or ""
        out.append(ServicePort(ns, name, port_name, protocol, cluster_ip, port, node_port,
                               _ready_endpoints(endpoints, port_name, protocol)))
    return out


def compute_model(services: Iterable[dict], endpoints: Iterable[dict],
                  node: NodeInfo) -> ProxyModel:
    """Pure: the whole desired state from the informers' objects."""
    by_key = {}
    for ep in endpoints:
        meta = ep.get("metadata") or {}
        by_key[(meta.get("namespace") or "default", meta.get("name"))] = ep
    problems: list[str] = []
    ports: dict[str, ServicePort] = {}
    for svc in services:
        meta = svc.get("metadata") or {}
        ep = by_key.get((meta.get("namespace") or "default", meta.get("name")))
        for sp in service_ports_of(svc, ep, problems):
            ports[sp.key] = sp
    return ProxyModel(dict(sorted(ports.items())), tuple(node.nodeport_cidrs), problems)
