"""ReplicaSet controller, sample-controller style: seed the FakeApi, fill the informer
caches by listing, run sync(key) once, compare the actions and their outcome."""

import asyncio

import pytest

from agents.controller_manager.base import EventRecorder
from agents.controller_manager.expectations import Expectations
from agents.controller_manager.replicaset import ReplicaSetController, deletion_order
from agents.kube.errors import Invalid
from agents.kube.informer import Informer, by_namespace, by_owner_uid
from agents.kube.testing import Action, FakeApi

pytestmark = pytest.mark.unit

INDEX = {"namespace": by_namespace, "owner": by_owner_uid}


def rs(name="web", replicas=3, uid="rs-uid", **spec):
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": "default", "uid": uid, "generation": 2},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": "i"}]}},
                     **spec}}


def pod(name, owner_uid=None, labels=None, ready=False, node=None, created="2026-01-01T00:00:00Z"):
    meta = {"name": name, "namespace": "default", "labels": labels or {"app": "web"},
            "creationTimestamp": created}
    if owner_uid:
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                    "name": "web", "uid": owner_uid, "controller": True}]
    status = {"phase": "Running" if ready else "Pending"}
    if ready:
        status["conditions"] = [{"type": "Ready", "status": "True"}]
    spec = {"containers": [{"name": "c", "image": "i"}]}
    if node:
        spec["nodeName"] = node
    return {"metadata": meta, "spec": spec, "status": status}


class Quiet(EventRecorder):
    def record(self, *args, **kwargs):
        self.recorded = [*getattr(self, "recorded", []), args]


async def controller(api):
    pods = Informer(api, "pods", indexers=INDEX)
    rss = Informer(api, "replicasets", indexers=INDEX)
    await pods.list_and_replace()
    await rss.list_and_replace()
    ctrl = ReplicaSetController(api, pods, rss, Quiet(api, "test"))
    api.clear_actions()
    return ctrl


def sync_once(api, key="default/web"):
    async def body():
        ctrl = await controller(api)
        await ctrl.sync(key)
        return ctrl
    return asyncio.run(body())


def test_creates_missing_pods_with_owner_reference_and_template():
    api = FakeApi()
    api.seed("replicasets", rs(replicas=3))
    ctrl = sync_once(api)
    creates = [a for a in api.mutations() if a.verb == "create"]
    assert [(a.resource, a.namespace) for a in creates] == [("pods", "default")] * 3
    body = creates[0].object
    assert body["metadata"]["generateName"] == "web-"
    assert body["metadata"]["labels"] == {"app": "web"}
    assert body["metadata"]["ownerReferences"] == [{
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": "rs-uid",
        "controller": True, "blockOwnerDeletion": True}]
    assert body["spec"]["containers"][0]["image"] == "i"
    assert not ctrl.expectations.satisfied("default/web")  # until the informer sees them
    assert len(ctrl.events.recorded) == 3


def test_waits_for_expected_creates_before_acting_again():
    async def body():
        api = FakeApi()
        api.seed("replicasets", rs(replicas=2))
        ctrl = await controller(api)
        ctrl.expectations.expect("default/web", adds=2)
        await ctrl.sync("default/web")
        return api
    api = asyncio.run(body())
    assert [a.verb for a in api.mutations()] == ["update"]  # status only, no creates


def test_deletes_surplus_pods_least_valuable_first():
    api = FakeApi()
    api.seed("replicasets", rs(replicas=1))
    api.seed("pods", pod("ready-old", "rs-uid", ready=True, node="n1"),
             pod("pending", "rs-uid", node="n1", created="2026-01-01T00:00:05Z"),
             pod("unscheduled", "rs-uid"))
    sync_once(api)
    deletes = sorted(a.name for a in api.mutations() if a.verb == "delete")
    assert deletes == ["pending", "unscheduled"]
    assert [p["metadata"]["name"] for p in api.objects("pods")] == ["ready-old"]


def test_deletion_order_prefers_newer_among_equals():
    a = pod("a", created="2026-01-01T00:00:01Z", node="n", ready=True)
    b = pod("b", created="2026-01-01T00:00:09Z", node="n", ready=True)
    assert [p["metadata"]["name"] for p in deletion_order([a, b])] == ["b", "a"]


def test_adopts_matching_orphans_and_leaves_other_owners_alone():
    api = FakeApi()
    api.seed("replicasets", rs(replicas=2))
    api.seed("pods", pod("orphan", ready=True), pod("theirs", "other-uid"),
             pod("unrelated", labels={"app": "db"}))
    sync_once(api)
    muts = api.mutations()
    assert Action("patch", "pods", "default", "orphan") in muts
    adopted = next(p for p in api.objects("pods") if p["metadata"]["name"] == "orphan")
    assert adopted["metadata"]["ownerReferences"][0]["uid"] == "rs-uid"
    assert sum(1 for a in muts if a.verb == "create") == 1
    theirs = next(p for p in api.objects("pods") if p["metadata"]["name"] == "theirs")
    assert theirs["metadata"]["ownerReferences"][0]["uid"] == "other-uid"


def test_releases_owned_pod_whose_labels_no_longer_match():
    api = FakeApi()
    api.seed("replicasets", rs(replicas=0))
    api.seed("pods", pod("relabelled", "rs-uid", labels={"app": "debug"}))
    sync_once(api)
    released = api.objects("pods")[0]
    assert "ownerReferences" not in released["metadata"]
    assert [a.verb for a in api.mutations()] == ["patch", "update"]  # release, status


def test_status_counts_replicas_ready_available_and_generation():
    api = FakeApi()
    api.seed("replicasets", rs(replicas=2))
    api.seed("pods", pod("a", "rs-uid", ready=True, node="n"), pod("b", "rs-uid", node="n"))
    sync_once(api)
    assert api.mutations() == [Action("update", "replicasets", "default", "web", "status")]
    status = api.objects("replicasets")[0]["status"]
    assert status == {"replicas": 2, "fullyLabeledReplicas": 2, "readyReplicas": 1,
                      "availableReplicas": 1, "observedGeneration": 2}


def test_create_failure_stops_the_slow_start_and_lowers_expectations():
    async def body():
        api = FakeApi()
        api.seed("replicasets", rs(replicas=5))
        ctrl = await controller(api)
        api.fail_next("create", "pods", Invalid(422, {"message": "quota"}))
        with pytest.raises(Invalid):
            await ctrl.sync("default/web")
        return api, ctrl
    api, ctrl = asyncio.run(body())
    assert sum(1 for a in api.mutations() if a.verb == "create") == 1  # first batch only
    assert ctrl.expectations.satisfied("default/web")


def test_deleted_replicaset_is_a_no_op():
    api = FakeApi()
    sync_once(api, "default/gone")
    assert api.mutations() == []


def test_expectations_count_off_and_expire():
    now = [0.0]
    exp = Expectations(ttl=10, clock=lambda: now[0])
    exp.expect("k", adds=2, deletes={"ns/a"})
    exp.creation_observed("k")
    exp.creation_observed("k")
    assert not exp.satisfied("k")
    exp.deletion_observed("k", "ns/a")
    assert exp.satisfied("k")
    exp.expect("k", adds=1)
    now[0] = 11
    assert exp.satisfied("k")


def test_informer_events_count_creations_and_run_converges():
    async def body():
        api = FakeApi()
        api.seed("replicasets", rs(replicas=3))
        index = {"namespace": by_namespace, "owner": by_owner_uid}
        pods = Informer(api, "pods", indexers=index)
        rss = Informer(api, "replicasets", indexers=index)
        ctrl = ReplicaSetController(api, pods, rss, Quiet(api, "t"))
        tasks = [asyncio.create_task(pods.run()), asyncio.create_task(rss.run()),
                 asyncio.create_task(ctrl.run(2))]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while loop.time() < deadline:
            status = api.objects("replicasets")[0].get("status") or {}
            if status.get("replicas") == 3:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return api
    api = asyncio.run(body())
    assert len(api.objects("pods")) == 3
    assert api.objects("replicasets")[0]["status"]["replicas"] == 3


def test_status_write_retries_once_on_a_fresh_object_after_a_conflict():
    from agents.kube.errors import Conflict

    async def body():
        api = FakeApi()
        api.seed("replicasets", rs(replicas=1))
        api.seed("pods", pod("a", "rs-uid", ready=True, node="n"))
        ctrl = await controller(api)
        api.fail_next("update", "replicasets", Conflict(409, {"message": "modified"}))
        await ctrl.sync("default/web")
        return api
    api = asyncio.run(body())
    assert api.objects("replicasets")[0]["status"]["readyReplicas"] == 1
