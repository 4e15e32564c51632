"""The cluster smoke test's steps and conclusions, against a simulated cluster (the
agents' FakeApi plus a few lines that play scheduler, controllers and kubelets)."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from agents.kube.testing import FakeApi
from labctl.verify import smoke
from labctl.verify.results import FAILED, PASSED, SKIPPED

pytestmark = pytest.mark.unit


def pod(name, node, ready=True, phase="Running"):
    return {"metadata": {"name": name, "namespace": smoke.NAMESPACE, "labels": {"app": smoke.APP}},
            "spec": {"nodeName": node},
            "status": {"phase": phase,
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def test_ready_pods_leave_out_unready_terminating_and_pending_ones():
    terminating = pod("t", "w1")
    terminating["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    pods = [pod("a", "w1"), pod("b", "w2", ready=False), pod("c", "w1", phase="Pending"), terminating]
    assert [p["metadata"]["name"] for p in smoke.ready_pods(pods)] == ["a"]


def test_spread_problem_names_the_worker_without_pods():
    assert smoke.spread_problem([pod("a", "w1"), pod("b", "w2"), pod("c", "w1")], ["w1", "w2"]) is None
    assert smoke.spread_problem([pod("a", "w1"), pod("b", "w1")], ["w1", "w2"]) == \
        "pods run on w1; none on w2"
    # fewer pods than workers cannot cover them all: no complaint
    assert smoke.spread_problem([pod("a", "w1")], ["w1", "w2"]) is None


def test_busiest_worker_is_the_one_with_most_pods():
    assert smoke.busiest_worker([pod("a", "w2"), pod("b", "w2"), pod("c", "w1")], ["w1", "w2"]) == "w2"


def test_objects_are_a_python_http_server_behind_a_service():
    dep, svc = smoke.deployment(), smoke.service()
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "lab/python:latest"
    assert container["command"][-1] == str(smoke.APP_PORT)
    assert dep["spec"]["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    assert svc["spec"]["selector"] == {"app": smoke.APP}
    assert svc["spec"]["ports"][0]["targetPort"] == smoke.APP_PORT
    fetch = smoke.client_pod("p", "http://web.lab-smoke.svc.cluster.local:80/")
    assert fetch["spec"]["restartPolicy"] == "Never"
    assert "web.lab-smoke.svc.cluster.local" in fetch["spec"]["containers"][0]["command"][-1]


class SimulatedCluster(FakeApi):
    """Deployments get ready pods round-robin over the up workers; a deleted pod is
    replaced; fetch pods succeed when ``dns_works``."""

    def __init__(self, workers, dns_works=True):
        super().__init__()
        self.workers, self.down, self.dns_works = list(workers), set(), dns_works
        self._names = itertools.count()
        for w in workers:
            self.seed("nodes", {"metadata": {"name": w},
                                "status": {"conditions": [{"type": "Ready", "status": "True"}]}})

    def up_workers(self):
        return [w for w in self.workers if w not in self.down]

    def place(self, count):
        up = self.up_workers()
        for i in range(count):
            self.seed("pods", pod(f"web-{next(self._names)}", up[i % len(up)]))

    async def create(self, resource, obj, namespace=None, **kw):
        if resource == "services":
            obj = {**obj, "spec": {**obj["spec"], "clusterIP": "10.96.0.50"}}
        made = await super().create(resource, obj, namespace, **kw)
        if resource == "deployments":
            self.place(obj["spec"]["replicas"])
        if resource == "pods" and obj["spec"].get("restartPolicy") == "Never":
            made["status"] = {"phase": "Succeeded" if self.dns_works else "Failed"}
            made["spec"]["nodeName"] = self.up_workers()[0]
            self.seed("pods", made)
        return made

    async def delete(self, resource, name, namespace=None, **kw):
        gone = await super().delete(resource, name, namespace, **kw)
        if resource == "pods" and name.startswith("web-"):
            self.place(1)
        if resource == "namespaces":
            for p in self.objects("pods"):
                await super().delete("pods", p["metadata"]["name"], p["metadata"]["namespace"])
        return gone

    def stop(self, host):
        self.down.add(host)
        for p in self.objects("pods", smoke.NAMESPACE):
            if p["spec"].get("nodeName") == host:
                self._objects.pop(("pods", smoke.NAMESPACE, p["metadata"]["name"]), None)
                self.place(1)

    def start(self, host):
        self.down.discard(host)


def run(cluster, ran, disrupt=True, control_planes=("cp1",)):
    def run_on(host, command):
        ran.append((host, command))
        return (0, "200") if "10.96.0.50" in command else (1, "no")

    ctx = smoke.SmokeContext(kube=cluster, workers=cluster.workers, control_planes=list(control_planes),
                             run_on=run_on, stop_host=cluster.stop, start_host=cluster.start,
                             options=smoke.SmokeOptions(disrupt=disrupt, timeout=1, interval=0.01))
    return asyncio.run(smoke.Smoke(ctx).run())


def outcomes(results):
    return {r.check.removeprefix("smoke::") + ("@" + r.host if r.host != "-" else ""): r.outcome
            for r in results}


def test_a_working_cluster_passes_every_step_and_cleans_up():
    cluster, ran = SimulatedCluster(["w1", "w2"]), []
    got = outcomes(run(cluster, ran))
    assert got == {
        "nodes-ready": PASSED, "deployment-and-service": PASSED, "pods-spread-over-workers": PASSED,
        "cluster-ip-from-node@w1": PASSED, "cluster-ip-from-node@w2": PASSED,
        "service-by-dns-from-pod": PASSED, "deleted-pod-replaced": PASSED,
        "worker-stopped-pods-recreated": PASSED}
    assert {host for host, _ in ran} == {"w1", "w2"}
    assert all("http://10.96.0.50:80/" in cmd for _, cmd in ran)
    assert cluster.down == set()  # the stopped worker was started again
    assert cluster.objects("namespaces") == []


def test_a_failing_dns_lookup_fails_that_step_only():
    got = outcomes(run(SimulatedCluster(["w1", "w2"], dns_works=False), []))
    assert got["service-by-dns-from-pod"] == FAILED
    assert got["deleted-pod-replaced"] == PASSED


def test_no_disrupt_skips_stopping_hosts_and_ha_labs_stop_a_control_plane():
    cluster = SimulatedCluster(["w1", "w2"])
    assert outcomes(run(cluster, [], disrupt=False))["worker-stopped"] == SKIPPED
    stopped = []
    cluster = SimulatedCluster(["w1", "w2"])
    stop = cluster.stop
    cluster.stop = lambda h: (stopped.append(h), stop(h))
    got = outcomes(run(cluster, [], control_planes=("cp1", "cp2", "cp3")))
    assert got["control-plane-stopped-cluster-serves"] == PASSED
    assert stopped[-1] == "cp3"


def test_unready_nodes_stop_the_run_with_a_clear_message():
    cluster = SimulatedCluster(["w1", "w2"])
    node = cluster._objects[("nodes", "", "w2")]
    node["status"]["conditions"][0]["status"] = "False"
    results = run(cluster, [])
    assert [r.check for r in results] == ["smoke::nodes-ready"]
    assert results[0].outcome == FAILED and "not Ready: w2" in results[0].message


def test_app_pods_leave_a_dead_node_soon_after_it_is_tainted():
    spec = smoke.deployment()["spec"]["template"]["spec"]
    tolerated = {(t["key"], t["effect"]): t["tolerationSeconds"] for t in spec["tolerations"]}
    assert tolerated == {("node.kubernetes.io/not-ready", "NoExecute"): smoke.EVICT_AFTER_SECONDS,
                         ("node.kubernetes.io/unreachable", "NoExecute"): smoke.EVICT_AFTER_SECONDS}
    assert all(t["operator"] == "Exists" for t in spec["tolerations"])


def test_fetches_from_every_worker_and_the_dns_pod_run_at_once_and_report_in_order():
    import threading

    cluster = SimulatedCluster(["w1", "w2"])
    both_waiting = threading.Barrier(2, timeout=2)  # breaks (fails the fetch) unless concurrent

    def run_on(host, command):
        both_waiting.wait()
        return 0, "200"

    ctx = smoke.SmokeContext(kube=cluster, workers=cluster.workers, control_planes=["cp1"],
                             run_on=run_on, stop_host=cluster.stop, start_host=cluster.start,
                             options=smoke.SmokeOptions(disrupt=False, timeout=1, interval=0.01))
    results = asyncio.run(smoke.Smoke(ctx).run())
    names = [(r.check.removeprefix("smoke::"), r.host, r.outcome) for r in results]
    assert names[3:6] == [("cluster-ip-from-node", "w1", PASSED), ("cluster-ip-from-node", "w2", PASSED),
                          ("service-by-dns-from-pod", "-", PASSED)]


def test_pods_are_watched_for_while_the_worker_is_still_stopping():
    import threading
    import time

    cluster = SimulatedCluster(["w1", "w2"])
    lists, watched_meanwhile = [], []
    real_list = cluster.list

    async def counting_list(*args, **kw):
        lists.append(1)
        return await real_list(*args, **kw)

    cluster.list = counting_list
    stop = cluster.stop

    def slow_stop(host):  # the pods move at once, the host takes a while to go down
        stop(host)
        seen, deadline = len(lists), time.monotonic() + 2
        while len(lists) <= seen and time.monotonic() < deadline:
            threading.Event().wait(0.005)
        watched_meanwhile.append(len(lists) > seen)

    cluster.stop = slow_stop
    got = outcomes(run(cluster, []))
    assert got["worker-stopped-pods-recreated"] == PASSED
    assert watched_meanwhile == [True] and cluster.down == set()


def test_a_failing_stop_fails_the_step_and_starts_nothing():
    cluster, started, stopped = SimulatedCluster(["w1", "w2"]), [], []

    def broken_stop(host):
        stopped.append(host)
        raise RuntimeError(f"{host} would not stop")

    cluster.stop, cluster.start = broken_stop, started.append
    results = run(cluster, [])
    [step] = [r for r in results if r.check == "smoke::worker-stopped-pods-recreated"]
    assert step.outcome == FAILED
    [host] = stopped
    assert step.message == f"stopping {host} failed: RuntimeError: {host} would not stop"
    assert started == []


def test_hosts_are_stopped_only_once_the_gate_opens_and_never_without_disruption():
    events = []
    cluster = SimulatedCluster(["w1", "w2"])
    stop = cluster.stop
    cluster.stop = lambda h: (events.append("stop"), stop(h))

    def gate():
        events.append("gate")

    ctx = smoke.SmokeContext(kube=cluster, workers=cluster.workers, control_planes=["cp1"],
                             run_on=lambda h, c: (0, "200"), stop_host=cluster.stop,
                             start_host=cluster.start, before_disrupting=gate,
                             options=smoke.SmokeOptions(timeout=1, interval=0.01))
    asyncio.run(smoke.Smoke(ctx).run())
    assert events == ["gate", "stop"]
    events.clear()
    ctx.options = smoke.SmokeOptions(disrupt=False, timeout=1, interval=0.01)
    asyncio.run(smoke.Smoke(ctx).run())
    assert events == []


def test_smoke_alongside_waits_at_the_gate_until_finish_and_abandon_stops_it_there():
    import threading

    from labctl.verify.cluster import SmokeAlongside, VerifyAbandoned

    at_gate, passed = threading.Event(), []

    def run(before_disrupting):
        at_gate.set()
        before_disrupting()
        passed.append(True)
        return ["result"]

    alongside = SmokeAlongside(run)
    alongside.start()
    assert at_gate.wait(2)
    assert not alongside._may_disrupt.is_set() and passed == []  # still held at the gate
    assert alongside.finish() == ["result"] and passed == [True]

    at_gate.clear()
    abandoned = SmokeAlongside(run)
    abandoned.start()
    assert at_gate.wait(2)
    abandoned.abandon()
    with pytest.raises(VerifyAbandoned):
        abandoned.finish()

    never_started = SmokeAlongside(lambda gate: ["ran at finish"])
    assert never_started.finish() == ["ran at finish"]  # finish starts it if need be
