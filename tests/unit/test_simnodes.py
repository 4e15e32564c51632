"""Simulated nodes against the FakeApi: registration (Node with full status, Lease),
lease renewal, pods bound to our nodes reported Running with an address from the node's
CIDR, graceful deletions completed, other nodes' pods left alone."""

import asyncio
import ipaddress

import pytest

from agents.kube.testing import Action, FakeApi
from agents.simnodes import objects
from agents.simnodes.simulator import PodAddresses, SimNodes

pytestmark = pytest.mark.unit

NODE_INFO_FIELDS = {"machineID", "systemUUID", "bootID", "kernelVersion", "osImage",
                    "containerRuntimeVersion", "kubeletVersion", "kubeProxyVersion",
                    "operatingSystem", "architecture"}


def pod(name, node=None, **meta):
    spec = {"containers": [{"name": "app", "image": "lab/python"}]}
    if node:
        spec["nodeName"] = node
    return {"metadata": {"name": name, "namespace": "default", **meta}, "spec": spec}


async def synced(api, count=2, **kwargs):
    sim = SimNodes(api, count, **kwargs)
    await sim.register()
    task = asyncio.create_task(sim.pod_informer.run())
    await sim.pod_informer.wait_for_sync()
    return sim, task


async def stop(task):
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def test_addresses_are_distinct_per_node_and_in_range():
    assert str(objects.pod_cidr(0)) == "10.128.0.0/24"
    assert str(objects.pod_cidr(257)) == "10.129.1.0/24"
    assert objects.pod_ip(3, 0) == "10.128.3.2"
    assert objects.node_ip(0) != objects.node_ip(1)
    with pytest.raises(ValueError, match="at most"):
        objects.pod_cidr(objects.MAX_NODES)
    with pytest.raises(ValueError, match="slot"):
        objects.pod_ip(0, 253)


def test_pod_addresses_reuse_freed_slots_and_keep_a_pods_slot():
    addrs = PodAddresses()
    assert [addrs.allocate(k, "n") for k in ("a", "b", "c")] == [0, 1, 2]
    assert addrs.allocate("b", "n") == 1
    addrs.release("a")
    assert addrs.allocate("d", "n") == 0
    addrs.claim("e", "n", 3)
    assert addrs.allocate("f", "n") == 4


def test_register_creates_nodes_with_full_status_and_leases():
    async def body():
        api = FakeApi()
        await SimNodes(api, 2, prefix="x-", cpu="8", memory="16Gi").register()
        return api
    api = asyncio.run(body())
    nodes = {n["metadata"]["name"]: n for n in api.objects("nodes")}
    assert sorted(nodes) == ["x-0", "x-1"]
    status = nodes["x-1"]["status"]
    assert status["allocatable"]["cpu"] == "8" and status["capacity"]["memory"] == "16Gi"
    assert set(status["nodeInfo"]) == NODE_INFO_FIELDS
    assert all(status["nodeInfo"].values())
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"
    assert nodes["x-1"]["spec"]["podCIDR"] == "10.128.1.0/24"
    leases = api.objects("leases", "kube-node-lease")
    assert sorted(le["metadata"]["name"] for le in leases) == ["x-0", "x-1"]
    assert leases[0]["spec"]["holderIdentity"] == leases[0]["metadata"]["name"]
    assert leases[0]["metadata"]["ownerReferences"][0]["kind"] == "Node"


def test_register_adopts_existing_nodes_and_leases():
    async def body():
        api = FakeApi()
        api.seed("nodes", {"metadata": {"name": "sim-0"}})
        api.seed("leases", {"metadata": {"name": "sim-0", "namespace": "kube-node-lease"},
                            "spec": {"holderIdentity": "old"}})
        api.seed("namespaces", {"metadata": {"name": "kube-node-lease"}})
        await SimNodes(api, 1).register()
        return api
    api = asyncio.run(body())
    assert api.objects("nodes")[0]["status"]["nodeInfo"]["kubeletVersion"]
    assert api.objects("leases", "kube-node-lease")[0]["spec"]["holderIdentity"] == "sim-0"


def test_renew_leases_moves_renew_time_forward():
    async def body():
        api = FakeApi()
        sim = SimNodes(api, 3)
        await sim.register()
        before = {le["metadata"]["name"]: le["metadata"]["resourceVersion"]
                  for le in api.objects("leases", "kube-node-lease")}
        api.clear_actions()
        await sim.renew_leases()
        return api, before, sim
    api, before, sim = asyncio.run(body())
    assert sorted(a.name for a in api.mutations()) == ["sim-0", "sim-1", "sim-2"]
    assert all(a.verb == "update" and a.resource == "leases" for a in api.mutations())
    after = api.objects("leases", "kube-node-lease")
    assert all(le["metadata"]["resourceVersion"] != before[le["metadata"]["name"]]
               for le in after)
    assert sim.metrics["lease_renewals"] == 3


def test_bound_pod_becomes_running_with_an_address_from_its_node():
    async def body():
        api = FakeApi()
        api.seed("pods", pod("web", node="sim-1"), pod("other", node="elsewhere"),
                 pod("pending"))
        sim, task = await synced(api)
        api.clear_actions()
        for key in ("default/web", "default/other", "default/pending"):
            await sim.sync(key)
        await stop(task)
        return api
    api = asyncio.run(body())
    assert api.mutations() == [Action("patch", "pods", "default", "web", "status")]
    web = next(p for p in api.objects("pods") if p["metadata"]["name"] == "web")
    status = web["status"]
    assert status["phase"] == "Running"
    assert ipaddress.ip_address(status["podIP"]) in objects.pod_cidr(1)
    assert status["hostIP"] == objects.node_ip(1)
    assert {c["type"] for c in status["conditions"] if c["status"] == "True"} >= {
        "Ready", "ContainersReady", "Initialized", "PodScheduled"}
    assert status["containerStatuses"][0]["ready"] is True
    assert "running" in status["containerStatuses"][0]["state"]


def test_running_pod_is_not_reported_again():
    async def body():
        api = FakeApi()
        api.seed("pods", {**pod("web", node="sim-0"),
                          "status": {"phase": "Running", "podIP": "10.128.0.7"}})
        sim, task = await synced(api)
        api.clear_actions()
        await sim.sync("default/web")
        slot = sim.addresses.allocate("default/new", "sim-0")
        await stop(task)
        return api, slot
    api, slot = asyncio.run(body())
    assert api.mutations() == []
    assert slot == 0  # 10.128.0.7 is slot 5, claimed from the cache; slot 0 is free


def test_pod_being_deleted_is_deleted_with_grace_zero():
    async def body():
        api = FakeApi()
        api.seed("pods", pod("old", node="sim-0", deletionTimestamp="2026-01-01T00:00:00Z",
                             finalizers=[]))
        sim, task = await synced(api)
        api.clear_actions()
        await sim.sync("default/old")
        await stop(task)
        return api
    api = asyncio.run(body())
    [action] = api.mutations()
    assert (action.verb, action.name, action.object) == (
        "delete", "old", {"gracePeriodSeconds": 0})
    assert api.objects("pods") == []


def test_pod_deleted_meanwhile_is_not_an_error():
    async def body():
        api = FakeApi()
        api.seed("pods", pod("gone", node="sim-0"))
        sim, task = await synced(api)
        await api.delete("pods", "gone", "default")
        await sim.sync("default/gone")
        await stop(task)
        return sim
    assert asyncio.run(body()).metrics["pods_started"] == 0


def test_run_moves_a_newly_bound_pod_to_running():
    async def body():
        api = FakeApi()
        sim = SimNodes(api, 1, renew_interval=3600)
        task = asyncio.create_task(sim.run())
        await api.create("pods", pod("late"))
        await api.bind("default", "late", "sim-0")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while True:
            phase = (api.objects("pods")[0].get("status") or {}).get("phase")
            if phase == "Running" or loop.time() > deadline:
                break
            await asyncio.sleep(0.01)
        await stop(task)
        return phase
    assert asyncio.run(body()) == "Running"


def test_node_marked_unknown_is_reported_ready_again_with_a_fresh_lease():
    async def body():
        api = FakeApi()
        sim = SimNodes(api, 1)
        await sim.register()
        node = api.objects("nodes")[0]
        node["status"]["conditions"] = [{"type": "Ready", "status": "Unknown"}]
        await api.update_status("nodes", node)
        await sim.node_informer.list_and_replace()
        assert len(sim.node_queue) == 1
        api.clear_actions()
        await sim.sync_node("sim-0")
        return api
    api = asyncio.run(body())
    assert [(a.verb, a.resource) for a in api.mutations()] == [("update", "leases"),
                                                               ("update", "nodes")]
    ready = {c["type"]: c["status"] for c in api.objects("nodes")[0]["status"]["conditions"]}
    assert ready["Ready"] == "True"
