import pytest

from agents.apiserver.defaults import apply_defaults
from agents.apiserver.errors import ApiError
from agents.apiserver.validation import check_unknown_fields, validate

pytestmark = pytest.mark.unit


def pod(name="p", **spec):
    return {"metadata": {"name": name},
            "spec": spec or {"containers": [{"name": "c", "image": "busybox"}]}}


def test_valid_pod_has_no_causes():
    assert validate("Pod", pod()) == []


@pytest.mark.parametrize("name", ["Bad_Name", "-x", "x" * 254, "UPPER"])
def test_invalid_names(name):
    causes = validate("Pod", pod(name))
    assert causes and causes[0][0] == "metadata.name"


def test_namespace_and_service_names_are_labels():
    assert validate("Namespace", {"metadata": {"name": "a.b"}})
    assert validate("ConfigMap", {"metadata": {"name": "a.b"}}) == []


def test_required_fields():
    assert ("spec.containers", "Required value") in validate("Pod", pod(containers=[]))
    causes = dict(validate("Pod", pod(containers=[{"name": "c"}])))
    assert causes["spec.containers[0].image"] == "Required value"
    assert validate("Service", {"metadata": {"name": "s"}, "spec": {}})[0][0] == "spec.ports"


def test_deployment_selector_must_match_template():
    d = {"metadata": {"name": "d"}, "spec": {
        "selector": {"matchLabels": {"app": "a"}},
        "template": {"metadata": {"labels": {"app": "b"}},
                     "spec": {"containers": [{"name": "c", "image": "i"}]}}}}
    assert validate("Deployment", d)[0][0] == "spec.template.metadata.labels"


def test_bad_labels_and_secret_data():
    obj = {"metadata": {"name": "c", "labels": {"ok": "bad value!"}}}
    assert validate("ConfigMap", obj)
    assert validate("Secret", {"metadata": {"name": "s"}, "data": {"k": "%%%"}})


def test_unknown_fields_strict_warn_ignore():
    obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "bogus": 1},
           "spec": {"containers": [{"name": "c", "image": "i", "imagee": "x"}]}}
    with pytest.raises(ApiError) as err:
        check_unknown_fields(obj, "Pod", "Strict")
    assert err.value.code == 400
    assert 'unknown field "metadata.bogus"' in err.value.message
    assert 'unknown field "spec.containers[0].imagee"' in err.value.message
    assert len(check_unknown_fields(obj, "Pod", "Warn")) == 2
    assert check_unknown_fields(obj, "Pod", "Ignore") == []


def test_defaults_pod_service_secret_namespace():
    p = pod()
    apply_defaults("Pod", p)
    assert p["spec"]["restartPolicy"] == "Always"
    assert p["spec"]["containers"][0]["imagePullPolicy"] == "Always"
    assert p["status"] == {"phase": "Pending", "qosClass": "BestEffort"}
    svc = {"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}}
    apply_defaults("Service", svc)
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["ports"][0] == {"port": 80, "protocol": "TCP", "targetPort": 80}
    sec = {"metadata": {"name": "s"}, "stringData": {"a": "b"}}
    apply_defaults("Secret", sec)
    assert sec == {"metadata": {"name": "s"}, "type": "Opaque", "data": {"a": "Yg=="}}
    ns = {"metadata": {"name": "team"}}
    apply_defaults("Namespace", ns)
    assert ns["metadata"]["labels"] == {"kubernetes.io/metadata.name": "team"}
    assert ns["status"]["phase"] == "Active"


def test_stored_form_splices_resource_version_into_lists():
    import json

    from agents.apiserver.registry import encode, raw_with_rv
    from agents.apiserver.storage import Item

    obj = {"kind": "Pod", "spec": {"template": {"metadata": {"x": 1}}},
           "metadata": {"name": "p", "resourceVersion": "3"}}
    raw = encode(obj)
    assert raw.startswith(b'{"metadata":{"name":"p"}')
    spliced = json.loads(raw_with_rv(Item("/k", raw, 42, 40)))
    assert spliced["metadata"] == {"resourceVersion": "42", "name": "p"}
    assert spliced["spec"]["template"]["metadata"] == {"x": 1}
    empty = json.loads(raw_with_rv(Item("/k", encode({"kind": "X"}), 7, 7)))
    assert empty["metadata"] == {"resourceVersion": "7"}
    legacy = json.loads(raw_with_rv(Item("/k", b'{"kind":"X","metadata":{"name":"a"}}', 9, 9)))
    assert legacy["metadata"] == {"name": "a", "resourceVersion": "9"}
