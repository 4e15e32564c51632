import base64

import pytest

from agents.apiserver import pbdecode
from agents.apiserver.errors import ApiError

pytestmark = pytest.mark.unit


def varint(n):
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(number, value):
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    if isinstance(value, str):
        value = value.encode()
    return varint(number << 3 | 2) + varint(len(value)) + value


def entry(k, v):
    return field(1, k) + field(2, v)


def envelope(api_version, kind, raw):
    return pbdecode.MAGIC + field(1, field(1, api_version) + field(2, kind)) + field(2, raw) \
        + field(3, "") + field(4, "")


def meta(name, labels=None):
    body = field(1, name) + field(2, "") + field(3, "")
    body += field(8, field(1, -62135596800) + field(2, 0))  # gogo's zero time
    for k, v in (labels or {}).items():
        body += field(11, entry(k, v))
    return body


def test_decode_deployment_like_kubectl_create_deployment():
    container = field(1, "nginx") + field(2, "nginx:1.25") + field(8, b"") + \
        field(6, field(3, 80) + field(4, "TCP"))
    template = field(1, meta("", {"app": "web"})) + field(2, field(2, container))
    spec = field(1, 2) + field(2, field(1, entry("app", "web"))) + field(3, template) + \
        field(4, b"")
    raw = field(1, meta("web", {"app": "web"})) + field(2, spec) + field(3, b"")
    obj = pbdecode.decode(envelope("apps/v1", "Deployment", raw))
    assert obj == {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
                     {"name": "nginx", "image": "nginx:1.25",
                      "ports": [{"containerPort": 80, "protocol": "TCP"}]}]}}},
    }


def test_decode_secret_bytes_and_service_target_port():
    raw = field(1, meta("s1")) + field(2, entry("pw", b"\x00x")) + field(3, "Opaque")
    obj = pbdecode.decode(envelope("v1", "Secret", raw))
    assert obj["data"] == {"pw": base64.b64encode(b"\x00x").decode()}
    assert obj["type"] == "Opaque"
    port = field(1, "80-8080") + field(2, "TCP") + field(3, 80) + field(4, field(1, 0) + field(2, 8080))
    named = field(3, 81) + field(4, field(1, 1) + field(3, "http"))
    raw = field(1, meta("web")) + field(2, field(1, port) + field(1, named) + field(4, "ClusterIP"))
    spec = pbdecode.decode(envelope("v1", "Service", raw))["spec"]
    assert spec["ports"][0]["targetPort"] == 8080
    assert spec["ports"][1]["targetPort"] == "http"
    assert spec["type"] == "ClusterIP"


def test_unknown_fields_are_skipped():
    raw = field(1, meta("ns1") + field(99, "future")) + field(7, 5)
    assert pbdecode.decode(envelope("v1", "Namespace", raw))["metadata"] == {"name": "ns1"}


def test_unsupported_kind_is_415_and_garbage_is_400():
    with pytest.raises(ApiError) as err:
        pbdecode.decode(envelope("batch/v1", "Job", b""))
    assert err.value.code == 415
    with pytest.raises(ApiError) as err:
        pbdecode.decode(b"nope")
    assert err.value.code == 400
    with pytest.raises(ApiError) as err:
        pbdecode.decode(pbdecode.MAGIC + b"\x0a\xff")
    assert err.value.code == 400


def test_decode_access_review_of_kubectl_auth_can_i():
    attrs = field(1, "default") + field(2, "list") + field(3, "") + field(5, "secrets")
    raw = field(1, meta("")) + field(2, field(1, attrs))
    obj = pbdecode.decode(envelope("authorization.k8s.io/v1", "SelfSubjectAccessReview", raw))
    assert obj["spec"] == {"resourceAttributes": {"namespace": "default", "verb": "list",
                                                  "resource": "secrets"}}
