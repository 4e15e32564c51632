import json

import pytest

from agents.apiserver.errors import ApiError
from agents.apiserver.patch import apply_patch, json_merge, json_patch, strategic_merge

pytestmark = pytest.mark.unit

DEPLOY = {
    "metadata": {"name": "web", "labels": {"app": "web"}, "finalizers": ["a"]},
    "spec": {"template": {"spec": {"containers": [
        {"name": "main", "image": "nginx:1", "env": [{"name": "A", "value": "1"}],
         "ports": [{"containerPort": 80, "protocol": "TCP"}]},
        {"name": "side", "image": "busybox"},
    ]}}},
}


def containers(obj):
    return obj["spec"]["template"]["spec"]["containers"]


def test_json_merge_sets_and_deletes_keys_and_replaces_lists():
    out = json_merge({"a": 1, "b": {"c": 2, "d": 3}, "l": [1, 2]},
                     {"b": {"c": None, "e": 4}, "l": [3], "a": None})
    assert out == {"b": {"d": 3, "e": 4}, "l": [3]}


def test_json_merge_does_not_mutate_inputs():
    original = {"a": {"b": 1}}
    json_merge(original, {"a": {"b": 2}})
    assert original == {"a": {"b": 1}}


def test_json_patch_operations():
    doc = {"a": [1, 2], "b": {"c": 1}}
    out = json_patch(doc, [
        {"op": "add", "path": "/a/-", "value": 3},
        {"op": "add", "path": "/a/0", "value": 0},
        {"op": "replace", "path": "/b/c", "value": 5},
        {"op": "copy", "from": "/b/c", "path": "/d"},
        {"op": "move", "from": "/d", "path": "/e"},
        {"op": "remove", "path": "/a/1"},
        {"op": "test", "path": "/e", "value": 5},
        {"op": "add", "path": "/x~1y", "value": True},
    ])
    assert out == {"a": [0, 2, 3], "b": {"c": 5}, "e": 5, "x/y": True}
    assert doc == {"a": [1, 2], "b": {"c": 1}}


@pytest.mark.parametrize("ops, code", [
    ([{"op": "remove", "path": "/nope"}], 422),
    ([{"op": "replace", "path": "/nope", "value": 1}], 422),
    ([{"op": "test", "path": "/a", "value": 2}], 422),
    ([{"op": "frobnicate", "path": "/a"}], 400),
    ({"op": "add"}, 400),
])
def test_json_patch_errors(ops, code):
    with pytest.raises(ApiError) as err:
        json_patch({"a": 1}, ops)
    assert err.value.code == code


def test_strategic_merge_merges_containers_by_name_and_keeps_others():
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "nginx:2"}]}}}}
    out = strategic_merge(DEPLOY, patch)
    assert [c["name"] for c in containers(out)] == ["main", "side"]
    assert containers(out)[0]["image"] == "nginx:2"
    assert containers(out)[0]["env"] == [{"name": "A", "value": "1"}]


def test_strategic_merge_delete_directive_and_null():
    patch = {"metadata": {"labels": {"app": None}},
             "spec": {"template": {"spec": {"containers": [{"name": "side", "$patch": "delete"}]}}}}
    out = strategic_merge(DEPLOY, patch)
    assert [c["name"] for c in containers(out)] == ["main"]
    assert out["metadata"]["labels"] == {}


def test_strategic_merge_nested_keyed_lists_env_and_ports():
    patch = {"spec": {"template": {"spec": {"containers": [{
        "name": "main", "env": [{"name": "B", "value": "2"}, {"name": "A", "value": "9"}],
        "ports": [{"containerPort": 443}]}]}}}}
    c = containers(strategic_merge(DEPLOY, patch))[0]
    assert c["env"] == [{"name": "A", "value": "9"}, {"name": "B", "value": "2"}]
    assert [p["containerPort"] for p in c["ports"]] == [80, 443]


def test_strategic_merge_set_element_order_reorders():
    patch = {"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "side"}, {"name": "main"}],
        "containers": [{"name": "main", "image": "nginx:3"}]}}}}
    out = strategic_merge(DEPLOY, patch)
    assert [c["name"] for c in containers(out)] == ["side", "main"]
    assert containers(out)[1]["image"] == "nginx:3"


def test_strategic_merge_replace_directives():
    out = strategic_merge(DEPLOY, {"metadata": {"labels": {"$patch": "replace", "x": "y"}}})
    assert out["metadata"]["labels"] == {"x": "y"}
    out = strategic_merge(DEPLOY, {"spec": {"template": {"spec": {"containers": [
        {"$patch": "replace"}, {"name": "only", "image": "i"}]}}}})
    assert containers(out) == [{"name": "only", "image": "i"}]


def test_strategic_merge_primitive_lists():
    out = strategic_merge(DEPLOY, {"metadata": {"finalizers": ["b", "a"]}})
    assert out["metadata"]["finalizers"] == ["a", "b"]
    out = strategic_merge(DEPLOY, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}})
    assert out["metadata"]["finalizers"] == []


def test_strategic_merge_list_without_merge_key_is_replaced():
    out = strategic_merge({"spec": {"args": ["a", "b"]}}, {"spec": {"args": ["c"]}})
    assert out == {"spec": {"args": ["c"]}}


def test_strategic_merge_item_without_merge_key_is_an_error():
    with pytest.raises(ApiError):
        strategic_merge(DEPLOY, {"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}})


def test_apply_patch_dispatch_and_bad_json():
    assert apply_patch("merge", {"a": 1}, b'{"b": 2}') == {"a": 1, "b": 2}
    assert apply_patch("json", {"a": 1}, json.dumps([{"op": "remove", "path": "/a"}]).encode()) == {}
    with pytest.raises(ApiError) as err:
        apply_patch("strategic", {}, b"{nope")
    assert err.value.code == 400


@pytest.mark.parametrize("kind,body", [
    ("merge", {"status": {"phase": "Running", "podIP": "10.1.0.2"}, "metadata": {"labels": None}}),
    ("strategic", {"spec": {"template": {"spec": {"containers": [
        {"name": "main", "image": "nginx:2", "env": [{"name": "B", "value": "2"}]}]}}}}),
    ("json", [{"op": "replace", "path": "/metadata/name", "value": "other"}]),
])
def test_a_private_original_is_patched_in_place_with_the_same_result(kind, body):
    raw = json.dumps(body).encode()
    pristine = json.loads(json.dumps(DEPLOY))
    copied = apply_patch(kind, pristine, raw)
    assert pristine == DEPLOY  # the default never changes its input
    private = json.loads(json.dumps(DEPLOY))
    in_place = apply_patch(kind, private, raw, copy_original=False)
    assert in_place == copied


def test_strategic_merge_does_not_mutate_inputs_or_share_the_patch():
    original = json.loads(json.dumps(DEPLOY))
    patch = {"spec": {"template": {"spec": {"containers": [
        {"name": "new", "image": "x", "args": ["a"]}]}}}}
    out = strategic_merge(original, patch)
    assert original == DEPLOY
    containers(out)[-1]["args"].append("b")
    assert patch["spec"]["template"]["spec"]["containers"][0]["args"] == ["a"]
