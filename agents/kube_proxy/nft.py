"""nftables backend: one table `ip lab-proxy`, changed by `nft -f` transactions.

Layout (static part, written once by a full sync):

    map service-ips        ClusterIP . proto . port  : goto svc-<key>
    map service-nodeports  proto . nodePort           : goto ext-<key>
    set no-endpoint-services / no-endpoint-nodeports  (the same keys, for rejecting)
    chain services         the two map lookups (NodePorts only on the node's addresses)
    nat-prerouting / nat-output        jump services   (traffic from pods / from the host)
    nat-postrouting                    masquerade what a rule marked (0x4000)
    filter-input/-forward/-output      new connections to a service without endpoints
                                       are rejected (TCP reset, ICMP port unreachable)

Dynamic part, one group of chains per service port:

    svc-<key>                 numgen random mod N vmap { i : goto ep-<key>__<ip>/<port> }
    ep-<key>__<ip>/<port>     mark for masquerade if the client is this endpoint (hairpin);
                              dnat to ip:port
    ext-<key>                 (NodePort) mark for masquerade, goto svc-<key>

NodePort traffic is masqueraded (as kube-proxy does for externalTrafficPolicy Cluster):
an endpoint on another node would otherwise answer the client directly, from an address
the client never talked to.

`desired_state` and `render_changes` are pure; `NftBackend` runs nft.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .model import ProxyModel, ServicePort
from .runner import run, succeeds

TABLE = "lab-proxy"
FAMILY = "ip"
MASQ_MARK = "0x4000"

SERVICE_IPS = "service-ips"
SERVICE_NODEPORTS = "service-nodeports"
NO_EP_SERVICES = "no-endpoint-services"
NO_EP_NODEPORTS = "no-endpoint-nodeports"
NODEPORT_ADDRESSES = "nodeport-addresses"
ELEMENT_SETS = (SERVICE_IPS, SERVICE_NODEPORTS, NO_EP_SERVICES, NO_EP_NODEPORTS)


@dataclass
class NftState:
    """The dynamic part of the table: chain name → rules, set/map name → {key: value}
    (value None for a set)."""
    chains: dict[str, tuple[str, ...]] = field(default_factory=dict)
    elements: dict[str, dict[str, str | None]] = field(
        default_factory=lambda: {name: {} for name in ELEMENT_SETS})
    nodeport_cidrs: tuple[str, ...] = ()


def svc_chain(sp: ServicePort) -> str:
    return f"svc-{sp.key}"


def ext_chain(sp: ServicePort) -> str:
    return f"ext-{sp.key}"


def ep_chain(sp: ServicePort, ip: str, port: int) -> str:
    return f"ep-{sp.key}__{ip}/{port}"


def _nodeport_match(cidrs: tuple[str, ...]) -> str:
    # Only addresses of this node (not traffic passing through to another one); never
    # loopback (DNAT from 127/8 would need route_localnet).
    if cidrs:
        return f"fib daddr type local ip daddr @{NODEPORT_ADDRESSES}"
    return "fib daddr type local ip daddr != 127.0.0.0/8"


def desired_state(model: ProxyModel) -> NftState:
    """Pure: the chains and set elements that program `model`."""
    state = NftState(nodeport_cidrs=tuple(model.nodeport_cidrs))
    for sp in model.service_ports.values():
        svc = svc_chain(sp)
        if sp.endpoints:
            targets = []
            for ep in sp.endpoints:
                chain = ep_chain(sp, ep.ip, ep.port)
                state.chains[chain] = (
                    f"ip saddr {ep.ip} meta mark set meta mark | {MASQ_MARK}",
                    f"meta l4proto {sp.protocol} dnat to {ep.ip}:{ep.port}")
                targets.append(chain)
            if len(targets) == 1:
                state.chains[svc] = (f"goto {targets[0]}",)
            else:
                arms = ", ".join(f"{i} : goto {t}" for i, t in enumerate(targets))
                state.chains[svc] = (f"numgen random mod {len(targets)} vmap {{ {arms} }}",)
        if sp.cluster_ip:
            key = f"{sp.cluster_ip} . {sp.protocol} . {sp.port}"
            if sp.endpoints:
                state.elements[SERVICE_IPS][key] = f"goto {svc}"
            else:
                state.elements[NO_EP_SERVICES][key] = None
        if sp.node_port:
            key = f"{sp.protocol} . {sp.node_port}"
            if sp.endpoints:
                state.chains[ext_chain(sp)] = (f"meta mark set meta mark | {MASQ_MARK}",
                                               f"goto {svc}")
                state.elements[SERVICE_NODEPORTS][key] = f"goto {ext_chain(sp)}"
            else:
                state.elements[NO_EP_NODEPORTS][key] = None
    return state


def base_table(cidrs: tuple[str, ...]) -> str:
    """The static part of the table (sets, maps, hook chains)."""
    nodeports = _nodeport_match(cidrs)
    addresses = ""
    if cidrs:
        addresses = (f"\tset {NODEPORT_ADDRESSES} {{ type ipv4_addr; flags interval; "
                     f"elements = {{ {', '.join(cidrs)} }}; }}\n")
    return f"""table {FAMILY} {TABLE} {{
\tmap {SERVICE_IPS} {{ type ipv4_addr . inet_proto . inet_service : verdict; }}
\tmap {SERVICE_NODEPORTS} {{ type inet_proto . inet_service : verdict; }}
\tset {NO_EP_SERVICES} {{ type ipv4_addr . inet_proto . inet_service; }}
\tset {NO_EP_NODEPORTS} {{ type inet_proto . inet_service; }}
{addresses}\tchain services {{
\t\tip daddr . meta l4proto . th dport vmap @{SERVICE_IPS}
\t\t{nodeports} meta l4proto . th dport vmap @{SERVICE_NODEPORTS}
\t}}
\tchain nat-prerouting {{
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tjump services
\t}}
\tchain nat-output {{
\t\ttype nat hook output priority -100; policy accept;
\t\tjump services
\t}}
\tchain nat-postrouting {{
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\tmeta mark & {MASQ_MARK} == 0 return
\t\tmeta mark set meta mark ^ {MASQ_MARK}
\t\tmasquerade fully-random
\t}}
\tchain reject-no-endpoints {{
\t\tip daddr . meta l4proto . th dport @{NO_EP_SERVICES} goto reject-it
\t\t{nodeports} meta l4proto . th dport @{NO_EP_NODEPORTS} goto reject-it
\t}}
\tchain reject-it {{
\t\tmeta l4proto tcp reject with tcp reset
\t\treject
\t}}
\tchain filter-input {{
\t\ttype filter hook input priority -110; policy accept;
\t\tct state new jump reject-no-endpoints
\t}}
\tchain filter-forward {{
\t\ttype filter hook forward priority -110; policy accept;
\t\tct state new jump reject-no-endpoints
\t}}
\tchain filter-output {{
\t\ttype filter hook output priority -110; policy accept;
\t\tct state new jump reject-no-endpoints
\t}}
}}
"""


def _element(name: str, key: str, value: str | None) -> str:
    item = key if value is None else f"{key} : {value}"
    return f"add element {FAMILY} {TABLE} {name} {{ {item} }}"


def render_changes(old: NftState | None, new: NftState) -> str:
    """Pure: one nft transaction turning `old` into `new`. `old` None (or different
    NodePort addresses) replaces the whole table, atomically; otherwise only the chains
    and elements that differ are touched. Empty string: nothing to do."""
    t = f"{FAMILY} {TABLE}"
    lines: list[str] = []
    if old is None or old.nodeport_cidrs != new.nodeport_cidrs:
        # `add` first so the `delete` cannot fail on a missing table.
        lines += [f"add table {t}", f"delete table {t}", base_table(new.nodeport_cidrs)]
        old = NftState(nodeport_cidrs=new.nodeport_cidrs)
    added = [c for c in new.chains if c not in old.chains]
    changed = [c for c in new.chains if c in old.chains and old.chains[c] != new.chains[c]]
    removed = [c for c in old.chains if c not in new.chains]
    # 1. new chains exist before anything jumps to them
    lines += [f"add chain {t} {c}" for c in added]
    # 2. rules of new and changed chains
    for c in added + changed:
        if c in changed:
            lines.append(f"flush chain {t} {c}")
        lines += [f"add rule {t} {c} {rule}" for rule in new.chains[c]]
    # 3. elements: stale ones out (a changed value is out and in again), new ones in
    for name in ELEMENT_SETS:
        before, after = old.elements.get(name, {}), new.elements.get(name, {})
        for key, value in before.items():
            if key not in after or after[key] != value:
                lines.append(f"delete element {t} {name} {{ {key} }}")
        for key, value in after.items():
            if key not in before or before[key] != value:
                lines.append(_element(name, key, value))
    # 4. chains nothing refers to any more: all emptied first (they may jump to each
    # other), then deleted
    lines += [f"flush chain {t} {c}" for c in removed]
    lines += [f"delete chain {t} {c}" for c in removed]
    return "\n".join(lines) + "\n" if lines else ""


class NftBackend:
    """Runs `nft -f -` (one atomic transaction per call)."""

    name = "nftables"

    def __init__(self, nft: str = "nft"):
        self.nft = nft

    def desired_state(self, model: ProxyModel) -> NftState:
        return desired_state(model)

    def render_changes(self, old: NftState | None, new: NftState) -> str:
        return render_changes(old, new)

    async def existing_state(self) -> None:
        """None: the first sync replaces the whole table (atomically)."""
        return None

    async def apply(self, text: str) -> None:
        await run([self.nft, "-f", "-"], text)

    async def cleanup(self) -> None:
        await run([self.nft, "-f", "-"],
                  f"add table {FAMILY} {TABLE}\ndelete table {FAMILY} {TABLE}\n")

    async def table_exists(self) -> bool:
        return await succeeds([self.nft, "list", "table", FAMILY, TABLE])
