"""The scheduling loop in the sample-controller style: seed a FakeApi, sync a key once,
compare the actions; plus the cache's bookkeeping."""

import asyncio

import pytest

from agents.kube.errors import ServerError
from agents.kube.testing import Action, FakeApi
from agents.scheduler.cache import SchedulerCache
from agents.scheduler.scheduler import Scheduler, wants_scheduling
from agents.scheduler.testing import node, pod

pytestmark = pytest.mark.unit


async def scheduler_on(api):
    sched = Scheduler(api, identity="test")
    await sched.nodes.list_and_replace()
    await sched.pods.list_and_replace()
    api.clear_actions()
    return sched


async def step(sched):
    """What one worker does: take the next key, sync it, mark it done."""
    key = sched.queue.core.get()
    assert key is not None, "nothing queued"
    await sched.sync(key)
    sched.queue.done(key)
    await sched.flush_background()
    return key


def run(seed_nodes, seed_pods, body):
    async def main():
        api = FakeApi()
        api.seed("nodes", *seed_nodes)
        api.seed("pods", *seed_pods)
        sched = await scheduler_on(api)
        return await body(api, sched)
    return asyncio.run(main())


def test_binds_a_pod_to_the_node_that_fits_and_records_scheduled():
    async def body(api, sched):
        assert len(sched.queue) == 1
        await sched.sync("default/p")
        assert [a.resource for a in api.actions] == ["pods"]   # the event follows later
        await sched.flush_background()
        return api.actions, await api.get("pods", "p")
    actions, bound = run([node("small", cpu="1"), node("big", cpu="8")],
                         [pod("p", cpu="2")], body)
    assert actions == [Action("create", "pods", "default", "p", "binding"),
                       Action("create", "events", "default", actions[1].name)]
    assert bound["spec"]["nodeName"] == "big"
    event = actions[1].object
    assert (event["reason"], event["type"], event["message"]) == \
        ("Scheduled", "Normal", "Successfully assigned default/p to big")
    assert event["involvedObject"]["name"] == "p"
    assert event["source"]["component"] == "default-scheduler"


def test_unschedulable_pod_gets_event_and_condition_once_then_fits_when_a_node_comes():
    async def body(api, sched):
        await step(sched)
        first = list(api.actions)
        api.clear_actions()
        await sched.pods.list_and_replace()         # sees its own status write: requeued
        await step(sched)                           # same verdict: stays quiet
        quiet = list(api.actions)
        assert "default/p" in sched.parked and len(sched.queue) == 0
        created = await api.create("nodes", node("big", cpu="8"))
        sched._node_added(created)                  # what the node informer would do
        assert len(sched.queue) == 1 and not sched.parked
        api.clear_actions()
        await step(sched)
        return first, quiet, api.actions
    first, quiet, after = run([node("small", cpu="1")], [pod("p", cpu="2")], body)
    assert [(a.verb, a.resource, a.subresource) for a in first] == [
        ("create", "events", None), ("patch", "pods", "status")]
    event = first[0].object
    assert event["reason"] == "FailedScheduling" and event["type"] == "Warning"
    assert event["message"] == ("0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 "
                                "nodes are available: 1 No preemption victims found for "
                                "incoming pod.")
    condition = first[1].object["status"]["conditions"][0]
    assert (condition["type"], condition["status"], condition["reason"]) == \
        ("PodScheduled", "False", "Unschedulable")
    assert quiet == []
    assert after[0] == Action("create", "pods", "default", "p", "binding")


def test_decisions_count_pods_assumed_before_the_api_confirms_them():
    async def body(api, sched):
        await sched.sync("default/a")
        await sched.sync("default/b")               # informer has not seen a's binding
        return {p["metadata"]["name"]: p["spec"]["nodeName"] for p in api.objects("pods")}
    placed = run([node("n1", cpu="4"), node("n2", cpu="4")],
                 [pod("a", cpu="3"), pod("b", cpu="3")], body)
    assert sorted(placed.values()) == ["n1", "n2"]


def test_a_failed_binding_is_undone_and_raised_for_a_retry():
    async def body(api, sched):
        api.fail_next("create", "pods", ServerError(500, {"message": "etcd down"}))
        with pytest.raises(ServerError):
            await sched.sync("default/p")
        assert not sched.cache.assumed
        assert sched.cache.node_info("n1").pod_count == 0
        await sched.sync("default/p")
        return (await api.get("pods", "p"))["spec"]["nodeName"]
    assert run([node("n1")], [pod("p", cpu="1")], body) == "n1"


def test_a_pod_bound_by_someone_else_meanwhile_is_left_alone():
    async def body(api, sched):
        await api.bind("default", "p", "n2")        # another scheduler got there first
        api.clear_actions()
        await sched.sync("default/p")               # our cache still shows it unbound
        return api.actions, sched.cache.assumed
    actions, assumed = run([node("n1"), node("n2")], [pod("p")], body)
    assert actions == [Action("create", "pods", "default", "p", "binding")]
    assert assumed == set()


@pytest.mark.parametrize("case, p, wanted", [
    ("pending", pod("p"), True),
    ("bound", pod("p", node_name="n1"), False),
    ("other scheduler", pod("p", extra={"schedulerName": "custom"}), False),
    ("finished", pod("p", phase="Succeeded"), False),
    ("being deleted", {**pod("p"), "metadata": {"name": "p", "deletionTimestamp": "x"}},
     False),
])
def test_which_pods_this_scheduler_takes(case, p, wanted):
    assert wants_scheduling(p, "default-scheduler") is wanted, case


def test_cache_counts_bound_pods_keeps_them_across_node_updates_and_forgets_deleted():
    cache = SchedulerCache()
    cache.set_pod(pod("early", cpu="1", node_name="n1"))   # pod seen before its node
    cache.set_node(node("n1"))
    assert cache.node_info("n1").requested["cpu"] == 1000
    cache.set_node(node("n1", cpu="8"))                    # node update keeps its pods
    assert cache.node_info("n1").pod_count == 1
    cache.set_pod(pod("early", cpu="1", node_name="n1", phase="Succeeded"))
    assert cache.node_info("n1").pod_count == 0
    cache.assume(pod("p", cpu="2"), "n1")
    cache.set_pod(pod("p", cpu="2"))                       # stale unbound copy: keep it
    assert cache.node_info("n1").requested["cpu"] == 2000
    cache.set_pod(pod("p", cpu="2", node_name="n1"))       # confirmed
    assert not cache.assumed and cache.node_info("n1").pod_count == 1
    cache.remove_pod(pod("p"))
    assert cache.node_info("n1").pod_count == 0
    cache.remove_node("n1")
    assert cache.node_infos() == []


def test_cache_recounts_a_bound_pod_only_when_what_it_holds_changes():
    cache = SchedulerCache()
    cache.set_node(node("n1"))
    cache.assume(pod("p", cpu="2", owner="a"), "n1")
    running = pod("p", cpu="2", owner="a", node_name="n1", phase="Running")
    cache.set_pod(running)                                 # confirmed, then Running
    cache.set_pod(running)
    info = cache.node_info("n1")
    assert (info.pod_count, info.requested["cpu"], info.owner_counts) == (1, 2000, {"rs-a": 1})
    resized = pod("p", cpu="3", owner="a", node_name="n1", phase="Running")
    cache.set_pod(resized)                                 # requests changed in place
    assert (info.pod_count, info.requested["cpu"]) == (1, 3000)
    released = pod("p", cpu="3", node_name="n1", phase="Running")
    cache.set_pod(released)                                # its owner let it go
    assert info.owner_counts.get("rs-a", 0) == 0
    cache.remove_pod(released)
    assert (info.pod_count, info.requested["cpu"]) == (0, 0)


class GatedEvents(FakeApi):
    """Event creates wait at a gate; counts how many are in flight at once."""

    def __init__(self):
        super().__init__()
        self.gate = asyncio.Event()
        self.in_flight = self.most_in_flight = 0

    async def create(self, resource, obj, namespace=None, subresource=None, name=None):
        if resource != "events":
            return await super().create(resource, obj, namespace, subresource, name)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self.gate.wait()
            return await super().create(resource, obj, namespace, subresource, name)
        finally:
            self.in_flight -= 1


async def _settle():
    for _ in range(20):
        await asyncio.sleep(0)


def test_events_trickle_one_at_a_time_while_pods_wait_and_flow_when_idle():
    async def main():
        api = GatedEvents()
        api.seed("nodes", node("n", cpu="64"))
        api.seed("pods", *(pod(f"p{i}", cpu="1") for i in range(6)))
        sched = await scheduler_on(api)
        for _ in range(3):  # three bound, three still queued: busy
            key = sched.queue.core.get()
            await sched.sync(key)
            sched.queue.done(key)
        await _settle()
        busy_most = api.most_in_flight
        api.gate.set()
        await sched.flush_background()
        api.gate.clear()
        api.most_in_flight = 0
        while len(sched.queue):  # the rest: idle once the queue is empty
            key = sched.queue.core.get()
            await sched.sync(key)
            sched.queue.done(key)
        await _settle()
        idle_most = api.most_in_flight
        api.gate.set()
        await sched.flush_background()
        events = [a for a in api.actions if a.resource == "events"]
        return busy_most, idle_most, len(events)
    busy_most, idle_most, events = asyncio.run(main())
    assert busy_most == 1
    assert idle_most == 3  # idle: the last three go out together
    assert events == 6  # none lost
