"""The route-sync daemon (`python -m agents.podnet`) against a real API server and etcd,
authenticated as kube-proxy (the identity the podnet role gives it). Routes are
programmed in a network namespace the test creates (`--netns`), never in this
machine's own routing table: a Node with a podCIDR appearing installs a route, a
changed InternalIP moves it, deleting the Node removes it, routes of other protocols
are left alone, and a route deleted behind the daemon's back comes back."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from agents.apiserver import testing
from tests.conftest import need_root, need_tool

pytestmark = pytest.mark.component

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def sh(*argv: str, check: bool = True) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    if check and proc.returncode:
        raise AssertionError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr}")
    return proc.stdout


def eventually(predicate, what: str, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


class Api:
    """Admin requests over the API server's plain-HTTP test port."""

    def __init__(self, url: str):
        self.url = url
        self.created: list[str] = []

    def call(self, method: str, path: str, body=None, content_type="application/json"):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": content_type})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read() or b"{}")

    def create_node(self, name, ip, cidr=None):
        spec = {"podCIDR": cidr, "podCIDRs": [cidr]} if cidr else {}
        self.call("POST", "/api/v1/nodes", {
            "apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "spec": spec,
            "status": {"addresses": [{"type": "InternalIP", "address": ip},
                                     {"type": "Hostname", "address": name}]}})
        self.created.append(name)

    def patch(self, path, body):
        self.call("PATCH", path, body, "application/merge-patch+json")

    def delete_node(self, name):
        self.call("DELETE", f"/api/v1/nodes/{name}")

    def delete_created_nodes(self):
        for name in self.created:
            with contextlib.suppress(urllib.error.HTTPError):  # the test deleted it
                self.delete_node(name)
        self.created.clear()


class Node:
    """A netns standing in for a host: lab0 10.250.1.1/24 on a veth (its peer up too)."""

    def __init__(self):
        self.ns = f"pnrs{secrets.token_hex(3)}"
        sh("ip", "netns", "add", self.ns)
        sh("ip", "-n", self.ns, "link", "add", "lab0", "type", "veth", "peer", "name", "lab1")
        sh("ip", "-n", self.ns, "addr", "add", "10.250.1.1/24", "dev", "lab0")
        for dev in ("lab0", "lab1", "lo"):
            sh("ip", "-n", self.ns, "link", "set", dev, "up")

    def routes(self, *selector: str) -> dict[str, str]:
        out = json.loads(sh("ip", "-n", self.ns, "-j", "-4", "route", "show", *selector) or "[]")
        return {r["dst"]: r.get("gateway", r.get("dev")) for r in out}

    def owned(self) -> dict[str, str]:
        return self.routes("proto", "77")

    def remove(self) -> None:
        sh("ip", "netns", "del", self.ns, check=False)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    need_root()
    need_tool("ip")
    need_tool("nsenter")
    work = str(tmp_path_factory.mktemp("podnet-rs"))
    pki = testing.make_pki(work, {"kube-proxy": ("system:kube-proxy", ["system:node-proxier"])})
    with testing.run_etcd(work, testing.etcd_command_from_env()) as etcd, \
            testing.run_apiserver(work, etcd.endpoint, secure=True, extra_args=[
                "--tls-cert-file", pki.server_cert, "--tls-private-key-file", pki.server_key,
                "--client-ca-file", pki.ca]) as api:
        cert, key = pki.clients["kube-proxy"]
        doc = {"apiVersion": "v1", "kind": "Config", "current-context": "lab",
               "clusters": [{"name": "lab", "cluster": {"server": api.secure_url,
                                                        "certificate-authority": pki.ca}}],
               "users": [{"name": "p", "user": {"client-certificate": cert,
                                                "client-key": key}}],
               "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "p"}}]}
        kubeconfig = os.path.join(work, "kubeconfig")
        with open(kubeconfig, "w") as fh:
            json.dump(doc, fh)
        yield work, kubeconfig, Api(api.url)


@pytest.fixture
def node():
    n = Node()
    try:
        yield n
    finally:
        n.remove()


@pytest.fixture
def daemon(cluster, node):
    work, kubeconfig, _ = cluster
    port = testing.free_port()
    log_path = os.path.join(work, f"podnet-{node.ns}.log")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "agents.podnet", "--kubeconfig", kubeconfig,
             "--node-name", "me", "--netns", node.ns, "--port", str(port),
             "--resync-period", "0.5"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, cwd=ROOT)
    try:
        testing.wait_for(lambda: proc.poll() is not None or testing._http_ok(
            f"http://127.0.0.1:{port}/healthz"), 20, "podnet /healthz")
        if proc.poll() is not None:
            with open(log_path) as fh:
                pytest.fail(f"podnet exited with {proc.returncode}: {fh.read()[-3000:]}")
        proc.port, proc.log_path = port, log_path
        yield proc
    finally:
        testing.stop(proc)


@pytest.fixture
def api(cluster):
    api = cluster[2]
    try:
        yield api
    finally:
        api.delete_created_nodes()


def test_node_routes_follow_the_node_objects(daemon, api, node):
    api.create_node("me", "10.250.1.1", "10.244.1.0/24")
    api.create_node("w2", "10.250.1.2", "10.244.2.0/24")
    eventually(lambda: node.owned() == {"10.244.2.0/24": "10.250.1.2"}, "route to w2")

    # Registered without a pod CIDR (the kubelet does), then Node IPAM assigns one.
    api.create_node("w3", "10.250.1.3")
    api.patch("/api/v1/nodes/w3", {"spec": {"podCIDR": "10.244.3.0/24",
                                            "podCIDRs": ["10.244.3.0/24"]}})
    eventually(lambda: node.owned().get("10.244.3.0/24") == "10.250.1.3", "route to w3")

    api.patch("/api/v1/nodes/w2/status", {"status": {"addresses": [
        {"type": "InternalIP", "address": "10.250.1.22"}]}})
    eventually(lambda: node.owned().get("10.244.2.0/24") == "10.250.1.22",
               "the route to w2 to follow its new address")

    api.delete_node("w3")
    eventually(lambda: node.owned() == {"10.244.2.0/24": "10.250.1.22"},
               "the route to w3 to go with its Node")
    assert "10.244.1.0/24" not in node.routes(), "own pod CIDR must not be routed"


def test_routes_of_other_protocols_are_never_touched(daemon, api, node):
    sh("ip", "-n", node.ns, "route", "add", "10.244.5.0/24", "via", "10.250.1.99",
       "proto", "static")
    sh("ip", "-n", node.ns, "route", "add", "10.99.0.0/16", "via", "10.250.1.98")
    api.create_node("w5", "10.250.1.5", "10.244.5.0/24")  # collides with the static one
    api.create_node("w6", "10.250.1.6", "10.244.6.0/24")
    eventually(lambda: "10.244.6.0/24" in node.owned(), "route to w6")
    eventually(lambda: b"podnet_routes_blocked 1" in urllib.request.urlopen(
        f"http://127.0.0.1:{daemon.port}/metrics", timeout=5).read(), "w5 reported blocked")
    routes = node.routes()
    assert routes["10.244.5.0/24"] == "10.250.1.99" and routes["10.99.0.0/16"] == "10.250.1.98"
    api.delete_node("w6")
    eventually(lambda: "10.244.6.0/24" not in node.owned(), "route to w6 removed")
    assert node.routes()["10.99.0.0/16"] == "10.250.1.98"


def test_a_route_deleted_behind_its_back_comes_back(daemon, api, node):
    api.create_node("w7", "10.250.1.7", "10.244.7.0/24")
    eventually(lambda: "10.244.7.0/24" in node.owned(), "route to w7")
    sh("ip", "-n", node.ns, "route", "del", "10.244.7.0/24")
    eventually(lambda: "10.244.7.0/24" in node.owned(), "route to w7 restored by the resync")


def test_health_metrics_forwarding_and_a_clean_stop(daemon, api, node):
    api.create_node("w8", "10.250.1.8", "10.244.8.0/24")
    eventually(lambda: "10.244.8.0/24" in node.owned(), "route to w8")
    for key in ("net.ipv4.ip_forward", "net.bridge.bridge-nf-call-iptables"):
        assert sh("ip", "netns", "exec", node.ns, "sysctl", "-n", key).strip() == "1", key
    with urllib.request.urlopen(f"http://127.0.0.1:{daemon.port}/healthz", timeout=5) as r:
        assert r.read() == b"ok"
    with urllib.request.urlopen(f"http://127.0.0.1:{daemon.port}/metrics", timeout=5) as r:
        text = r.read().decode()
    assert "podnet_routes_installed 1" in text and "podnet_route_syncs_total" in text
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(10) == 0
    # Routes stay while the daemon is down: pods keep talking across a restart.
    assert "10.244.8.0/24" in node.owned()
