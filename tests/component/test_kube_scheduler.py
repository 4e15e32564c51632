"""The scheduler daemon (`python -m agents.scheduler`) against the API server on a real
etcd 3.4: binding, FailedScheduling then success once a node fits, cordoned nodes, and
leader failover between two instances when the active one is killed."""

import asyncio
import json
import os
import signal
import subprocess
import sys

import pytest

from agents.apiserver import testing
from agents.kube.client import KubeClient
from tests.conftest import need

pytestmark = pytest.mark.component

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    need(os.path.exists(testing.ETCD), "needs /usr/bin/etcd (Debian etcd-server)")
    work = str(tmp_path_factory.mktemp("scheduler"))
    pki = testing.make_pki(work, {"scheduler": ("system:kube-scheduler", ["system:masters"])})
    with testing.run_etcd(work, testing.etcd_command_from_env()) as etcd, \
            testing.run_apiserver(work, etcd.endpoint, secure=True, extra_args=[
                "--tls-cert-file", pki.server_cert, "--tls-private-key-file", pki.server_key,
                "--client-ca-file", pki.ca]) as api:
        cert, key = pki.clients["scheduler"]
        doc = {"apiVersion": "v1", "kind": "Config", "current-context": "lab",
               "clusters": [{"name": "lab", "cluster": {"server": api.secure_url,
                                                        "certificate-authority": pki.ca}}],
               "users": [{"name": "s", "user": {"client-certificate": cert,
                                                "client-key": key}}],
               "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "s"}}]}
        kubeconfig = os.path.join(work, "kubeconfig")
        with open(kubeconfig, "w") as fh:
            json.dump(doc, fh)
        yield Cluster(work, kubeconfig)


class Cluster:
    def __init__(self, work, kubeconfig):
        self.work, self.kubeconfig = work, kubeconfig
        self.procs = []

    def start_scheduler(self, identity, *extra):
        with open(os.path.join(self.work, f"scheduler-{identity}.log"), "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "agents.scheduler", "--kubeconfig", self.kubeconfig,
                 "--port", "0", "--identity", identity, *extra],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL, cwd=ROOT)
        self.procs.append(proc)
        return proc

    def stop_all(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        self.procs.clear()


@pytest.fixture
def lab(cluster):
    try:
        yield cluster
    finally:
        cluster.stop_all()


def node(name, cpu="4", unschedulable=False):
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "spec": {"unschedulable": True} if unschedulable else {}}


def node_status(cpu):
    return {"allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
            "capacity": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}]}


def pod(name, ns, cpu="100m", **labels):
    return {"metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "busybox",
                                     "resources": {"requests": {"cpu": cpu}}}]}}


async def add_node(api, name, cpu="4", unschedulable=False):
    created = await api.create("nodes", node(name, cpu, unschedulable))
    await api.update_status("nodes", {**created, "status": node_status(cpu)})


async def poll(check, timeout=20.0, what="condition"):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = await check()
        if result:
            return result
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def run(lab, body):
    async def main():
        async with KubeClient.from_kubeconfig(lab.kubeconfig) as api:
            return await body(api)
    return asyncio.run(main())


async def bound(api, ns):
    pods = (await api.list("pods", ns))["items"]
    return {p["metadata"]["name"]: p["spec"].get("nodeName") for p in pods}


async def events(api, ns, reason):
    return [e for e in (await api.list("events", ns))["items"] if e.get("reason") == reason]


def test_binds_pods_spreading_them_and_never_onto_a_cordoned_node(lab):
    async def body(api):
        await api.create("namespaces", {"metadata": {"name": "spread"}})
        for name in ("s1", "s2"):
            await add_node(api, name)
        await add_node(api, "s3-cordoned", unschedulable=True)
        lab.start_scheduler("solo")
        for i in range(6):
            await api.create("pods", pod(f"web-{i}", "spread", app="web"))

        async def all_bound():
            placed = await bound(api, "spread")
            return placed if all(placed.values()) and len(placed) == 6 else None
        placed = await poll(all_bound, what="6 pods bound")
        scheduled = await poll(lambda: _at_least(api, "spread", "Scheduled", 6),
                               what="Scheduled events")
        return placed, scheduled
    placed, scheduled = run(lab, body)
    assert sorted(placed.values()) == ["s1", "s1", "s1", "s2", "s2", "s2"]
    assert {e["message"] for e in scheduled} >= {
        f"Successfully assigned spread/web-0 to {placed['web-0']}"}


async def _at_least(api, ns, reason, n):
    found = await events(api, ns, reason)
    return found if len(found) >= n else None


def test_unschedulable_pod_gets_failed_scheduling_then_runs_once_a_node_fits(lab):
    async def body(api):
        await api.create("namespaces", {"metadata": {"name": "wait"}})
        await add_node(api, "w-small", cpu="1")
        lab.start_scheduler("solo2")
        await api.create("pods", {**pod("big", "wait", cpu="3"),
                                  "spec": {**pod("big", "wait", cpu="3")["spec"],
                                           "nodeSelector": {"kubernetes.io/hostname":
                                                            "w-big"}}})
        failed = await poll(lambda: _at_least(api, "wait", "FailedScheduling", 1),
                            what="FailedScheduling")

        async def condition_set():
            return (await api.get("pods", "big", "wait")).get("status", {}).get("conditions")
        condition = await poll(condition_set, what="PodScheduled=False")
        await add_node(api, "w-big", cpu="8")

        async def placed():
            return (await bound(api, "wait")).get("big")
        return failed[0]["message"], condition, await poll(placed, what="big bound")
    message, condition, node_name = run(lab, body)
    # Nodes from the other tests share the cluster, so check the shape and our node.
    assert message.startswith("0/") and " nodes are available: " in message
    assert "node(s) didn't match Pod's node affinity/selector" in message
    assert "preemption: " in message
    assert condition[0]["type"] == "PodScheduled" and condition[0]["status"] == "False"
    assert node_name == "w-big"


def test_killing_the_active_scheduler_hands_leadership_over(lab):
    flags = ["--leader-elect", "--leader-elect-lease-duration", "2",
             "--leader-elect-renew-deadline", "1.5", "--leader-elect-retry-period", "0.2",
             "--leader-elect-resource-namespace", "default"]

    async def body(api):
        await api.create("namespaces", {"metadata": {"name": "ha"}})
        await add_node(api, "ha-n1", cpu="64")
        procs = {name: lab.start_scheduler(name, *flags) for name in ("ha-a", "ha-b")}

        async def holder():
            try:
                lease = await api.get("leases", "kube-scheduler", "default")
            except Exception:
                return None
            return lease["spec"].get("holderIdentity") or None
        first = await poll(holder, what="a leader")
        await api.create("pods", pod("before", "ha"))
        await poll(lambda: _bound_to_something(api, "ha", "before"), what="first pod bound")
        procs[first].send_signal(signal.SIGKILL)      # no chance to release the lease
        procs[first].wait(5)
        await api.create("pods", pod("after", "ha"))
        second = await poll(lambda: _other_holder(holder, first), timeout=30,
                            what="a new leader")
        await poll(lambda: _bound_to_something(api, "ha", "after"), timeout=30,
                   what="pod bound after failover")
        lease = await api.get("leases", "kube-scheduler", "default")
        return first, second, lease
    first, second, lease = run(lab, body)
    assert {first, second} == {"ha-a", "ha-b"}
    assert lease["spec"]["leaseTransitions"] >= 1


async def _bound_to_something(api, ns, name):
    return (await bound(api, ns)).get(name)


async def _other_holder(holder, first):
    now = await holder()
    return now if now and now != first else None
