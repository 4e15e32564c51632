"""Garbage collector: background deletion of dependents whose owners are gone (checked
with a GET, so a lagging cache never deletes on a guess), partial owners, foreground and
orphan finalizers."""

import asyncio

import pytest

from agents.controller_manager.base import EventRecorder
from agents.controller_manager.garbagecollector import FOREGROUND, ORPHAN, GarbageCollector
from agents.kube.informer import Informer, by_owner_uid
from agents.kube.testing import FakeApi

pytestmark = pytest.mark.unit


def rs(name="web", uid="rs-uid", **meta):
    return {"metadata": {"name": name, "namespace": "default", "uid": uid, **meta},
            "spec": {"replicas": 1}}


def pod(name, *owner_uids):
    refs = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": f"rs-{u}", "uid": u,
             "controller": i == 0} for i, u in enumerate(owner_uids)]
    return {"metadata": {"name": name, "namespace": "default", "uid": f"{name}-uid",
                         "ownerReferences": refs}, "spec": {}}


async def collector(api):
    infs = {"pods": Informer(api, "pods", indexers={"owner": by_owner_uid}),
            "replicasets": Informer(api, "replicasets", indexers={"owner": by_owner_uid})}
    gc = GarbageCollector(api, infs, EventRecorder(api, "t"))
    for inf in infs.values():
        await inf.list_and_replace()
    api.clear_actions()
    return gc


def run_sync(api, *items):
    async def body():
        gc = await collector(api)
        for item in items:
            await gc.sync(item)
        return gc
    return asyncio.run(body())


def test_dependent_of_a_deleted_owner_is_deleted_in_the_background():
    api = FakeApi()
    api.seed("pods", pod("orphaned", "gone-uid"))
    run_sync(api, ("pods", "default/orphaned"))
    [action] = api.mutations()
    assert (action.verb, action.name, action.object) == (
        "delete", "orphaned", {"propagationPolicy": "Background"})


def test_dependent_with_a_live_owner_is_kept_even_if_the_cache_lags():
    async def body():
        api = FakeApi()
        api.seed("pods", pod("p", "rs-uid"))
        gc = await collector(api)
        api.seed("replicasets", rs(name="rs-rs-uid"))  # created after the cache listed
        await gc.sync(("pods", "default/p"))
        return api
    api = asyncio.run(body())
    assert api.mutations() == []


def test_namesake_owner_with_another_uid_counts_as_gone():
    api = FakeApi()
    api.seed("replicasets", rs(name="rs-old-uid", uid="new-uid"))
    api.seed("pods", pod("p", "old-uid"))
    run_sync(api, ("pods", "default/p"))
    assert [a.verb for a in api.mutations()] == ["delete"]


def test_only_the_dangling_reference_is_removed_when_another_owner_lives():
    api = FakeApi()
    api.seed("replicasets", rs(name="rs-live", uid="live"))
    api.seed("pods", pod("p", "gone", "live"))
    run_sync(api, ("pods", "default/p"))
    [p] = api.objects("pods")
    assert [r["uid"] for r in p["metadata"]["ownerReferences"]] == ["live"]


def test_foreground_owner_deletes_dependents_then_drops_its_finalizer():
    async def body():
        api = FakeApi()
        api.seed("replicasets", rs(deletionTimestamp="2026-01-01T00:00:00Z",
                                   finalizers=[FOREGROUND]))
        api.seed("pods", pod("a", "rs-uid"))
        gc = await collector(api)
        await gc.sync(("replicasets", "default/web"))
        first = [(a.verb, a.resource, a.name) for a in api.mutations()]
        for inf in gc.informers.values():
            await inf.list_and_replace()
        api.clear_actions()
        await gc.sync(("replicasets", "default/web"))
        return api, first
    api, first = asyncio.run(body())
    assert first == [("delete", "pods", "a")]
    assert api.objects("replicasets") == []  # finalizer removed → the owner is gone


def test_orphan_owner_releases_dependents_then_drops_its_finalizer():
    api = FakeApi()
    api.seed("replicasets", rs(deletionTimestamp="2026-01-01T00:00:00Z", finalizers=[ORPHAN]))
    api.seed("pods", pod("a", "rs-uid"))
    run_sync(api, ("replicasets", "default/web"))
    [p] = api.objects("pods")
    assert "ownerReferences" not in p["metadata"]
    assert api.objects("replicasets") == []


def test_deleting_an_owner_enqueues_its_dependents():
    async def body():
        api = FakeApi()
        api.seed("replicasets", rs())
        api.seed("pods", pod("a", "rs-uid"))
        gc = await collector(api)
        while len(gc.queue):
            key = await gc.queue.get()
            gc.queue.done(key)
        await api.delete("replicasets", "web", "default")
        async for event in api.watch("replicasets", resource_version="0"):
            gc.informers["replicasets"].apply(*event)
            if event[0] == "DELETED":
                break
        return [await gc.queue.get()]
    assert asyncio.run(body()) == [("pods", "default/a")]
