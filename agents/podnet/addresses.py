"""Address math of a node's pod CIDR (pure): the bridge takes the first host address,
pods get the others; interface names derived from sandbox IDs."""

from __future__ import annotations

import hashlib
import ipaddress

from .errors import PodNetError

# A pod CIDR must leave room for the bridge and at least two pods.
MAX_PREFIX = 29


def parse_pod_cidr(text: str, where: str = "pod_cidr") -> ipaddress.IPv4Network:
    """`10.244.1.0/24` → network; refuses host bits, IPv6 and CIDRs too small for pods."""
    try:
        net = ipaddress.ip_network(str(text), strict=True)
    except ValueError as exc:
        raise PodNetError(f"{where}: {text!r} is not a CIDR ({exc}); "
                          "expected e.g. 10.244.1.0/24 (the Node's spec.podCIDR)") from None
    if net.version != 4:
        raise PodNetError(f"{where}: {text} is IPv6; the pod network is IPv4 only")
    if net.prefixlen > MAX_PREFIX:
        raise PodNetError(f"{where}: {text} is too small for a bridge and pods "
                          f"(prefix at most /{MAX_PREFIX})")
    return net


def gateway_of(net: ipaddress.IPv4Network) -> ipaddress.IPv4Address:
    """The bridge's address, the pods' default gateway: the first host address."""
    return net.network_address + 1


def pod_addresses(net: ipaddress.IPv4Network) -> tuple[int, int]:
    """The range [first, last] (as integers) that pods are given: every host address
    except the gateway (network and broadcast addresses are never used)."""
    return int(net.network_address) + 2, int(net.broadcast_address) - 1


def host_interface_name(sandbox_id: str) -> str:
    """The host end of a pod's veth: stable per sandbox, within IFNAMSIZ (15 chars)."""
    if not sandbox_id:
        raise PodNetError("sandbox_id is empty")
    return "vp" + hashlib.sha256(sandbox_id.encode()).hexdigest()[:12]


def bridge_mac(bridge: str, gateway: ipaddress.IPv4Address) -> str:
    """A fixed, locally administered MAC for the bridge. Set explicitly, it stays put
    when ports come and go (a bridge otherwise takes its lowest port's MAC, and every
    pod's ARP entry for the gateway goes stale)."""
    digest = hashlib.sha256(f"{bridge}/{gateway}".encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))
