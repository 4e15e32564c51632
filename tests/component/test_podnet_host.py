"""The pod network on this machine, as root, in network namespaces the test creates:
two "nodes" joined by a veth (the lab network), each with a BridgeNetwork and pod
netns, host-gw routes computed from Node objects and applied with RouteTable; then real
traffic between pods (TCP and ICMP, Python one-liners under `ip netns exec`).

The nodes run with strict reverse-path filtering (rp_filter=1): pod traffic works because
every node has a route back to every pod CIDR, not because filtering is off. Nothing
touches the host's own namespace; every netns, process and state file is removed."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile

import pytest

from agents.podnet import BridgeNetwork
from agents.podnet.addresses import host_interface_name
from agents.podnet.iproute import Commands
from agents.podnet.routes import desired_routes, plan
from agents.podnet.routetable import RouteTable
from tests.conftest import need_root, need_tool

pytestmark = pytest.mark.component

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PY = "/usr/bin/python3"

# Answers every TCP connection with NAME, forever (killed by PID at the end).
SERVER = r"""
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(16)
print("ready", flush=True)
while True:
    c, peer = s.accept(); c.sendall(f"{sys.argv[2]} sees {peer[0]}".encode()); c.close()
"""
CLIENT = r"""
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
print(c.recv(200).decode())
"""
# One ICMP echo over a raw socket (the image and this machine have no ping).
PING = r"""
import os, socket, struct, sys
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b)); s = (s >> 16) + (s & 0xffff)
    return ~(s + (s >> 16)) & 0xffff
ident = os.getpid() & 0xffff
body = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + b"labping!"
pkt = body[:2] + struct.pack("!H", csum(body)) + body[4:]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); s.settimeout(3)
s.sendto(pkt, (sys.argv[1], 0))
while True:
    data, addr = s.recvfrom(2048)
    icmp = data[(data[0] & 0xf) * 4:]
    if addr[0] == sys.argv[1] and icmp[0] == 0 and struct.unpack("!H", icmp[4:6])[0] == ident:
        print("reply"); break
"""
# What a connection to an address outside the lab does from a pod: refused at once by
# the node (no route), never sent anywhere.
OUTSIDE = r"""
import errno, socket, sys
try:
    socket.create_connection((sys.argv[1], 80), timeout=5)
    print("connected")
except OSError as exc:
    print(errno.errorcode.get(exc.errno, str(exc)))
"""

NODES = {"a": ("10.250.0.1", "10.244.1.0/24"), "b": ("10.250.0.2", "10.244.2.0/24")}
# Stands in for the lab machine: on the lab network, node a's default gateway; pods must
# not reach it. And an address pods of node b are told not to reach.
LAB_MACHINE = "10.250.0.254"
FORBIDDEN = "10.250.0.253"


def sh(*argv: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode:
        raise AssertionError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr}")
    return proc


def in_netns(ns: str, script: str, *args: str, timeout: float = 20) -> str:
    return sh("ip", "netns", "exec", ns, PY, "-c", script, *args, timeout=timeout).stdout.strip()


class Lab:
    """The namespaces of one test run, named with a random token."""

    def __init__(self):
        self.token = secrets.token_hex(3)
        self.netns: list[str] = []
        self.procs: list[subprocess.Popen] = []
        self.state = tempfile.mkdtemp(prefix="podnet-")

    def ns(self, role: str) -> str:
        return f"pn{self.token}-{role}"

    def add_netns(self, role: str) -> str:
        name = self.ns(role)
        sh("ip", "netns", "add", name)
        self.netns.append(name)
        return name

    def network(self, node: str) -> BridgeNetwork:
        return BridgeNetwork(pod_cidr=NODES[node][1], bridge="lab-pods",
                             state_dir=os.path.join(self.state, node),
                             commands=Commands(self.ns(node)),
                             unreachable=[f"{FORBIDDEN}/32"] if node == "b" else [])

    def serve(self, ns: str, port: int, name: str) -> None:
        proc = subprocess.Popen(["ip", "netns", "exec", ns, PY, "-c", SERVER, str(port), name],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(proc)
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()

    def cleanup(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait(5)
        for name in reversed(self.netns):
            sh("ip", "netns", "del", name, check=False)
        shutil.rmtree(self.state, ignore_errors=True)


def node_objects() -> list[dict]:
    return [{"metadata": {"name": n}, "spec": {"podCIDR": cidr},
             "status": {"addresses": [{"type": "InternalIP", "address": ip}]}}
            for n, (ip, cidr) in NODES.items()]


def sync_routes(lab: Lab, node: str) -> None:
    table = RouteTable(Commands(lab.ns(node)))
    state = table.read()
    assert table.apply(plan(desired_routes(node_objects(), node), state.owned,
                            state.foreign)) == []


@pytest.fixture(scope="module")
def lab():
    need_root()
    for tool in ("ip", "nsenter", "sysctl"):
        need_tool(tool)
    lab = Lab()
    try:
        for node in NODES:
            ns = lab.add_netns(node)
            sh("ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv4.conf.all.rp_filter=1",
               "net.ipv4.conf.default.rp_filter=1")
        a, b = lab.ns("a"), lab.ns("b")
        sh("ip", "-n", a, "link", "add", "lab0", "type", "veth", "peer", "name", "lab0",
           "netns", b)
        for node, (ip, _) in NODES.items():
            sh("ip", "-n", lab.ns(node), "addr", "add", f"{ip}/24", "dev", "lab0")
            sh("ip", "-n", lab.ns(node), "link", "set", "lab0", "up")
            sh("ip", "-n", lab.ns(node), "link", "set", "lo", "up")
        sh("ip", "-n", a, "addr", "add", f"{FORBIDDEN}/24", "dev", "lab0")
        sh("ip", "-n", b, "addr", "add", f"{LAB_MACHINE}/24", "dev", "lab0")
        # Like a lab host's default route to the lab machine.
        sh("ip", "-n", a, "route", "add", "default", "via", LAB_MACHINE)
        lab.pods = {}
        for pod, node in (("a1", "a"), ("a2", "a"), ("b1", "b")):
            ns = lab.add_netns(pod)
            lab.pods[pod] = lab.network(node).setup(f"sandbox-{pod}", f"/run/netns/{ns}")
        for node in NODES:
            sync_routes(lab, node)
        for pod in lab.pods:
            lab.serve(lab.ns(pod), 8080, pod)
        lab.serve(lab.ns("b"), 6443, "node-b")  # a service on a node's own address
        lab.serve(lab.ns("a"), 6443, "node-a")
        yield lab
    finally:
        lab.cleanup()


def test_pods_get_addresses_from_their_nodes_cidr(lab):
    assert lab.pods == {"a1": "10.244.1.2", "a2": "10.244.1.3", "b1": "10.244.2.2"}
    routes = [r.strip() for r in sh("ip", "-n", lab.ns("a1"), "-4", "route").stdout.splitlines()]
    assert sorted(routes) == sorted(["default via 10.244.1.1 dev eth0",
                                     "10.244.1.0/24 dev eth0 proto kernel scope link "
                                     "src 10.244.1.2"])


def test_node_has_the_bridge_with_the_gateway_address_and_forwarding_on(lab):
    addrs = sh("ip", "-n", lab.ns("a"), "-br", "-4", "addr", "show", "dev", "lab-pods").stdout
    assert "10.244.1.1/24" in addrs
    fwd = sh("ip", "netns", "exec", lab.ns("a"), "sysctl", "-n", "net.ipv4.ip_forward").stdout
    assert fwd.strip() == "1"


def test_pod_reaches_a_pod_on_the_other_node_by_tcp_with_its_own_address(lab):
    assert in_netns(lab.ns("a1"), CLIENT, lab.pods["b1"], "8080") == "b1 sees 10.244.1.2"
    assert in_netns(lab.ns("b1"), CLIENT, lab.pods["a2"], "8080") == "a2 sees 10.244.2.2"


def test_pod_pings_a_pod_on_the_other_node(lab):
    assert in_netns(lab.ns("b1"), PING, lab.pods["a1"]) == "reply"


def test_pod_reaches_a_pod_on_the_same_node_over_the_bridge(lab):
    assert in_netns(lab.ns("a1"), CLIENT, lab.pods["a2"], "8080") == "a2 sees 10.244.1.2"


def test_pod_reaches_another_nodes_own_address_like_the_api_server(lab):
    assert in_netns(lab.ns("a1"), CLIENT, NODES["b"][0], "6443") == "node-b sees 10.244.1.2"


def route_get(lab: Lab, node: str, dst: str, src: str) -> subprocess.CompletedProcess:
    """How node routes a packet from a pod (as if it came in on the bridge)."""
    return sh("ip", "-n", lab.ns(node), "route", "get", dst, "from", src, "iif", "lab-pods",
              check=False)


def test_pod_has_no_way_out_of_the_lab(lab):
    # Node a has a default route, but not for pods: TEST-NET-3 is refused by node a itself
    # (the pod's SYN is never forwarded) ...
    assert route_get(lab, "a", "203.0.113.7", "10.244.1.2").returncode != 0
    assert in_netns(lab.ns("a1"), OUTSIDE, "203.0.113.7") in ("ENETUNREACH", "EHOSTUNREACH")
    # ... while the node itself still uses it, and pods still reach the lab network.
    assert f"via {LAB_MACHINE}" in sh("ip", "-n", lab.ns("a"), "route", "get",
                                      "203.0.113.7").stdout
    assert "via 10.250.0.2" in route_get(lab, "a", "10.244.2.2", "10.244.1.2").stdout


def test_pod_cannot_reach_its_nodes_default_gateway_the_lab_machine(lab):
    assert in_netns(lab.ns("a1"), OUTSIDE, LAB_MACHINE) in ("ENETUNREACH", "EHOSTUNREACH")
    assert in_netns(lab.ns("a1"), CLIENT, NODES["b"][0], "6443") == "node-b sees 10.244.1.2"


def test_pod_cannot_reach_an_address_declared_unreachable(lab):
    assert in_netns(lab.ns("b1"), OUTSIDE, FORBIDDEN) in ("ENETUNREACH", "EHOSTUNREACH")
    assert in_netns(lab.ns("b1"), CLIENT, NODES["a"][0], "6443") == "node-a sees 10.244.2.2"


def test_isolation_rules_are_set_once_and_repaired(lab):
    rules = sh("ip", "-n", lab.ns("a"), "-4", "rule").stdout
    assert rules.count("iif lab-pods") == 3, rules  # the gateway, no default, the rest
    sh("ip", "-n", lab.ns("a"), "-4", "rule", "del", "pref", "32701")
    lab.network("a").ensure_bridge()
    assert sh("ip", "-n", lab.ns("a"), "-4", "rule").stdout == rules


def test_routes_are_tagged_with_our_protocol_and_only_to_other_nodes(lab):
    owned = sh("ip", "-n", lab.ns("a"), "route", "show", "proto", "77").stdout.split("\n")
    assert [line.strip() for line in owned if line] == ["10.244.2.0/24 via 10.250.0.2 dev lab0"]


def test_setup_again_is_a_no_op_and_a_new_object_sees_the_persisted_address(lab):
    net = lab.network("a")
    assert net.setup("sandbox-a1", f"/run/netns/{lab.ns('a1')}") == "10.244.1.2"
    assert lab.network("a").address_of("sandbox-a1") == "10.244.1.2"
    links = sh("ip", "-n", lab.ns("a1"), "-br", "link").stdout
    assert links.count("eth0") == 1
    # The pod still answers on the same connection path.
    assert in_netns(lab.ns("b1"), CLIENT, "10.244.1.2", "8080") == "a1 sees 10.244.2.2"


def test_teardown_frees_the_address_removes_the_veth_and_is_idempotent(lab):
    ns = lab.add_netns("t1")
    path = f"/run/netns/{ns}"
    net = lab.network("b")
    ip = net.setup("sandbox-t1", path)
    host = host_interface_name("sandbox-t1")
    assert Commands(lab.ns("b")).link_exists(host)
    net.teardown("sandbox-t1", path)
    assert not Commands(lab.ns("b")).link_exists(host)
    assert not Commands(ns).link_exists("eth0")
    assert net.address_of("sandbox-t1") is None
    net.teardown("sandbox-t1", path)  # again: nothing to do
    assert ip not in lab.network("b").allocations().values()


def test_teardown_after_the_netns_is_gone_still_frees_the_address(lab):
    ns = lab.add_netns("t2")
    net = lab.network("b")
    net.setup("sandbox-t2", f"/run/netns/{ns}")
    sh("ip", "netns", "del", ns)
    net.teardown("sandbox-t2", f"/run/netns/{ns}")
    assert net.address_of("sandbox-t2") is None
    assert not Commands(lab.ns("b")).link_exists(host_interface_name("sandbox-t2"))


def test_setup_into_a_replaced_netns_reconnects_it(lab):
    ns = lab.add_netns("t3")
    net = lab.network("b")
    first = net.setup("sandbox-t3", f"/run/netns/{ns}")
    sh("ip", "netns", "del", ns)
    sh("ip", "netns", "add", ns)  # the runtime made a fresh netns for the same sandbox
    assert net.setup("sandbox-t3", f"/run/netns/{ns}") == first
    assert in_netns(ns, PING, "10.244.2.1") == "reply"
    net.teardown("sandbox-t3", f"/run/netns/{ns}")


def test_setup_of_a_missing_netns_fails_and_allocates_nothing(lab):
    net = lab.network("b")
    with pytest.raises(Exception, match="does not exist"):
        net.setup("sandbox-nope", f"/run/netns/{lab.ns('nope')}")
    assert net.address_of("sandbox-nope") is None


def test_the_default_plumbing_works_from_inside_the_node_netns(lab):
    """What the runtime does on a real node: BridgeNetwork with no commands seam, run
    in the node's own namespace."""
    ns = lab.add_netns("t4")
    script = ("import sys; from agents.podnet import BridgeNetwork; "
              "n = BridgeNetwork(pod_cidr=sys.argv[1], state_dir=sys.argv[2]); "
              "print(n.setup('sandbox-t4', sys.argv[3])); n.teardown('sandbox-t4', sys.argv[3])")
    out = sh("ip", "netns", "exec", lab.ns("b"), sys.executable, "-c", script,
             NODES["b"][1], os.path.join(lab.state, "b"), f"/run/netns/{ns}",
             timeout=30).stdout
    assert out.strip().startswith("10.244.2.")
    assert lab.network("b").address_of("sandbox-t4") is None


def test_cleanup_leaves_nothing_behind():
    """A throwaway Lab's namespaces and state are gone after cleanup."""
    need_root()
    lab = Lab()
    lab.add_netns("x")
    lab.cleanup()
    listed = sh("ip", "netns", "list").stdout
    assert lab.ns("x") not in listed and not os.path.exists(lab.state)
