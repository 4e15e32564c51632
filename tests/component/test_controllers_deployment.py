"""The control plane end to end on 127.0.0.1: real etcd 3.4, the API server, the
scheduler, the controller manager and 5 simulated nodes, driven by kubectl 1.32:
a Deployment of 20 replicas runs across the nodes, `set image` rolls out, `rollout undo`
rolls back, a cordoned node gets no new pods, a Service's Endpoints list the running
pods, and the pods of a node that stops heartbeating are recreated on the others."""

import collections
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from agents.apiserver import testing
from tests.conftest import need

pytestmark = pytest.mark.component

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KUBECTL = "/usr/bin/kubectl"
NODES = 5
# Short heartbeats and grace periods (as in lab inventories) so a dead node shows quickly.
HEARTBEAT = ("--renew-interval", "1", "--lease-duration", "6")


class ControlPlane:
    def __init__(self, work, url):
        self.work, self.url = work, url
        self.home = os.path.join(work, "home")
        os.makedirs(self.home, exist_ok=True)
        self.kubeconfig = os.path.join(work, "kubeconfig")
        with open(self.kubeconfig, "w") as fh:
            json.dump({"apiVersion": "v1", "kind": "Config", "current-context": "lab",
                       "clusters": [{"name": "lab", "cluster": {"server": url}}],
                       "users": [{"name": "u", "user": {}}],
                       "contexts": [{"name": "lab", "context": {
                           "cluster": "lab", "user": "u", "namespace": "default"}}]}, fh)
        self.procs = []

    def start(self, name, *args):
        with open(os.path.join(self.work, f"{name}.log"), "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", *args,
                                     "--kubeconfig", self.kubeconfig],
                                    stdout=log, stderr=log, stdin=subprocess.DEVNULL, cwd=ROOT)
        self.procs.append(proc)
        return proc

    def stop_all(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def kubectl(self, *args, check=True, timeout=120):
        proc = subprocess.run(
            [KUBECTL, "--kubeconfig", self.kubeconfig, "--cache-dir",
             os.path.join(self.work, "cache"), *args],
            capture_output=True, text=True, timeout=timeout,
            env={"HOME": self.home, "PATH": os.environ.get("PATH", "/usr/bin")})
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {proc.stderr}")
        return proc

    def pods(self, selector="app=web"):
        out = self.kubectl("get", "pods", "-l", selector, "-o", "json").stdout
        return json.loads(out)["items"]

    def running(self, selector="app=web"):
        return [p for p in self.pods(selector)
                if p["status"].get("phase") == "Running"
                and not p["metadata"].get("deletionTimestamp")]


def poll(check, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def plane(tmp_path_factory):
    need(os.path.exists(testing.ETCD), "needs /usr/bin/etcd (Debian etcd-server)")
    need(os.path.exists(KUBECTL), "needs /usr/bin/kubectl")
    work = str(tmp_path_factory.mktemp("controlplane"))
    with testing.run_etcd(work, testing.etcd_command_from_env()) as etcd, \
            testing.run_apiserver(work, etcd.endpoint) as api:
        cp = ControlPlane(work, api.url)
        try:
            cp.start("simnodes", "agents.simnodes", "--nodes", str(NODES), "--prefix", "node-",
                     "--cpu", "8", "--memory", "32Gi", *HEARTBEAT)
            cp.start("scheduler", "agents.scheduler", "--port", "0")
            cp.start("controller-manager", "agents.controller_manager", "--port", "0",
                     "--node-monitor-grace-period", "6", "--node-monitor-period", "1",
                     "--default-toleration-seconds", "2")
            poll(lambda: len(json.loads(cp.kubectl("get", "nodes", "-o", "json").stdout)[
                "items"]) == NODES, 60, "simulated nodes")
            yield cp
        finally:
            cp.stop_all()


class PodWatch(threading.Thread):
    """Watches the pods of a selector and records, after every event, how many are
    available (Ready, not being deleted) and how many exist (not being deleted): a
    rollout's bounds checked at every step, not sampled."""

    def __init__(self, url, selector):
        super().__init__(daemon=True)
        self.url, self.selector = url, selector
        with urllib.request.urlopen(f"{url}/api/v1/namespaces/default/pods?"
                                    f"labelSelector={selector}", timeout=30) as resp:
            listed = json.load(resp)
        self.pods = {p["metadata"]["name"]: p for p in listed["items"]}
        self.rv = listed["metadata"]["resourceVersion"]
        self.min_available, self.max_pods = self._count()
        self.stopping = threading.Event()
        self.error = None

    def _count(self):
        live = [p for p in self.pods.values() if not p["metadata"].get("deletionTimestamp")]
        ready = [p for p in live if any(c["type"] == "Ready" and c["status"] == "True"
                                        for c in p["status"].get("conditions") or [])]
        return len(ready), len(live)

    def run(self):
        try:
            while not self.stopping.is_set():
                with urllib.request.urlopen(
                        f"{self.url}/api/v1/namespaces/default/pods?watch=true&labelSelector="
                        f"{self.selector}&resourceVersion={self.rv}&timeoutSeconds=2",
                        timeout=30) as resp:
                    for line in resp:
                        event = json.loads(line)
                        obj = event["object"]
                        self.rv = obj["metadata"]["resourceVersion"]
                        if event["type"] == "DELETED":
                            self.pods.pop(obj["metadata"]["name"], None)
                        elif event["type"] in ("ADDED", "MODIFIED"):
                            self.pods[obj["metadata"]["name"]] = obj
                        available, live = self._count()
                        self.min_available = min(self.min_available, available)
                        self.max_pods = max(self.max_pods, live)
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def stop(self):
        self.stopping.set()
        self.join(10)
        assert self.error is None, self.error


def images(pods):
    return {c["image"] for p in pods for c in p["spec"]["containers"]}


def rolled_out(plane, image, replicas):
    def check():
        running = plane.running()
        return running if len(running) == replicas and images(running) == {image} \
            and len(plane.pods()) == replicas else None
    return check


def test_deployment_of_20_runs_across_all_nodes(plane):
    plane.kubectl("create", "deployment", "web", "--image=lab/python", "--replicas=20")
    running = poll(rolled_out(plane, "lab/python", 20), 120, "20 Running pods")
    per_node = collections.Counter(p["spec"]["nodeName"] for p in running)
    assert sorted(per_node) == [f"node-{i}" for i in range(NODES)]
    assert max(per_node.values()) - min(per_node.values()) <= 2, per_node
    assert all(p["status"]["podIP"] for p in running)
    status = plane.kubectl("rollout", "status", "deployment/web", "--timeout=60s")
    assert "successfully rolled out" in status.stdout


def test_set_image_rolls_out_and_undo_rolls_back(plane):
    watch = PodWatch(plane.url, "app%3Dweb")
    watch.start()
    try:
        plane.kubectl("set", "image", "deployment/web", "*=lab/python:2")
        status = plane.kubectl("rollout", "status", "deployment/web", "--timeout=120s",
                               timeout=150)
        assert "successfully rolled out" in status.stdout
        poll(rolled_out(plane, "lab/python:2", 20), 60, "20 pods on the new image")
    finally:
        watch.stop()
    # 25% of 20: at most 5 unavailable, at most 5 extra, at every watched step.
    assert watch.min_available >= 15, watch.min_available
    assert watch.max_pods <= 25, watch.max_pods
    history = plane.kubectl("rollout", "history", "deployment/web").stdout
    assert [line.split()[0] for line in history.splitlines()[2:] if line.strip()] == ["1", "2"]

    plane.kubectl("rollout", "undo", "deployment/web")
    status = plane.kubectl("rollout", "status", "deployment/web", "--timeout=120s",
                           timeout=150)
    assert "successfully rolled out" in status.stdout
    poll(rolled_out(plane, "lab/python", 20), 60, "20 pods back on the first image")
    deployment = json.loads(plane.kubectl("get", "deployment", "web", "-o", "json").stdout)
    assert deployment["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"


def test_cordoned_node_gets_no_new_pods(plane):
    before = collections.Counter(p["spec"]["nodeName"] for p in plane.running())
    plane.kubectl("cordon", "node-0")
    try:
        plane.kubectl("scale", "deployment/web", "--replicas=30")
        running = poll(lambda: (lambda r: r if len(r) == 30 else None)(plane.running()),
                       120, "30 Running pods")
        after = collections.Counter(p["spec"]["nodeName"] for p in running)
        assert after["node-0"] == before["node-0"]
        assert sum(after.values()) == 30
    finally:
        plane.kubectl("uncordon", "node-0", check=False)


def test_service_endpoints_list_the_running_pods(plane):
    plane.kubectl("expose", "deployment", "web", "--port=80", "--target-port=8080")

    def addresses():
        out = plane.kubectl("get", "endpoints", "web", "-o", "json", check=False)
        if out.returncode != 0:
            return None
        subsets = json.loads(out.stdout).get("subsets") or []
        ips = {a["ip"] for s in subsets for a in s.get("addresses") or []}
        want = {p["status"]["podIP"] for p in plane.running()}
        return ips if ips == want and len(ips) >= 20 else None
    ips = poll(addresses, 60, "Endpoints listing every running pod")
    endpoints = json.loads(plane.kubectl("get", "endpoints", "web", "-o", "json").stdout)
    assert endpoints["subsets"][0]["ports"] == [{"port": 8080, "protocol": "TCP"}]
    assert len(ips) >= 20


def test_pods_of_a_node_that_stops_heartbeating_are_recreated_elsewhere(plane):
    flaky = plane.start("simnodes-flaky", "agents.simnodes", "--nodes", "1", "--prefix",
                        "flaky-", "--first-index", "100", *HEARTBEAT)
    others = [f"node-{i}" for i in range(NODES)]
    poll(lambda: plane.kubectl("get", "node", "flaky-100", check=False).returncode == 0,
         60, "the flaky node")
    for name in others:  # so that every pod of the new Deployment lands on flaky-100
        plane.kubectl("cordon", name)
    try:
        plane.kubectl("create", "deployment", "edge", "--image=lab/python", "--replicas=3")
        placed = poll(lambda: (lambda r: r if len(r) == 3 else None)(
            plane.running("app=edge")), 60, "3 edge pods on the flaky node")
        assert {p["spec"]["nodeName"] for p in placed} == {"flaky-100"}
    finally:
        for name in others:
            plane.kubectl("uncordon", name)
    flaky.send_signal(signal.SIGTERM)     # its node stays registered; heartbeats stop
    flaky.wait(15)

    def node_state():
        node = json.loads(plane.kubectl("get", "node", "flaky-100", "-o", "json").stdout)
        ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
        taints = {(t["key"], t["effect"]) for t in node["spec"].get("taints") or []}
        return (ready, taints) if ready == "Unknown" and taints else None
    ready, taints = poll(node_state, 60, "the silent node marked Unknown and tainted")
    assert ("node.kubernetes.io/unreachable", "NoExecute") in taints

    def moved():
        running = plane.running("app=edge")
        return running if len(running) == 3 and all(
            p["spec"]["nodeName"] in others for p in running) else None
    assert len(poll(moved, 90, "edge pods recreated on live nodes")) == 3


def test_deleting_a_deployment_collects_its_replicasets_and_pods(plane):
    assert plane.running("app=web")
    plane.kubectl("delete", "deployment", "web")

    def collected():
        rs = json.loads(plane.kubectl("get", "replicasets", "-l", "app=web", "-o",
                                      "json").stdout)["items"]
        return not rs and not plane.pods("app=web")
    poll(collected, 90, "the garbage collector to delete the ReplicaSets and pods")
