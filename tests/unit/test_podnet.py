"""The pod network's pure parts: address math, IPAM (allocation, release, persistence),
the desired routes from Nodes, the route diff, parsing `ip -j route`, the route-sync
controller against a fake API and a recording route table, the daemon's flags."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import threading

import pytest

from agents.kube.testing import FakeApi
from agents.podnet.addresses import (
    bridge_mac,
    gateway_of,
    host_interface_name,
    parse_pod_cidr,
    pod_addresses,
)
from agents.podnet.errors import CommandError, PodNetError
from agents.podnet.ipam import IpamState, IpamStore, allocate, release
from agents.podnet.iproute import Commands, netns_path
from agents.podnet.isolation import parse_rules, pod_rules
from agents.podnet.main import parse_args
from agents.podnet.routes import Plan, Route, desired_routes, normalize_dst, plan
from agents.podnet.routesync import RouteSync, metrics_text
from agents.podnet.routetable import TableState, parse_table

pytestmark = pytest.mark.unit

NET = ipaddress.ip_network("10.244.1.0/24")


def node(name, cidr=None, ip=None, cidrs=None, addresses=None):
    spec = {}
    if cidr:
        spec["podCIDR"] = cidr
    if cidrs:
        spec["podCIDRs"] = cidrs
    addrs = addresses if addresses is not None else (
        [{"type": "Hostname", "address": name}] + ([{"type": "InternalIP", "address": ip}]
                                                   if ip else []))
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "spec": spec,
            "status": {"addresses": addrs}}


# -- address math ----------------------------------------------------------------------

def test_gateway_is_the_first_host_address_and_pods_get_the_rest():
    net = parse_pod_cidr("10.244.1.0/24")
    assert str(gateway_of(net)) == "10.244.1.1"
    first, last = pod_addresses(net)
    assert (str(ipaddress.IPv4Address(first)), str(ipaddress.IPv4Address(last))) == (
        "10.244.1.2", "10.244.1.254")


@pytest.mark.parametrize("text, words", [
    ("10.244.1.5/24", "not a CIDR"), ("bogus", "not a CIDR"), ("fd00::/64", "IPv6"),
    ("10.244.1.0/30", "too small")])
def test_bad_pod_cidrs_are_refused_with_the_reason(text, words):
    with pytest.raises(PodNetError, match=words):
        parse_pod_cidr(text)


def test_host_interface_names_are_stable_distinct_and_fit_ifnamsiz():
    a, b = host_interface_name("sandbox-a"), host_interface_name("sandbox-b")
    assert a == host_interface_name("sandbox-a") and a != b
    assert len(a) <= 15 and a.startswith("vp")
    with pytest.raises(PodNetError):
        host_interface_name("")


def test_bridge_mac_is_fixed_and_locally_administered_unicast():
    mac = bridge_mac("lab-pods", ipaddress.IPv4Address("10.244.1.1"))
    assert mac == bridge_mac("lab-pods", ipaddress.IPv4Address("10.244.1.1"))
    assert int(mac.split(":")[0], 16) & 0b11 == 0b10


# -- IPAM --------------------------------------------------------------------------------

def test_allocation_is_round_robin_and_a_sandbox_keeps_its_address():
    state = IpamState()
    assert allocate(state, NET, "a") == "10.244.1.2"
    assert allocate(state, NET, "b") == "10.244.1.3"
    assert allocate(state, NET, "a") == "10.244.1.2"
    assert release(state, "a") == "10.244.1.2"
    # The freed address is not handed out again at once.
    assert allocate(state, NET, "c") == "10.244.1.4"


def test_allocation_wraps_around_and_skips_taken_addresses():
    net = ipaddress.ip_network("10.244.1.0/29")  # pods: .2 .. .6
    state = IpamState({"x": "10.244.1.2"}, last="10.244.1.6")
    assert allocate(state, net, "a") == "10.244.1.3"


def test_a_full_cidr_is_a_clear_error():
    net = ipaddress.ip_network("10.244.1.0/29")
    state = IpamState()
    for i in range(5):
        allocate(state, net, f"s{i}")
    with pytest.raises(PodNetError, match="is full"):
        allocate(state, net, "one-too-many")


def test_releasing_an_unknown_sandbox_is_a_no_op():
    state = IpamState({"a": "10.244.1.2"})
    assert release(state, "nobody") is None
    assert state.allocations == {"a": "10.244.1.2"}


def test_a_last_address_outside_the_cidr_starts_from_the_beginning():
    state = IpamState(last="10.99.0.7")
    assert allocate(state, NET, "a") == "10.244.1.2"


def test_store_persists_allocations_across_instances(tmp_path):
    store = IpamStore(str(tmp_path))
    assert store.allocate(NET, "a") == ("10.244.1.2", True)
    assert store.allocate(NET, "a") == ("10.244.1.2", False)
    again = IpamStore(str(tmp_path))  # a restarted runtime
    assert again.address_of("a") == "10.244.1.2"
    assert again.allocate(NET, "b") == ("10.244.1.3", True)
    assert again.release("a") == "10.244.1.2"
    assert IpamStore(str(tmp_path)).address_of("a") is None
    assert IpamStore(str(tmp_path)).load().last == "10.244.1.3"
    assert not list(tmp_path.glob("*.tmp"))


def test_store_hands_out_distinct_addresses_to_concurrent_callers(tmp_path):
    stores = [IpamStore(str(tmp_path)) for _ in range(2)]  # two processes' worth
    got = []

    def work(store, prefix):
        for i in range(20):
            got.append(store.allocate(NET, f"{prefix}-{i}")[0])
    threads = [threading.Thread(target=work, args=(s, f"t{i}")) for i, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 40 and len(set(got)) == 40
    assert len(IpamStore(str(tmp_path)).load().allocations) == 40


def test_a_corrupt_state_file_is_reported_with_its_path(tmp_path):
    (tmp_path / "ipam.json").write_text("{not json")
    with pytest.raises(PodNetError, match=str(tmp_path / "ipam.json")):
        IpamStore(str(tmp_path)).allocate(NET, "a")
    (tmp_path / "ipam.json").write_text(json.dumps(["a list"]))
    with pytest.raises(PodNetError, match="not an IPAM state file"):
        IpamStore(str(tmp_path)).load()


# -- desired routes ----------------------------------------------------------------------

def test_every_other_node_gives_a_route_to_its_pod_cidr_via_its_internal_ip():
    nodes = [node("w1", "10.244.1.0/24", "10.0.0.11"), node("w2", "10.244.2.0/24", "10.0.0.12"),
             node("cp", "10.244.0.0/24", "10.0.0.10")]
    assert desired_routes(nodes, "w1") == {"10.244.2.0/24": "10.0.0.12",
                                           "10.244.0.0/24": "10.0.0.10"}
    # A host without a Node of its own (a control plane) routes to every node.
    assert len(desired_routes(nodes, "not-a-node")) == 3


def test_nodes_without_cidr_or_internal_ip_or_with_ipv6_only_give_no_route():
    nodes = [node("a"), node("b", "10.244.2.0/24"), node("c", ip="10.0.0.3"),
             node("d", "fd00:1::/64", "10.0.0.4"), node("e", "10.244.5.0/24", "fd00::5"),
             node("f", "10.244.6.0/24", addresses=[{"type": "ExternalIP",
                                                    "address": "10.0.0.6"}])]
    assert desired_routes(nodes, "me") == {}


def test_pod_cidrs_list_wins_and_ipv4_entries_are_used():
    n = node("b", "10.244.9.0/24", "10.0.0.2", cidrs=["fd00:2::/64", "10.244.2.0/24"])
    assert desired_routes([n], "a") == {"10.244.2.0/24": "10.0.0.2"}


def test_a_duplicate_cidr_goes_to_the_first_node_by_name_and_own_cidr_is_never_routed():
    nodes = [node("zz", "10.244.2.0/24", "10.0.0.9"), node("bb", "10.244.2.0/24", "10.0.0.2"),
             node("me", "10.244.1.0/24", "10.0.0.1"), node("cc", "10.244.1.0/24", "10.0.0.3")]
    assert desired_routes(nodes, "me") == {"10.244.2.0/24": "10.0.0.2"}


# -- the diff ----------------------------------------------------------------------------

def test_plan_adds_changes_and_deletes_only_what_differs():
    desired = {"10.244.2.0/24": "10.0.0.2", "10.244.3.0/24": "10.0.0.3",
               "10.244.4.0/24": "10.0.0.4"}
    owned = {"10.244.2.0/24": "10.0.0.2", "10.244.3.0/24": "10.0.0.99",
             "10.244.7.0/24": "10.0.0.7"}
    p = plan(desired, owned, set())
    assert p.replace == [Route("10.244.3.0/24", "10.0.0.3"), Route("10.244.4.0/24", "10.0.0.4")]
    assert p.delete == ["10.244.7.0/24"]
    assert plan(desired, dict(desired), set()).empty


def test_plan_never_replaces_a_route_it_does_not_own():
    p = plan({"10.0.0.0/24": "10.0.0.2", "10.244.2.0/24": "10.0.0.2"}, {}, {"10.0.0.0/24"})
    assert p.blocked == [Route("10.0.0.0/24", "10.0.0.2")]
    assert p.replace == [Route("10.244.2.0/24", "10.0.0.2")]


def test_normalize_dst_reads_ip_route_forms():
    assert normalize_dst("default") == "0.0.0.0/0"
    assert normalize_dst("10.1.2.3") == "10.1.2.3/32"
    assert normalize_dst("10.244.2.0/24") == "10.244.2.0/24"


def test_parse_table_splits_owned_and_foreign_routes():
    owned = [{"dst": "10.244.2.0/24", "gateway": "10.0.0.2", "protocol": "77"}]
    every = owned + [
        {"dst": "default", "gateway": "10.0.0.1", "dev": "eth0"},
        {"dst": "10.0.0.0/24", "dev": "eth0", "protocol": "kernel"},
        {"dst": "10.244.8.0/24", "dev": "eth0", "gateway": "10.0.0.8", "metric": 100}]
    state = parse_table(owned, every)
    assert state == TableState({"10.244.2.0/24": "10.0.0.2"}, {"0.0.0.0/0", "10.0.0.0/24"})


# -- the controller ----------------------------------------------------------------------

class RecordingTable:
    """A RouteTable double: a dict of owned routes, plus foreign destinations."""

    def __init__(self, foreign=(), fail=()):
        self.owned: dict[str, str] = {}
        self.foreign, self.fail = set(foreign), set(fail)

    def read(self):
        return TableState(dict(self.owned), set(self.foreign))

    def apply(self, p: Plan):
        errors = []
        for r in p.replace:
            if r.dst in self.fail:
                errors.append(f"{r.dst}: Nexthop has invalid gateway")
            else:
                self.owned[r.dst] = r.gateway
        for dst in p.delete:
            self.owned.pop(dst)
        return errors


async def eventually(predicate, timeout=3.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def test_route_sync_follows_nodes_being_added_changed_and_deleted():
    async def scenario():
        api = FakeApi()
        api.seed("nodes", node("me", "10.244.1.0/24", "10.0.0.1"),
                 node("w2", "10.244.2.0/24", "10.0.0.2"))
        table = RecordingTable()
        sync = RouteSync(api, "me", table, resync_period=60)
        task = asyncio.create_task(sync.run())
        try:
            await eventually(lambda: table.owned == {"10.244.2.0/24": "10.0.0.2"})
            await api.create("nodes", node("w3", "10.244.3.0/24", "10.0.0.3"))
            await eventually(lambda: table.owned.get("10.244.3.0/24") == "10.0.0.3")
            await api.patch("nodes", "w2", {"status": {"addresses": [
                {"type": "InternalIP", "address": "10.0.0.22"}]}})
            await eventually(lambda: table.owned.get("10.244.2.0/24") == "10.0.0.22")
            await api.delete("nodes", "w3")
            await eventually(lambda: table.owned == {"10.244.2.0/24": "10.0.0.22"})
            assert sync.synced()
            text = metrics_text(sync)
            assert "podnet_routes_installed 1" in text and "podnet_nodes 2" in text
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    asyncio.run(scenario())


def test_route_sync_retries_a_failed_route_and_keeps_the_others():
    async def scenario():
        api = FakeApi()
        api.seed("nodes", node("w2", "10.244.2.0/24", "10.0.0.2"),
                 node("w3", "10.244.3.0/24", "192.168.9.3"))
        table = RecordingTable(fail={"10.244.3.0/24"})
        sync = RouteSync(api, "me", table, resync_period=60)
        task = asyncio.create_task(sync.run())
        try:
            await eventually(lambda: sync.metrics["sync_errors"] >= 2)
            assert table.owned == {"10.244.2.0/24": "10.0.0.2"}
            table.fail.clear()  # the gateway became reachable
            await eventually(lambda: "10.244.3.0/24" in table.owned)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    asyncio.run(scenario())


def test_route_sync_puts_back_a_route_deleted_behind_its_back():
    async def scenario():
        api = FakeApi()
        api.seed("nodes", node("w2", "10.244.2.0/24", "10.0.0.2"))
        table = RecordingTable()
        sync = RouteSync(api, "me", table, resync_period=0.05)
        task = asyncio.create_task(sync.run())
        try:
            await eventually(lambda: "10.244.2.0/24" in table.owned)
            table.owned.clear()
            await eventually(lambda: "10.244.2.0/24" in table.owned)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    asyncio.run(scenario())


# -- plumbing ----------------------------------------------------------------------------

def test_commands_in_another_netns_go_through_nsenter():
    assert netns_path("pod1") == "/run/netns/pod1"
    assert Commands("/proc/42/ns/net").argv(["ip", "link"]) == [
        "nsenter", "--net=/proc/42/ns/net", "--", "ip", "link"]
    assert Commands().argv(["ip", "link"]) == ["ip", "link"]


class _LinkTable(Commands):
    """Commands over a fake link table: `ip link del` of a name that `vanishing` lists
    fails because the kernel removed it meanwhile (a veth whose peer netns just went)."""

    def __init__(self, links: set[str], vanishing: set[str] = frozenset(),
                 stuck: set[str] = frozenset()):
        super().__init__()
        self.links, self.vanishing, self.stuck = links, set(vanishing), set(stuck)

    def run(self, *args, check=True, input=None):
        import subprocess
        name, rc = args[-1], 0
        if args[:3] == ("ip", "link", "del"):
            if name in self.vanishing:
                self.links.discard(name)
                rc = 1
            elif name in self.stuck:
                rc = 2
            elif name in self.links:
                self.links.discard(name)
            else:
                rc = 1
        elif args[:3] == ("ip", "link", "show"):
            rc = 0 if name in self.links else 1
        if check and rc:
            raise CommandError(list(args), rc, "Cannot find device")
        return subprocess.CompletedProcess(list(args), rc, "", "" if rc == 0 else "err")


def test_delete_link_treats_a_link_that_vanished_meanwhile_as_deleted():
    cmd = _LinkTable({"vp1", "vp2"}, vanishing={"vp1"})
    cmd.delete_link("vp1")
    cmd.delete_link("vp2")
    cmd.delete_link("vp3")  # never there
    assert cmd.links == set()


def test_delete_link_reports_a_link_that_is_still_there():
    cmd = _LinkTable({"vp1"}, stuck={"vp1"})
    with pytest.raises(CommandError, match="vp1"):
        cmd.delete_link("vp1")


def test_daemon_flags():
    args = parse_args(["--kubeconfig", "k", "--node-name", "w1"])
    assert (args.route_proto, args.port, args.netns) == (77, 10264, None)
    with pytest.raises(SystemExit):
        parse_args(["--kubeconfig", "k", "--node-name", "w1", "--route-proto", "300"])


# -- isolation rules ---------------------------------------------------------------------

def test_pod_rules_refuse_listed_addresses_then_everything_only_the_default_route_reaches():
    rules = pod_rules("10.244.1.0/24", "lab-pods", ["10.123.47.1"])
    assert [r.args() for r in rules] == [
        ["pref", "32600", "from", "10.244.1.0/24", "to", "10.123.47.1/32", "iif", "lab-pods",
         "unreachable"],
        ["pref", "32700", "from", "10.244.1.0/24", "iif", "lab-pods", "lookup", "main",
         "suppress_prefixlength", "0"],
        ["pref", "32701", "from", "10.244.1.0/24", "iif", "lab-pods", "unreachable"]]


def test_parse_rules_reads_ip_rule_json_back_and_ignores_rules_outside_the_band():
    shown = [  # `ip -j rule show` after adding the rules above (iproute2 6.1)
        {"priority": 0, "src": "all", "table": "local"},
        {"priority": 32600, "src": "10.244.1.0", "srclen": 24, "dst": "10.123.47.1",
         "iif": "lab-pods", "action": "unreachable"},
        {"priority": 32700, "src": "10.244.1.0", "srclen": 24, "iif": "lab-pods",
         "table": "main", "suppress_prefixlen": 0},
        {"priority": 32701, "src": "10.244.1.0", "srclen": 24, "iif": "lab-pods",
         "action": "unreachable"},
        {"priority": 32766, "src": "all", "table": "main"}]
    assert parse_rules(shown) == pod_rules("10.244.1.0/24", "lab-pods", ["10.123.47.1/32"])
