"""Node lifecycle controller: stale heartbeat → Ready=Unknown + unreachable taints →
pods evicted after their toleration time; a node that comes back is untainted. The
controller's clock is injected; heartbeats are timed on it, never from timestamps."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from agents.controller_manager import nodelifecycle as nl
from agents.controller_manager.base import EventRecorder
from agents.kube.informer import Informer, pods_by_node
from agents.kube.testing import FakeApi

pytestmark = pytest.mark.unit


def node(name="n1", ready="True", taints=None):
    spec = {"taints": taints} if taints else {}
    return {"metadata": {"name": name}, "spec": spec,
            "status": {"conditions": [{"type": "Ready", "status": ready,
                                       "lastHeartbeatTime": "2026-01-01T00:00:00Z"},
                                      {"type": "MemoryPressure", "status": "False"}]}}


def lease(name="n1", renew="2026-01-01T00:00:00.000000Z"):
    return {"metadata": {"name": name, "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": name, "renewTime": renew}}


def pod(name, node_name="n1", tolerations=None):
    return {"metadata": {"name": name, "namespace": "default", "uid": f"{name}-uid"},
            "spec": {"nodeName": node_name, "tolerations": tolerations or []}}


class Harness:
    def __init__(self, api, **kwargs):
        self.api, self.now = api, [1000.0]
        self.nodes = Informer(api, "nodes")
        self.leases = Informer(api, "leases", "kube-node-lease")
        self.pods = Informer(api, "pods", indexers={"node": pods_by_node})
        self.ctrl = nl.NodeLifecycleController(api, self.nodes, self.leases, self.pods,
                                               EventRecorder(api, "t"), grace_period=40,
                                               clock=lambda: self.now[0], **kwargs)

    async def sync(self, name="n1"):
        for inf in (self.nodes, self.leases, self.pods):
            await inf.list_and_replace()
        self.api.clear_actions()
        await self.ctrl.sync(name)


def test_fresh_node_is_left_alone():
    async def body():
        api = FakeApi()
        api.seed("nodes", node())
        api.seed("leases", lease())
        h = Harness(api)
        await h.sync()
        h.now[0] += 30
        await h.sync()
        return api
    assert asyncio.run(body()).mutations() == []


def test_renewed_lease_keeps_node_healthy_past_the_grace_period():
    async def body():
        api = FakeApi()
        api.seed("nodes", node())
        api.seed("leases", lease())
        h = Harness(api)
        await h.sync()
        h.now[0] += 30
        api.seed("leases", lease(renew="2026-01-01T00:00:30.000000Z"))
        await h.sync()
        h.now[0] += 30
        await h.sync()
        return api
    assert asyncio.run(body()).mutations() == []


def test_stale_node_becomes_unknown_and_tainted_unreachable():
    async def body():
        api = FakeApi()
        api.seed("nodes", node())
        api.seed("leases", lease())
        h = Harness(api)
        await h.sync()
        h.now[0] += 41
        await h.sync()
        return api
    api = asyncio.run(body())
    [n] = api.objects("nodes")
    conds = {c["type"]: c for c in n["status"]["conditions"]}
    assert conds["Ready"]["status"] == "Unknown"
    assert conds["Ready"]["reason"] == "NodeStatusUnknown"
    assert conds["MemoryPressure"]["status"] == "Unknown"
    assert {(t["key"], t["effect"]) for t in n["spec"]["taints"]} == {
        (nl.UNREACHABLE, "NoSchedule"), (nl.UNREACHABLE, "NoExecute")}


def test_node_that_is_ready_again_is_untainted_and_keeps_other_taints():
    api = FakeApi()
    own = {"key": "dedicated", "value": "x", "effect": "NoSchedule"}
    api.seed("nodes", node(taints=[own, {"key": nl.UNREACHABLE, "effect": "NoExecute",
                                         "timeAdded": "2026-01-01T00:00:00Z"}]))
    api.seed("leases", lease())
    asyncio.run(Harness(api).sync())
    assert api.objects("nodes")[0]["spec"]["taints"] == [own]


def test_pods_are_evicted_after_their_toleration_time():
    now = datetime.now(UTC)
    added = (now - timedelta(seconds=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    taints = [{"key": nl.UNREACHABLE, "effect": "NoSchedule", "timeAdded": added},
              {"key": nl.UNREACHABLE, "effect": "NoExecute", "timeAdded": added}]

    def tol(seconds):
        t = {"key": nl.UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}
        return [{**t, "tolerationSeconds": seconds}] if seconds is not None else [t]

    async def body():
        api = FakeApi()
        api.seed("nodes", node(ready="Unknown", taints=taints))
        api.seed("pods", pod("short", tolerations=tol(5)), pod("long", tolerations=tol(600)),
                 pod("forever", tolerations=tol(None)), pod("default"),
                 pod("elsewhere", node_name="n2"))
        h = Harness(api, default_toleration_seconds=0)
        await h.sync()
        return api, h
    api, h = asyncio.run(body())
    assert sorted(a.name for a in api.mutations() if a.verb == "delete") == ["default",
                                                                            "short"]
    assert h.ctrl.queue.core.next_due_in() is not None  # "long" is checked again later


def test_eviction_time_rules():
    added = "2026-01-01T00:00:00Z"
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    unreachable = {"key": nl.UNREACHABLE, "effect": "NoExecute", "timeAdded": added}
    other = {"key": "gpu", "effect": "NoExecute", "timeAdded": added}
    assert nl.eviction_time(pod("p"), [unreachable], 300) == t0 + timedelta(seconds=300)
    assert nl.eviction_time(pod("p"), [other], 300) == t0
    assert nl.eviction_time(pod("p", tolerations=[{"operator": "Exists"}]), [other], 0) is None
    assert nl.eviction_time(pod("p"), [{**unreachable, "effect": "NoSchedule"}], 0) is None
