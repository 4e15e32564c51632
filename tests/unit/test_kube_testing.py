"""The FakeApi behaves like the API server where controllers rely on it."""

import asyncio

import pytest

from agents.kube import errors
from agents.kube.testing import Action, FakeApi, match_fields, match_labels, merge_patch

pytestmark = pytest.mark.unit


def run(coro):
    return asyncio.run(coro)


def pod(name, **spec):
    return {"metadata": {"name": name, "namespace": "default"}, "spec": spec}


def test_create_fills_metadata_and_refuses_duplicates():
    async def main():
        api = FakeApi()
        made = await api.create("pods", pod("a"))
        with pytest.raises(errors.AlreadyExists):
            await api.create("pods", pod("a"))
        generated = await api.create("pods", {"metadata": {"generateName": "web-"}})
        return made, generated, api
    made, generated, api = run(main())
    assert made["metadata"]["uid"] and made["metadata"]["resourceVersion"] == "1"
    assert (made["kind"], made["apiVersion"]) == ("Pod", "v1")
    assert generated["metadata"]["name"].startswith("web-")
    assert api.actions[:2] == [Action("create", "pods", "default", "a"),
                               Action("create", "pods", "default", "a")]


def test_update_with_a_stale_resource_version_conflicts():
    async def main():
        api = FakeApi()
        first = await api.create("pods", pod("a"))
        await api.update("pods", {**first, "spec": {"x": 1}})
        with pytest.raises(errors.Conflict):
            await api.update("pods", {**first, "spec": {"x": 2}})
        return await api.get("pods", "a")
    current = run(main())
    assert current["spec"] == {"x": 1} and current["metadata"]["generation"] == 2


def test_status_subresource_changes_only_status_and_main_resource_keeps_it():
    async def main():
        api = FakeApi()
        obj = await api.create("deployments", {"metadata": {"name": "d"}, "spec": {"r": 1}})
        obj = await api.update_status("deployments", {**obj, "spec": {"r": 9},
                                                      "status": {"ready": 1}})
        obj = await api.update("deployments", {**obj, "status": {"ready": 0}})
        return obj
    obj = run(main())
    assert obj["spec"] == {"r": 1} and obj["status"] == {"ready": 1}


def test_patch_merges_and_scale_patches_replicas():
    async def main():
        api = FakeApi()
        await api.create("deployments", {"metadata": {"name": "d", "labels": {"a": "1"}},
                                         "spec": {"replicas": 1, "paused": True}})
        await api.patch("deployments", "d", {"metadata": {"labels": {"b": "2"}},
                                             "spec": {"paused": None}})
        await api.scale("deployments", "d", 3)
        return await api.get_scale("deployments", "d"), await api.get("deployments", "d")
    scale, obj = run(main())
    assert scale["spec"]["replicas"] == 3
    assert obj["metadata"]["labels"] == {"a": "1", "b": "2"} and "paused" not in obj["spec"]


def test_binding_sets_the_node_once():
    async def main():
        api = FakeApi()
        api.seed("pods", pod("a"))
        await api.bind("default", "a", "n1")
        with pytest.raises(errors.Conflict, match="already assigned"):
            await api.create("pods", {"target": {"name": "n2"}}, "default",
                             subresource="binding", name="a")
        return await api.get("pods", "a"), api.actions
    obj, actions = run(main())
    assert obj["spec"]["nodeName"] == "n1"
    assert actions[0] == Action("create", "pods", "default", "a", "binding")


def test_delete_honours_finalizers_and_preconditions():
    async def main():
        api = FakeApi()
        api.seed("pods", {"metadata": {"name": "a", "finalizers": ["x"]}}, pod("b"))
        await api.delete("pods", "a")
        held = await api.get("pods", "a")
        await api.update("pods", {**held, "metadata": {**held["metadata"], "finalizers": []}})
        with pytest.raises(errors.Conflict):
            await api.delete("pods", "b", preconditions={"uid": "wrong"})
        await api.delete("pods", "b", propagation_policy="Foreground")
        with pytest.raises(errors.NotFound):
            await api.get("pods", "b")
        return held, api.objects("pods")
    held, left = run(main())
    assert held["metadata"]["deletionTimestamp"]
    assert left == []


def test_injected_failures_hit_the_named_verb_and_resource_only():
    async def main():
        api = FakeApi()
        api.fail_next("create", "pods", errors.ServerError(500, {"message": "boom"}))
        await api.create("configmaps", {"metadata": {"name": "c"}})
        with pytest.raises(errors.ServerError):
            await api.create("pods", pod("a"))
        await api.create("pods", pod("a"))
        return api.mutations()
    assert len(run(main())) == 3


def test_list_pages_and_selectors():
    async def main():
        api = FakeApi()
        api.seed("pods", *(pod(f"p{i}") for i in range(5)))
        first = await api.list("pods", "default", limit=2)
        rest = await api.list("pods", "default", continue_token=first["metadata"]["continue"])
        return first, rest
    first, rest = run(main())
    assert [p["metadata"]["name"] for p in first["items"]] == ["p0", "p1"]
    assert [p["metadata"]["name"] for p in rest["items"]] == ["p2", "p3", "p4"]
    assert "continue" not in rest["metadata"]


@pytest.mark.parametrize("selector, labels, ok", [
    ("app=web", {"app": "web"}, True), ("app==web", {"app": "db"}, False),
    ("app!=web", {"app": "db"}, True), ("app", {}, False), ("!app", {}, True),
    ("app in (web,db),tier notin (x)", {"app": "db", "tier": "y"}, True),
    ("app in (web,db)", {"app": "x"}, False), ("", {}, True),
])
def test_label_selectors(selector, labels, ok):
    assert match_labels(selector, labels) is ok


def test_field_selectors_and_merge_patch():
    p = {"metadata": {"name": "a"}, "spec": {"nodeName": ""}, "status": {"phase": "Running"}}
    assert match_fields("spec.nodeName=,status.phase!=Failed", p)
    assert not match_fields("metadata.name=b", p)
    assert merge_patch({"a": {"b": 1, "c": [1]}}, {"a": {"c": [2], "b": None}}) == \
        {"a": {"c": [2]}}
