"""kube-proxy against a real etcd + our API server, programming rules INSIDE a network
namespace this test creates (the host's own nftables/iptables are never touched).

Topology (all in namespaces made here, removed at the end):

    node  (kube-proxy runs here: `ip netns exec node python -m agents.kube_proxy`)
          br0 10.77.0.1/24, up0 192.168.250.2/24 (an uplink veth, default route)
          127.0.0.1:<relay>  → the API server on the host's 127.0.0.1 (an in-process relay)
    be1, be2   HTTP backends 10.77.0.2/.3 on br0, each answering its own name
    cl         a client "pod" 10.77.0.4 on br0

Sockets are opened inside a namespace by this process itself (setns on the calling
thread, then straight back), so counting answers costs no process per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid

import pytest

from agents.apiserver import testing
from agents.kube.client import KubeClient
from tests.conftest import need, need_root, need_tool

pytestmark = pytest.mark.component

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
NODE_IP, UPLINK_IP = "10.77.0.1", "192.168.250.2"
BACKENDS = {"be1": "10.77.0.2", "be2": "10.77.0.3"}
CLIENT_IP = "10.77.0.4"


# ------------------------------------------------------------------ namespace plumbing


@contextlib.contextmanager
def in_netns(path: str):
    """Run the body with this thread inside the network namespace at `path`."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(path, os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {path}: {os.strerror(err)}")
        try:
            yield
        finally:
            if _libc.setns(own, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back to the test's namespace")
    finally:
        os.close(own)
        os.close(target)


def sh(*argv: str, ns: str | None = None, check: bool = True) -> str:
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(argv)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def serve_forever(listener: socket.socket, handle) -> threading.Thread:
    def loop():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()
    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


def http_backend(name: str):
    def handle(conn: socket.socket):
        with conn:
            conn.settimeout(5)
            data = b""
            with contextlib.suppress(OSError):
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    data += chunk
                conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(name), name.encode()))
    return handle


def relay_to(port: int):
    """A TCP relay handler to 127.0.0.1:port in the namespace its thread was made in."""
    def pump(src, dst):
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def handle(conn: socket.socket):
        try:
            upstream = socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            conn.close()
            return
        upstream.settimeout(None)
        threading.Thread(target=pump, args=(upstream, conn), daemon=True).start()
        pump(conn, upstream)
    return handle


class Net:
    def __init__(self, tag: str):
        self.tag = tag
        self.names = {role: f"lp{tag}-{role}" for role in ("node", *BACKENDS, "cl")}
        self.listeners: list[socket.socket] = []

    def path(self, role: str) -> str:
        return f"/run/netns/{self.names[role]}"

    def listen(self, role: str, port: int, handle, addr: str = "0.0.0.0") -> int:
        with in_netns(self.path(role)):
            listener = socket.create_server((addr, port))
        self.listeners.append(listener)
        serve_forever(listener, handle)
        return listener.getsockname()[1]

    def build(self) -> None:
        node = self.names["node"]
        for name in self.names.values():
            sh("ip", "netns", "add", name)
        for cmd in (["ip", "link", "set", "lo", "up"],
                    ["ip", "link", "add", "br0", "type", "bridge"],
                    ["ip", "addr", "add", f"{NODE_IP}/24", "dev", "br0"],
                    ["ip", "link", "set", "br0", "up"],
                    # an uplink whose far end goes nowhere (no dummy module here)
                    ["ip", "link", "add", "up0", "type", "veth", "peer", "up1"],
                    ["ip", "addr", "add", f"{UPLINK_IP}/24", "dev", "up0"],
                    ["ip", "link", "set", "up1", "up"],
                    ["ip", "link", "set", "up0", "up"],
                    ["ip", "route", "add", "default", "via", "192.168.250.1"],
                    ["sysctl", "-qw", "net.ipv4.ip_forward=1"]):
            sh(*cmd, ns=node)
        for role, ip in [*BACKENDS.items(), ("cl", CLIENT_IP)]:
            ns, port = self.names[role], f"v{role}"
            sh("ip", "link", "add", port, "netns", node, "type", "veth", "peer", "eth0",
               "netns", ns)
            sh("ip", "link", "set", port, "master", "br0", "up", ns=node)
            # hairpin: a pod reaching itself through its Service (the pod network's job
            # in the lab)
            sh("ip", "link", "set", port, "type", "bridge_slave", "hairpin", "on", ns=node)
            for cmd in (["ip", "link", "set", "lo", "up"],
                        ["ip", "addr", "add", f"{ip}/24", "dev", "eth0"],
                        ["ip", "link", "set", "eth0", "up"],
                        ["ip", "route", "add", "default", "via", NODE_IP]):
                sh(*cmd, ns=ns)
        for role in BACKENDS:
            self.listen(role, 8080, http_backend(role))

    def destroy(self) -> None:
        for listener in self.listeners:
            listener.close()
        for name in self.names.values():
            sh("ip", "netns", "del", name, check=False)


def fetch(net: Net, role: str, ip: str, port: int, timeout: float = 2.0) -> str:
    """GET http://ip:port/ from inside `role`'s namespace; the body (a backend's name)."""
    with in_netns(net.path(role)):
        sock = socket.socket()
    with sock:
        sock.settimeout(timeout)
        sock.connect((ip, port))
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    return data.split(b"\r\n\r\n", 1)[1].decode()


def answers(net: Net, role: str, ip: str, port: int, n: int) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _ in range(n):
        name = fetch(net, role, ip, port)
        counts[name] = counts.get(name, 0) + 1
    return counts


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except Exception as exc:  # noqa: BLE001 - refused, timed out, …: poll again
            last = exc
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def net():
    need_root()
    need_tool("nft")
    need_tool("iptables-nft")
    n = Net(uuid.uuid4().hex[:6])
    try:
        n.build()
        yield n
    finally:
        n.destroy()


def write_kubeconfig(work: str, name: str, server: str) -> str:
    path = os.path.join(work, name)
    with open(path, "w") as fh:
        json.dump({"apiVersion": "v1", "kind": "Config", "current-context": "t",
                   "clusters": [{"name": "t", "cluster": {"server": server}}],
                   "users": [{"name": "t", "user": {}}],
                   "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t"}}]},
                  fh)
    return path


@pytest.fixture(scope="module")
def cluster(net, tmp_path_factory):
    need(os.path.exists(testing.ETCD), "needs /usr/bin/etcd (Debian etcd-server)")
    work = str(tmp_path_factory.mktemp("kube-proxy"))
    with testing.run_etcd(work, testing.etcd_command_from_env()) as etcd, \
            testing.run_apiserver(work, etcd.endpoint) as api:
        api_port = int(api.url.rsplit(":", 1)[1])
        relay_port = net.listen("node", 0, relay_to(api_port), addr="127.0.0.1")
        yield {"url": api.url, "work": work,
               # for processes in the node's namespace (through the relay) / on the host
               "kubeconfig": write_kubeconfig(work, "kubeconfig",
                                              f"http://127.0.0.1:{relay_port}"),
               "host_kubeconfig": write_kubeconfig(work, "kubeconfig-host", api.url)}


@contextlib.contextmanager
def kube_proxy(net: Net, cluster: dict, mode: str):
    log_path = os.path.join(cluster["work"], f"kube-proxy-{mode}.log")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", net.names["node"], sys.executable, "-m",
             "agents.kube_proxy", "--kubeconfig", cluster["kubeconfig"], "--node-name",
             "node1", "--mode", mode, "--port", "10256"],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_until(lambda: proc.poll() is not None or healthz(net) == 200, 20,
                   "kube-proxy to program its rules")
        if proc.poll() is not None:
            with open(log_path) as fh:
                pytest.fail(f"kube-proxy exited {proc.returncode}: {fh.read()[-3000:]}")
        yield proc
    finally:
        testing.stop(proc)
        sh(sys.executable, "-m", "agents.kube_proxy", "--cleanup", ns=net.names["node"],
           check=False)


def http_get_in(net: Net, role: str, port: int, path: str) -> tuple[int, str]:
    with in_netns(net.path(role)):
        sock = socket.create_connection(("127.0.0.1", port), timeout=2)
    with sock:
        sock.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


def healthz(net: Net) -> int | None:
    try:
        return http_get_in(net, "node", 10256, "/healthz")[0]
    except OSError:
        return None


def api_call(cluster: dict, body):
    async def main():
        async with KubeClient.from_kubeconfig(cluster["host_kubeconfig"]) as api:
            return await body(api)
    return asyncio.run(main())


def make_service(cluster, name: str, ports: list[dict], addresses: list[str],
                 node_port: bool = False) -> dict:
    svc = {"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": name, "namespace": "default"},
           "spec": {"type": "NodePort" if node_port else "ClusterIP", "ports": ports}}

    async def body(api):
        created = await api.create("services", svc, "default")
        if addresses:
            await api.create("endpoints", endpoints(name, addresses, ports), "default")
        return created
    return api_call(cluster, body)


def endpoints(name: str, addresses: list[str], ports: list[dict]) -> dict:
    return {"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": name, "namespace": "default"},
            "subsets": [{"addresses": [{"ip": a} for a in addresses],
                         "ports": [{"name": p.get("name", ""), "port": p["targetPort"],
                                    "protocol": p.get("protocol", "TCP")} for p in ports]}]}


def delete_service(cluster, name: str) -> None:
    async def body(api):
        for res in ("endpoints", "services"):
            with contextlib.suppress(Exception):
                await api.delete(res, name, "default")
    api_call(cluster, body)


# ------------------------------------------------------------------ tests


@pytest.mark.parametrize("mode", ["nftables", "iptables"])
def test_cluster_ip_spreads_over_endpoints_from_node_pod_and_backend(net, cluster, mode):
    ports = [{"name": "http", "port": 80, "targetPort": 8080}]
    svc = make_service(cluster, f"web-{mode[:3]}", ports, list(BACKENDS.values()))
    ip = svc["spec"]["clusterIP"]
    try:
        with kube_proxy(net, cluster, mode):
            wait_until(lambda: fetch(net, "node", ip, 80), 5, "the ClusterIP to answer")
            for client in ("node", "cl", "be1"):  # host (output), pod (prerouting), hairpin
                counts = answers(net, client, ip, 80, 24)
                assert set(counts) == set(BACKENDS), f"from {client}: {counts}"
    finally:
        delete_service(cluster, f"web-{mode[:3]}")


def test_removed_endpoint_gets_no_new_traffic_within_a_second(net, cluster):
    ports = [{"name": "http", "port": 80, "targetPort": 8080}]
    svc = make_service(cluster, "shrink", ports, list(BACKENDS.values()))
    ip = svc["spec"]["clusterIP"]
    try:
        with kube_proxy(net, cluster, "nftables"):
            wait_until(lambda: set(answers(net, "cl", ip, 80, 16)) == set(BACKENDS), 5,
                       "both backends to answer")

            async def shrink(api):
                current = await api.get("endpoints", "shrink", "default")
                current["subsets"] = endpoints("shrink", [BACKENDS["be1"]], ports)["subsets"]
                await api.update("endpoints", current)
            api_call(cluster, shrink)
            started = time.monotonic()
            # 12 answers in a row from be1 alone: 1 in 4096 by chance with both in place
            wait_until(lambda: answers(net, "cl", ip, 80, 12) == {"be1": 12}, 5,
                       "traffic to leave be2")
            elapsed = time.monotonic() - started
            print(f"\nremoved endpoint stopped getting new connections after {elapsed:.3f}s")
            assert elapsed < 1.0
            assert answers(net, "cl", ip, 80, 30) == {"be1": 30}
            status, text = http_get_in(net, "node", 10256, "/metrics")
            assert status == 200 and "labproxy_sync_proxy_rules_duration_seconds_count" in text
            print(next(line for line in text.splitlines()
                       if line.startswith("labproxy_change_to_rules_max_seconds")))
    finally:
        delete_service(cluster, "shrink")


@pytest.mark.parametrize("mode", ["nftables", "iptables"])
def test_node_port_reaches_endpoints_from_the_node_and_from_outside(net, cluster, mode):
    ports = [{"name": "http", "port": 80, "targetPort": 8080}]
    name = f"np-{mode[:3]}"
    svc = make_service(cluster, name, ports, list(BACKENDS.values()), node_port=True)
    node_port = svc["spec"]["ports"][0]["nodePort"]
    try:
        with kube_proxy(net, cluster, mode):
            wait_until(lambda: fetch(net, "cl", NODE_IP, node_port), 5, "the NodePort")
            assert set(answers(net, "cl", NODE_IP, node_port, 24)) == set(BACKENDS)
            assert set(answers(net, "node", UPLINK_IP, node_port, 24)) == set(BACKENDS)
    finally:
        delete_service(cluster, name)


@pytest.mark.parametrize("mode", ["nftables", "iptables"])
def test_service_without_endpoints_is_rejected_not_black_holed(net, cluster, mode):
    name = f"empty-{mode[:3]}"
    ports = [{"name": "http", "port": 80, "targetPort": 8080},
             {"name": "dns", "port": 53, "targetPort": 5353, "protocol": "UDP"}]
    svc = make_service(cluster, name, ports, [], node_port=True)
    ip, node_port = svc["spec"]["clusterIP"], svc["spec"]["ports"][0]["nodePort"]
    try:
        with kube_proxy(net, cluster, mode):
            for client, target, port in (("node", ip, 80), ("cl", ip, 80),
                                         ("cl", NODE_IP, node_port)):
                started = time.monotonic()
                with pytest.raises(ConnectionRefusedError):
                    fetch(net, client, target, port, timeout=3)
                assert time.monotonic() - started < 1.0, f"{client} → {target}:{port}"
            with in_netns(net.path("cl")):
                udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            with udp:
                udp.settimeout(3)
                udp.connect((ip, 53))
                udp.send(b"x")
                with pytest.raises(ConnectionRefusedError):  # ICMP port unreachable
                    udp.recv(100)
    finally:
        delete_service(cluster, name)


def test_rules_live_in_one_table_updated_per_service(net, cluster):
    ports = [{"name": "http", "port": 80, "targetPort": 8080}]
    make_service(cluster, "tbl-a", ports, [BACKENDS["be1"]])
    try:
        with kube_proxy(net, cluster, "nftables"):
            wait_until(lambda: "svc-default/tbl-a/tcp/80" in sh(
                "nft", "list", "table", "ip", "lab-proxy", ns=net.names["node"]), 5,
                "the service chain")
            tables = sh("nft", "list", "tables", ns=net.names["node"])
            assert "table ip lab-proxy" in tables
            make_service(cluster, "tbl-b", ports, [BACKENDS["be2"]])
            wait_until(lambda: "svc-default/tbl-b/tcp/80" in sh(
                "nft", "list", "table", "ip", "lab-proxy", ns=net.names["node"]), 5,
                "the second service's chain")
            delete_service(cluster, "tbl-a")
            wait_until(lambda: "tbl-a" not in sh(
                "nft", "list", "table", "ip", "lab-proxy", ns=net.names["node"]), 5,
                "the deleted service's chains to go")
    finally:
        delete_service(cluster, "tbl-a")
        delete_service(cluster, "tbl-b")


def test_pods_resolve_names_through_the_cluster_dns_service_ip(net, cluster):
    """The DNS agent runs in be1 (as on a node) and registers itself in kube-dns; the
    client pod asks 10.96.0.10 over UDP and TCP, which kube-proxy forwards to it."""
    import dns.message
    import dns.query
    import dns.rcode

    api_port = int(cluster["url"].rsplit(":", 1)[1])
    relay_port = net.listen("be1", 0, relay_to(api_port), addr="127.0.0.1")
    kubeconfig = write_kubeconfig(cluster["work"], "kubeconfig-be1",
                                  f"http://127.0.0.1:{relay_port}")
    log_path = os.path.join(cluster["work"], "dns-be1.log")
    with open(log_path, "wb") as log:
        agent = subprocess.Popen(
            ["ip", "netns", "exec", net.names["be1"], sys.executable, "-m", "agents.dns",
             "--kubeconfig", kubeconfig, "--listen", f"{BACKENDS['be1']}:53",
             "--service-ip", "10.96.0.10", "--register-endpoint-ip", BACKENDS["be1"]],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def ask(tcp: bool):
        q = dns.message.make_query("kubernetes.default.svc.cluster.local", "A")
        with in_netns(net.path("cl")):
            sock = socket.socket(socket.AF_INET,
                                 socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM)
        with sock:
            if tcp:
                sock.settimeout(2)
                sock.connect(("10.96.0.10", 53))
                sock.setblocking(False)
                return dns.query.tcp(q, "10.96.0.10", timeout=2, sock=sock)
            sock.setblocking(False)
            return dns.query.udp(q, "10.96.0.10", timeout=2, sock=sock)
    try:
        with kube_proxy(net, cluster, "nftables"):
            for tcp in (False, True):
                t0 = time.monotonic()
                r = wait_until(lambda tcp=tcp: ask(tcp), 20,
                               f"an answer over {'TCP' if tcp else 'UDP'} via 10.96.0.10")
                print(f"\nfirst answer over {tcp=} after {time.monotonic() - t0:.2f}s")
                assert r.rcode() == dns.rcode.NOERROR
                assert [rd.address for rrset in r.answer for rd in rrset] == ["10.96.0.1"]
    finally:
        testing.stop(agent)
