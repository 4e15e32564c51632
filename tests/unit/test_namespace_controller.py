"""The Namespace controller in the sample-controller style: seed a FakeApi, run
`sync(name)` once, look at what it deleted and whether it finalized. Discovery is a pure
function over legacy discovery documents."""

import asyncio

import pytest

from agents.controller_manager.namespace import (
    FINALIZER,
    NamespaceController,
    finalized,
    namespaced_resources,
    remaining_condition,
    with_condition,
)
from agents.kube.informer import Informer
from agents.kube.resources import resource
from agents.kube.testing import Action, FakeApi

pytestmark = pytest.mark.unit

# -- discovery ----------------------------------------------------------------------------

CORE = {"kind": "APIResourceList", "groupVersion": "v1", "resources": [
    {"name": "namespaces", "namespaced": False, "kind": "Namespace",
     "verbs": ["create", "delete", "get", "list"]},
    {"name": "pods", "namespaced": True, "kind": "Pod",
     "verbs": ["create", "delete", "deletecollection", "get", "list"]},
    {"name": "pods/status", "namespaced": True, "kind": "Pod", "verbs": ["get", "update"]},
    {"name": "configmaps", "namespaced": True, "kind": "ConfigMap",
     "verbs": ["delete", "list"]},
    {"name": "bindings", "namespaced": True, "kind": "Binding", "verbs": ["create"]},
]}
APPS = {"kind": "APIResourceList", "groupVersion": "apps/v1", "resources": [
    {"name": "deployments", "namespaced": True, "kind": "Deployment",
     "verbs": ["deletecollection", "list"]},
]}


def test_discovery_keeps_namespaced_deletable_top_level_resources():
    found = namespaced_resources([CORE, APPS])
    assert [(r.group, r.version, r.name, r.kind) for r in found] == [
        ("", "v1", "pods", "Pod"), ("", "v1", "configmaps", "ConfigMap"),
        ("apps", "v1", "deployments", "Deployment")]
    assert all(r.namespaced for r in found)


def test_finalize_body_drops_only_the_kubernetes_finalizer():
    ns = {"metadata": {"name": "x"}, "spec": {"finalizers": ["kubernetes", "example.com/x"]}}
    assert finalized(ns)["spec"]["finalizers"] == ["example.com/x"]
    assert ns["spec"]["finalizers"] == ["kubernetes", "example.com/x"]  # not modified


def test_remaining_content_is_reported_as_kubernetes_words_it():
    cond = remaining_condition({resource("pods"): 3, resource("deployments"): 1}, "T")
    assert cond["type"] == "NamespaceContentRemaining" and cond["status"] == "True"
    assert cond["reason"] == "SomeResourcesRemain"
    assert cond["message"] == ("Some resources are remaining: deployments.apps has 1 "
                               "resource instances, pods has 3 resource instances")


def test_a_condition_already_reported_is_not_written_again():
    ns = {"metadata": {"name": "x"}, "status": {"phase": "Terminating"}}
    cond = remaining_condition({resource("pods"): 1}, "T1")
    once = with_condition(ns, cond)
    assert once["status"]["conditions"] == [cond] and once["status"]["phase"] == "Terminating"
    assert with_condition(once, remaining_condition({resource("pods"): 1}, "T2")) is None
    fewer = with_condition(once, remaining_condition({resource("configmaps"): 1}, "T3"))
    assert [c["message"] for c in fewer["status"]["conditions"]] == [
        "Some resources are remaining: configmaps has 1 resource instances"]


# -- the controller -----------------------------------------------------------------------

KINDS = ("pods", "configmaps", "services", "deployments")


class FakeContent:
    """The controller's content interface over a FakeApi's fixed resource table."""

    def __init__(self, api, kinds=KINDS, stuck=()):
        self.api, self.kinds, self.stuck = api, [resource(k) for k in kinds], set(stuck)
        self.deleted: list[tuple[str, str]] = []

    async def resources(self):
        return self.kinds

    async def delete_all(self, res, namespace):
        self.deleted.append((res.name, namespace))
        for obj in self.api.objects(res.name, namespace):
            if obj["metadata"]["name"] not in self.stuck:
                await self.api.delete(res.name, obj["metadata"]["name"], namespace)

    async def remaining(self, res, namespace):
        return len(self.api.objects(res.name, namespace))


def namespace(name, deleting=True, finalizers=(FINALIZER,)):
    meta = {"name": name}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "spec": {"finalizers": list(finalizers)},
            "status": {"phase": "Terminating" if deleting else "Active"}}


def cm(name, ns):
    return {"metadata": {"name": name, "namespace": ns}}


class Harness:
    def __init__(self, api, **content):
        self.api = api
        self.namespaces = Informer(api, "namespaces")
        self.content = FakeContent(api, **content)
        self.ctrl = NamespaceController(api, self.namespaces, self.content, recheck=0.01)

    async def sync(self, name):
        await self.namespaces.list_and_replace()
        self.api.clear_actions()
        await self.ctrl.sync(name)


def test_a_terminating_namespace_is_emptied_then_finalized():
    async def body():
        api = FakeApi()
        api.seed("namespaces", namespace("doomed"), namespace("other", deleting=False))
        api.seed("configmaps", cm("a", "doomed"), cm("b", "doomed"), cm("keep", "other"))
        api.seed("pods", {"metadata": {"name": "p", "namespace": "doomed"}})
        h = Harness(api)
        await h.sync("doomed")
        assert sorted(h.content.deleted) == sorted((k, "doomed") for k in KINDS)
        assert api.mutations()[-1] == Action("update", "namespaces", None, "doomed",
                                             "finalize")
        assert api.mutations()[-1].object["spec"]["finalizers"] == []
        assert [n["metadata"]["name"] for n in api.objects("namespaces")] == ["other"]
        assert [c["metadata"]["name"] for c in api.objects("configmaps")] == ["keep"]
    asyncio.run(body())


def test_an_active_namespace_is_left_alone():
    async def body():
        api = FakeApi()
        api.seed("namespaces", namespace("live", deleting=False))
        api.seed("configmaps", cm("a", "live"))
        h = Harness(api)
        await h.sync("live")
        assert h.content.deleted == [] and api.mutations() == []
    asyncio.run(body())


def test_a_namespace_without_our_finalizer_is_not_ours():
    async def body():
        api = FakeApi()
        api.seed("namespaces", namespace("theirs", finalizers=["example.com/x"]))
        h = Harness(api)
        await h.sync("theirs")
        assert h.content.deleted == [] and api.mutations() == []
    asyncio.run(body())


def test_remaining_content_delays_the_finalizer_and_rechecks():
    async def body():
        api = FakeApi()
        ns = namespace("slow")
        # FakeApi drops an object marked for deletion on any write once it has no
        # metadata finalizer: one of someone else's keeps it for the status write.
        ns["metadata"]["finalizers"] = ["example.com/hold"]
        api.seed("namespaces", ns)
        api.seed("configmaps", cm("stuck", "slow"), cm("easy", "slow"))
        h = Harness(api, stuck={"stuck"})
        await h.sync("slow")
        assert not any(a.subresource == "finalize" for a in api.mutations())
        reported = api.objects("namespaces")[0]["status"]["conditions"]
        assert [c["message"] for c in reported] == [
            "Some resources are remaining: configmaps has 1 resource instances"]
        assert [c["metadata"]["name"] for c in api.objects("configmaps")] == ["stuck"]
        async with asyncio.timeout(2):  # requeued after `recheck`
            while len(h.ctrl.queue) == 0:
                await asyncio.sleep(0.01)
        h.content.stuck.clear()
        await h.sync("slow")
        assert api.objects("namespaces")[0]["spec"]["finalizers"] == []
    asyncio.run(body())


def test_running_controller_finalizes_a_namespace_deleted_later():
    async def body():
        api = FakeApi()
        ns = namespace("later", deleting=False)
        # A metadata finalizer of someone else's keeps the object visible after ours goes.
        ns["metadata"]["finalizers"] = ["example.com/hold"]
        api.seed("namespaces", ns)
        api.seed("configmaps", cm("a", "later"))
        h = Harness(api)
        tasks = [asyncio.create_task(h.namespaces.run())]
        await h.namespaces.wait_for_sync()
        tasks.append(asyncio.create_task(h.ctrl.run(1)))
        try:
            await api.delete("namespaces", "later")   # marks it (finalizers left)
            async with asyncio.timeout(5):
                while api.objects("namespaces")[0]["spec"]["finalizers"]:
                    await asyncio.sleep(0.01)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        assert api.objects("configmaps") == []
    asyncio.run(body())
