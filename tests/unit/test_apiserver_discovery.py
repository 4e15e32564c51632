import pytest

from agents.apiserver import discovery
from agents.apiserver.managedfields import (
    apply_conflicts,
    fields_v1,
    record,
    record_update,
    remove_unapplied,
    take_over,
)

pytestmark = pytest.mark.unit


def test_aggregated_discovery_lists_core_and_groups():
    core = discovery.aggregated(legacy=True)
    assert core["kind"] == "APIGroupDiscoveryList"
    pods = next(r for r in core["items"][0]["versions"][0]["resources"] if r["resource"] == "pods")
    assert pods["scope"] == "Namespaced" and "po" in pods["shortNames"]
    assert {s["subresource"] for s in pods["subresources"]} >= {"status", "binding", "log", "exec"}
    groups = {i["metadata"]["name"] for i in discovery.aggregated(legacy=False)["items"]}
    assert groups == {"apps", "coordination.k8s.io", "authorization.k8s.io"}


def test_legacy_discovery():
    rl = discovery.api_resource_list("apps", "v1")
    names = {r["name"] for r in rl["resources"]}
    assert {"deployments", "deployments/scale", "replicasets", "daemonsets"} <= names
    scale = next(r for r in rl["resources"] if r["name"] == "deployments/scale")
    assert (scale["group"], scale["kind"]) == ("autoscaling", "Scale")
    assert discovery.api_resource_list("nope", "v1") is None
    assert discovery.api_group("apps")["preferredVersion"]["groupVersion"] == "apps/v1"


def test_openapi_has_gvk_and_field_validation():
    root = discovery.openapi_root()
    assert set(root["paths"]) == {"api/v1", "apis/apps/v1", "apis/coordination.k8s.io/v1",
                                  "apis/authorization.k8s.io/v1"}
    doc = discovery.openapi_group_version("apps", "v1")
    patch = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"]["kind"] == "Deployment"
    assert any(p["name"] == "fieldValidation" for p in patch["parameters"])
    schema = doc["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"]
    assert schema["x-kubernetes-group-version-kind"][0]["kind"] == "Deployment"


def test_fields_v1_and_removal_of_unapplied_fields():
    applied = {"metadata": {"labels": {"a": "1"}},
               "spec": {"containers": [{"name": "c", "image": "i"}]}}
    fields = fields_v1(applied)
    assert fields["f:spec"]["f:containers"]['k:{"name":"c"}']["f:image"] == {}
    live = {"metadata": {"labels": {"a": "1", "b": "2"}},
            "spec": {"containers": [{"name": "c", "image": "i"}, {"name": "d", "image": "j"}]}}
    before = fields_v1({"metadata": {"labels": {"a": "1", "b": "2"}},
                        "spec": {"containers": [{"name": "c", "image": "i"},
                                                {"name": "d", "image": "j"}]}})
    remove_unapplied(live, before, fields)
    assert live == {"metadata": {"labels": {"a": "1"}},
                    "spec": {"containers": [{"name": "c", "image": "i"}]}}


def test_update_ownership_moves_to_the_writer_and_apply_conflicts():
    meta = {}
    old = {"spec": {"replicas": 1, "paused": False}}
    record(meta, "creator", "Update", "apps/v1", fields_v1(old), "t0")
    new = {"spec": {"replicas": 2, "paused": False}}
    record_update(meta, "scaler", "apps/v1", old, new, "t1")
    owners = {e["manager"]: e["fieldsV1"] for e in meta["managedFields"]}
    assert owners["scaler"] == {"f:spec": {"f:replicas": {}}}
    assert owners["creator"] == {"f:spec": {"f:paused": {}}}
    applied = {"spec": {"replicas": 5, "paused": False}}
    conflicts = apply_conflicts(meta, "me", new, applied, fields_v1(applied))
    assert conflicts == {"scaler": [".spec.replicas"]}  # paused: same value, no conflict
    take_over(meta, "me", fields_v1(applied))
    assert [e["manager"] for e in meta["managedFields"]] == []
    record_update(meta, "noop", "apps/v1", new, new, "t2")
    assert meta["managedFields"] == []
