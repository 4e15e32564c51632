"""iptables fallback backend (iptables-nft): the same ProxyModel as `LAB-*` chains in the
nat and filter tables, changed with `iptables-restore --noflush` (atomic per table).

    nat  PREROUTING, OUTPUT -> LAB-SERVICES     -d ClusterIP -p P --dport N -> LAB-SVC-<h>
                                                addrtype LOCAL           -> LAB-NODEPORTS
         LAB-NODEPORTS   -p P --dport NodePort -> LAB-EXT-<h> (mark, then LAB-SVC-<h>)
         LAB-SVC-<h>     statistic random 1/n, 1/(n-1), … -> LAB-SEP-<h>
         LAB-SEP-<h>     -s self: mark (hairpin); DNAT to ip:port
         POSTROUTING -> LAB-POSTROUTING   masquerade what carries mark 0x4000
    filter INPUT, FORWARD, OUTPUT (new connections) -> LAB-REJECTS   services without
                                                                     endpoints: REJECT

Chain names carry a hash of the service port key (iptables allows 28 characters) and a
comment with the readable key. Declaring a chain in a restore flushes it, so a sync
declares only the chains that are new, changed or to be deleted (plus the two listing
chains, rewritten when any service comes or goes).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field

from .model import ProxyModel, ServicePort
from .runner import run, succeeds

MASQ_MARK = "0x4000"
PREFIX = "LAB-"
SERVICES, NODEPORTS, POSTROUTING, REJECTS = ("LAB-SERVICES", "LAB-NODEPORTS",
                                             "LAB-POSTROUTING", "LAB-REJECTS")
TABLES = ("nat", "filter")
# (table, built-in chain, match, our chain): the jumps `setup` keeps in place.
JUMPS = (("nat", "PREROUTING", [], SERVICES), ("nat", "OUTPUT", [], SERVICES),
         ("nat", "POSTROUTING", [], POSTROUTING),
         *(("filter", chain, ["-m", "conntrack", "--ctstate", "NEW"], REJECTS)
           for chain in ("INPUT", "FORWARD", "OUTPUT")))
UNKNOWN = ("<unknown rules>",)  # a chain found on the host whose rules we did not write


@dataclass
class IptState:
    chains: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)


def _hash(*parts: str) -> str:
    digest = hashlib.sha256("\0".join(parts).encode()).digest()
    return base64.b32encode(digest).decode()[:16]


def svc_chain(sp: ServicePort) -> str:
    return f"LAB-SVC-{_hash(sp.key)}"


def ext_chain(sp: ServicePort) -> str:
    return f"LAB-EXT-{_hash(sp.key)}"


def sep_chain(sp: ServicePort, ip: str, port: int) -> str:
    return f"LAB-SEP-{_hash(sp.key, ip, str(port))}"


def _comment(sp: ServicePort) -> str:
    return f'-m comment --comment "{sp.key}"'


def _proto(sp: ServicePort) -> str:
    return f"-p {sp.protocol} -m {sp.protocol}"


def _local_address_matches(cidrs: tuple[str, ...]) -> list[str]:
    if cidrs:
        return [f"-d {c} -m addrtype --dst-type LOCAL" for c in cidrs]
    return ["! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL"]


def desired_state(model: ProxyModel) -> IptState:
    """Pure: every LAB-* chain and its rules."""
    chains: dict[tuple[str, str], list[str]] = {
        ("nat", SERVICES): [], ("nat", NODEPORTS): [], ("filter", REJECTS): [],
        ("nat", POSTROUTING): [f"-m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN",
                               f"-j MARK --xor-mark {MASQ_MARK}",
                               "-j MASQUERADE --random-fully"]}
    local = _local_address_matches(tuple(model.nodeport_cidrs))
    for sp in model.service_ports.values():
        proto, comment = _proto(sp), _comment(sp)
        reject = "-j REJECT --reject-with tcp-reset" if sp.protocol == "tcp" else \
            "-j REJECT"
        if sp.endpoints:
            svc = svc_chain(sp)
            rules = []
            n = len(sp.endpoints)
            for i, ep in enumerate(sp.endpoints):
                sep = sep_chain(sp, ep.ip, ep.port)
                chains[("nat", sep)] = [
                    f"-s {ep.ip}/32 {comment} -j MARK --or-mark {MASQ_MARK}",
                    f"{proto} {comment} -j DNAT --to-destination {ep.ip}:{ep.port}"]
                chance = "" if i == n - 1 else \
                    f"-m statistic --mode random --probability {1 / (n - i):.10f} "
                rules.append(f"{comment} {chance}-j {sep}")
            chains[("nat", svc)] = rules
        if sp.cluster_ip:
            match = f"-d {sp.cluster_ip}/32 {proto} --dport {sp.port} {comment}"
            if sp.endpoints:
                chains[("nat", SERVICES)].append(f"{match} -j {svc}")
            else:
                chains[("filter", REJECTS)].append(f"{match} {reject}")
        if sp.node_port:
            match = f"{proto} --dport {sp.node_port} {comment}"
            if sp.endpoints:
                ext = ext_chain(sp)
                chains[("nat", ext)] = [f"-j MARK --or-mark {MASQ_MARK}", f"-j {svc}"]
                chains[("nat", NODEPORTS)].append(f"{match} -j {ext}")
            else:
                chains[("filter", REJECTS)] += [f"{m} {match} {reject}" for m in local]
    chains[("nat", SERVICES)] += [f"{m} -j {NODEPORTS}" for m in local]
    return IptState({k: tuple(v) for k, v in chains.items()})


def render_changes(old: IptState | None, new: IptState) -> str:
    """Pure: iptables-restore --noflush input turning `old` into `new` ("" if equal)."""
    old = old or IptState()
    out: list[str] = []
    for table in TABLES:
        declare, rules, delete = [], [], []
        for (tbl, chain), chain_rules in new.chains.items():
            if tbl == table and old.chains.get((tbl, chain)) != chain_rules:
                declare.append(chain)
                rules += [f"-A {chain} {r}" for r in chain_rules]
        for (tbl, chain) in old.chains:
            if tbl == table and (tbl, chain) not in new.chains:
                declare.append(chain)
                delete.append(f"-X {chain}")
        if declare:
            out += [f"*{table}", *(f":{c} - [0:0]" for c in declare), *rules, *delete,
                    "COMMIT"]
    return "\n".join(out) + "\n" if out else ""


def parse_existing(save_output: str) -> IptState:
    """Pure: the LAB-* chains an `iptables-save` shows (rules unknown, so the first sync
    rewrites or deletes every one of them)."""
    state, table = IptState(), None
    for line in save_output.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
        elif line.startswith(":" + PREFIX) and table in TABLES:
            state.chains[(table, line[1:].split()[0])] = UNKNOWN
    return state


class IptablesBackend:
    name = "iptables"

    def __init__(self, iptables: str = "iptables"):
        self.iptables = iptables
        self.restore = iptables + "-restore"
        self.save = iptables + "-save"

    def desired_state(self, model: ProxyModel) -> IptState:
        return desired_state(model)

    def render_changes(self, old: IptState | None, new: IptState) -> str:
        return render_changes(old, new)

    async def existing_state(self) -> IptState:
        out = ""
        for table in TABLES:
            out += await run([self.save, "-t", table], "")
        return parse_existing(out)

    async def apply(self, text: str) -> None:
        await run([self.restore, "--noflush"], text)
        await self.ensure_jumps()

    async def ensure_jumps(self) -> None:
        for table, builtin, match, target in JUMPS:
            rule = [*match, "-j", target]
            if not await succeeds([self.iptables, "-w", "-t", table, "-C", builtin, *rule]):
                await run([self.iptables, "-w", "-t", table, "-I", builtin, "1", *rule], "")

    async def cleanup(self) -> None:
        for table, builtin, match, target in JUMPS:
            await succeeds([self.iptables, "-w", "-t", table, "-D", builtin, *match,
                            "-j", target])
        text = render_changes(await self.existing_state(), IptState())
        if text:
            await run([self.restore, "--noflush"], text)
