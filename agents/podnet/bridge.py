"""`BridgeNetwork`: the plugin the container runtime calls for each pod sandbox.

    net = BridgeNetwork(pod_cidr="10.244.1.0/24", bridge="lab-pods",
                        state_dir="/var/lib/lab/podnet")
    ip = net.setup(sandbox_id, netns_path)   # eth0 in the netns, IP, default route
    net.teardown(sandbox_id, netns_path)     # idempotent; frees the IP
    net.address_of(sandbox_id) -> str | None

The node side: a bridge holding the first address of the pod CIDR (the pods' gateway),
forwarding on. Each pod: a veth pair, the host end (`vp<hash of the sandbox id>`) on the
bridge, the other end created straight inside the sandbox's netns as `eth0` (so no name
clash with the host's eth0), the pod's address from the persisted IPAM table and a
default route via the bridge. Nothing is NATed, and policy-routing rules on the node
(isolation.py) refuse to forward pod traffic anywhere but the lab network and the pod
CIDRs (nor to the node's default gateway, the lab machine, or other `unreachable`
addresses): pods stay in the lab.

Every step is "make it so", so `setup` after a crash half-way, or twice, converges.
"""

from __future__ import annotations

import json
import logging
import os
import threading

from .addresses import bridge_mac, gateway_of, host_interface_name, parse_pod_cidr
from .errors import CommandError, PodNetError
from .ipam import IpamStore
from .iproute import Commands
from .isolation import parse_rules, pod_rules

log = logging.getLogger(__name__)

POD_INTERFACE = "eth0"

# Sandboxes are set up from several threads (the kubelet runs runtime calls in a thread
# pool): the node side is made so by one of them at a time.
_node_lock = threading.Lock()


class BridgeNetwork:
    brings_up_loopback = True  # setup() sets `lo` up in the pod's netns (the runtime need not)

    def __init__(self, pod_cidr: str, bridge: str = "lab-pods",
                 state_dir: str = "/var/lib/lab/podnet", commands: Commands | None = None,
                 unreachable: list[str] = (), block_default_gateway: bool = True):
        """`unreachable`: more CIDRs inside the lab that pods must not reach.
        `block_default_gateway`: nor the node's default gateway (on lab hosts the lab
        machine, which has no route back to pods and would answer them through its own
        default route, out of the lab)."""
        if not bridge or len(bridge) > 15:
            raise PodNetError(f"bridge name {bridge!r} must be 1-15 characters")
        self.net = parse_pod_cidr(pod_cidr)
        self.unreachable = list(unreachable)
        self.block_default_gateway = block_default_gateway
        try:
            pod_rules(str(self.net), bridge, self.unreachable)
        except ValueError as exc:
            raise PodNetError(f"unreachable: {exc}") from None
        self.gateway = str(gateway_of(self.net))
        self.bridge = bridge
        self.ipam = IpamStore(state_dir)
        self.cmd = commands or Commands()
        self._bridge_checked = False  # fully checked once by this object

    # -- the node side -----------------------------------------------------------------

    def ensure_bridge(self) -> None:
        """The bridge exists, is up, holds exactly the gateway address; forwarding is on;
        the isolation rules are in place."""
        with _node_lock:
            self._ensure_bridge()
            self._bridge_checked = True

    def _bridge_looks_ready(self) -> bool:
        """One cheap look (for every setup after the first full check): up, with the
        gateway address."""
        links = self.cmd.run("ip", "-j", "-4", "addr", "show", "dev", self.bridge,
                             check=False)
        if links.returncode:
            return False
        wanted = (self.gateway, self.net.prefixlen)
        return any("UP" in link.get("flags", []) and any(
            (a.get("local"), a.get("prefixlen")) == wanted for a in link.get("addr_info", []))
            for link in json.loads(links.stdout or "[]"))

    def _ensure_bridge(self) -> None:
        self.cmd.sysctl("net.ipv4.ip_forward", "1")
        if not self.cmd.link_exists(self.bridge):
            self.cmd.ip("link", "add", "name", self.bridge, "address",
                        bridge_mac(self.bridge, gateway_of(self.net)), "type", "bridge")
        else:
            kind = ((self.cmd.ip_json("-d", "link", "show", "dev", self.bridge)[0]
                     .get("linkinfo") or {}).get("info_kind"))
            if kind != "bridge":
                raise PodNetError(f"{self.bridge} exists but is a {kind or 'plain'} link, "
                                  "not a bridge: delete it or choose another bridge name")
        wanted = f"{self.gateway}/{self.net.prefixlen}"
        for addr in self._ipv4_addresses(self.cmd, self.bridge):
            if addr != wanted:  # left from an earlier pod CIDR
                self.cmd.ip("addr", "del", addr, "dev", self.bridge)
        self.cmd.ip("addr", "replace", wanted, "dev", self.bridge)
        self.cmd.ip("link", "set", "dev", self.bridge, "up")
        self.ensure_rules()

    def wanted_rules(self) -> list:
        blocked = list(self.unreachable)
        if self.block_default_gateway:
            blocked += sorted({f"{r['gateway']}/32" for r in self.cmd.ip_json(
                "-4", "route", "show", "default") if r.get("gateway")} - set(blocked))
        return pod_rules(str(self.net), self.bridge, blocked)

    def ensure_rules(self) -> None:
        """The isolation rules are exactly ours (isolation.py); untouched when they are."""
        wanted = self.wanted_rules()
        current = parse_rules(self.cmd.ip_json("-4", "rule", "show"))
        if sorted(current, key=lambda r: r.priority) == wanted:
            return
        for rule in current:  # stale or partial: start the band afresh
            self.cmd.run("ip", "-4", "rule", "del", "pref", str(rule.priority), check=False)
        for rule in wanted:
            self.cmd.ip("-4", "rule", "add", *rule.args())

    @staticmethod
    def _ipv4_addresses(cmd: Commands, dev: str) -> list[str]:
        links = cmd.ip_json("-4", "addr", "show", "dev", dev)
        return [f"{a['local']}/{a['prefixlen']}" for link in links
                for a in link.get("addr_info", []) if a.get("family") == "inet"]

    # -- pods --------------------------------------------------------------------------

    def setup(self, sandbox_id: str, netns_path: str) -> str:
        """Connect the sandbox's netns to the bridge; returns the pod's IP."""
        if not os.path.exists(netns_path):
            raise PodNetError(f"sandbox {sandbox_id}: network namespace {netns_path} does "
                              "not exist (create it before calling setup)")
        ip, new = self.ipam.allocate(self.net, sandbox_id)
        try:
            if not (self._bridge_checked and self._bridge_looks_ready()):
                self.ensure_bridge()
            if not (new and self._connect_fresh(sandbox_id, netns_path, ip)):
                self._connect(sandbox_id, netns_path, ip)
        except BaseException:
            if new:  # leave nothing behind for a sandbox that never got its network
                self._disconnect(sandbox_id)
                self.ipam.release(sandbox_id)
            raise
        log.info("sandbox %s: %s on %s (netns %s)", sandbox_id, ip, self.bridge, netns_path)
        return ip

    def _paired(self, host: str, pod: Commands) -> bool:
        """Is the pod's eth0 the other end of our (existing) host veth?"""
        try:
            h = self.cmd.ip_json("link", "show", "dev", host)[0]
            p = pod.ip_json("link", "show", "dev", POD_INTERFACE)[0]
        except CommandError:  # either end is missing (or vanishing with an old netns)
            return False
        return h.get("link_index") == p.get("ifindex") and p.get("link_index") == h.get(
            "ifindex")

    def _pod_side(self, ip: str) -> list[list[str]]:
        """The `ip` commands that configure the pod's end (and its loopback)."""
        return [["addr", "replace", f"{ip}/{self.net.prefixlen}", "dev", POD_INTERFACE],
                ["link", "set", "dev", "lo", "up"],
                ["link", "set", "dev", POD_INTERFACE, "up"],
                ["route", "replace", "default", "via", self.gateway, "dev", POD_INTERFACE]]

    def _add_veth(self, host: str, netns_path: str) -> None:
        self.cmd.ip("link", "add", host, "master", self.bridge, "up", "type", "veth",
                    "peer", "name", POD_INTERFACE, "netns", netns_path)

    def _connect_fresh(self, sandbox_id: str, netns_path: str, ip: str) -> bool:
        """The common case, a new sandbox in a new netns: two programs (the veth, then
        one `ip -batch` inside the netns) instead of looking first at what is there.
        False when the veth cannot be added as is (an end is left from an earlier
        attempt): `_connect` then converges what is there."""
        try:
            self._add_veth(host_interface_name(sandbox_id), netns_path)
        except CommandError:
            return False
        self.cmd.other(netns_path).ip_batch(self._pod_side(ip))
        return True

    def _connect(self, sandbox_id: str, netns_path: str, ip: str) -> None:
        host = host_interface_name(sandbox_id)
        pod = self.cmd.other(netns_path)
        wanted = f"{ip}/{self.net.prefixlen}"
        pod_side = self._pod_side(ip)
        if self.cmd.link_exists(host) and self._paired(host, pod):
            # Set up before (a retry, or a restarted runtime): converge what is there.
            self.cmd.ip("link", "set", "dev", host, "master", self.bridge, "up")
            pod_side[:0] = [["addr", "del", addr, "dev", POD_INTERFACE]
                            for addr in self._ipv4_addresses(pod, POD_INTERFACE)
                            if addr != wanted]
        else:
            # Whatever is there is left from an earlier attempt or an earlier netns.
            self.cmd.delete_link(host)
            pod.delete_link(POD_INTERFACE)
            self._add_veth(host, netns_path)
        pod.ip_batch(pod_side)

    def _disconnect(self, sandbox_id: str) -> None:
        """Delete the host end of the veth (the kernel deletes the pod end with it)."""
        host = host_interface_name(sandbox_id)
        try:
            self.cmd.delete_link(host)
        except CommandError as exc:
            raise PodNetError(f"sandbox {sandbox_id}: could not delete {host}: {exc}") from exc

    def teardown(self, sandbox_id: str, netns_path: str | None = None) -> None:
        """Disconnect the sandbox and free its IP; fine to call again, or after the netns
        is gone (its veth went with it)."""
        self._disconnect(sandbox_id)
        ip = self.ipam.release(sandbox_id)
        if ip:
            log.info("sandbox %s: released %s", sandbox_id, ip)

    def address_of(self, sandbox_id: str) -> str | None:
        return self.ipam.address_of(sandbox_id)

    def allocations(self) -> dict[str, str]:
        """Every sandbox holding an address (sandbox id → IP), e.g. to find leftovers."""
        return dict(self.ipam.load().allocations)
