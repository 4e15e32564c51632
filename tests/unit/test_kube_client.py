"""The client's pure parts: kubeconfig reading, resource paths, errors, watch lines."""

import base64
import json

import pytest

from agents.kube import errors, resources
from agents.kube.client import parse_watch_line
from agents.kube.kubeconfig import KubeconfigError, load_kubeconfig, parse_kubeconfig

pytestmark = pytest.mark.unit


def config(user=None, cluster=None, context_ns=None, current="lab"):
    ctx = {"cluster": "c", "user": "u"}
    if context_ns:
        ctx["namespace"] = context_ns
    return {"apiVersion": "v1", "kind": "Config", "current-context": current,
            "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443/",
                                                   **(cluster or {})}}],
            "users": [{"name": "u", "user": user or {}}],
            "contexts": [{"name": "lab", "context": ctx},
                         {"name": "other", "context": {"cluster": "c", "user": "u",
                                                       "namespace": "kube-system"}}]}


def test_kubeconfig_with_files_relative_to_its_directory(tmp_path):
    doc = config(user={"client-certificate": "admin.crt", "client-key": "/abs/admin.key"},
                 cluster={"certificate-authority": "ca.crt"})
    cfg = parse_kubeconfig(doc, str(tmp_path))
    assert cfg.server == "https://127.0.0.1:6443"
    assert cfg.ca_file == str(tmp_path / "ca.crt")
    assert cfg.cert_file == str(tmp_path / "admin.crt")
    assert cfg.key_file == "/abs/admin.key"
    assert cfg.namespace == "default"
    assert cfg.token is None


def test_kubeconfig_with_inline_data_token_and_context_namespace():
    pem = b"-----BEGIN CERTIFICATE-----\n"
    doc = config(user={"token": "s3cret"},
                 cluster={"certificate-authority-data": base64.b64encode(pem).decode(),
                          "insecure-skip-tls-verify": True},
                 context_ns="team")
    cfg = parse_kubeconfig(doc)
    assert (cfg.ca_data, cfg.token, cfg.insecure, cfg.namespace) == (pem, "s3cret", True, "team")


def test_kubeconfig_token_file_and_explicit_context(tmp_path):
    (tmp_path / "token").write_text("abc\n")
    doc = config(user={"tokenFile": "token"})
    cfg = parse_kubeconfig(doc, str(tmp_path), context="other")
    assert (cfg.token, cfg.namespace) == ("abc", "kube-system")


@pytest.mark.parametrize("doc, message", [
    ([], "expected a mapping"),
    (config(current=""), "no current-context"),
    (config(current="nope"), "no context named 'nope'"),
    ({**config(), "clusters": []}, "no cluster named 'c'"),
    (config(user={"client-certificate-data": "%%%"}), "not valid base64"),
])
def test_bad_kubeconfigs_say_what_is_wrong(doc, message):
    with pytest.raises(KubeconfigError, match=message):
        parse_kubeconfig(doc)


def test_load_kubeconfig_reads_yaml_and_reports_missing_files(tmp_path):
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(config(user={"token": "t"})))  # JSON is YAML too
    assert load_kubeconfig(str(path)).token == "t"
    with pytest.raises(KubeconfigError, match="cannot read kubeconfig"):
        load_kubeconfig(str(tmp_path / "missing"))


def test_plain_http_needs_no_tls_context():
    assert parse_kubeconfig({**config(), "clusters": [
        {"name": "c", "cluster": {"server": "http://127.0.0.1:8080"}}]}).ssl_context() is None


@pytest.mark.parametrize("args, expected", [
    (("pods", "default"), "/api/v1/namespaces/default/pods"),
    (("pods", None), "/api/v1/pods"),
    (("pods", "default", "web-1"), "/api/v1/namespaces/default/pods/web-1"),
    (("pods", "default", "web-1", "binding"), "/api/v1/namespaces/default/pods/web-1/binding"),
    (("nodes", None, "n1", "status"), "/api/v1/nodes/n1/status"),
    (("deployments", "prod", "web", "scale"), "/apis/apps/v1/namespaces/prod/deployments/web/scale"),
    (("leases", "kube-system", "kube-scheduler"),
     "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-scheduler"),
    (("Deployment", "d"), "/apis/apps/v1/namespaces/d/deployments"),
    (("namespaces", None, "team a"), "/api/v1/namespaces/team%20a"),
])
def test_resource_paths(args, expected):
    assert resources.path(*args) == expected


@pytest.mark.parametrize("args, message", [
    (("widgets",), "unknown resource 'widgets'"),
    (("nodes", "default"), "cluster-scoped"),
    (("pods", None, "p"), "namespaced"),
    (("pods", "d", None, "status"), "needs an object name"),
])
def test_bad_resource_paths(args, message):
    with pytest.raises((KeyError, ValueError), match=message):
        resources.path(*args)


def test_keys():
    assert resources.meta_namespace_key({"metadata": {"namespace": "a", "name": "b"}}) == "a/b"
    assert resources.meta_namespace_key({"metadata": {"name": "n1"}}) == "n1"
    assert resources.split_key("a/b") == ("a", "b")
    assert resources.split_key("n1") == (None, "n1")


def status(code, reason, message="m"):
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
            "reason": reason, "message": message}


@pytest.mark.parametrize("code, reason, cls", [
    (404, "NotFound", errors.NotFound),
    (409, "Conflict", errors.Conflict),
    (409, "AlreadyExists", errors.AlreadyExists),
    (410, "Expired", errors.Gone),
    (422, "Invalid", errors.Invalid),
    (403, "Forbidden", errors.Forbidden),
    (401, "Unauthorized", errors.Unauthorized),
    (500, "InternalError", errors.ServerError),
    (418, "", errors.ApiError),
])
def test_errors_carry_the_status_and_have_specific_classes(code, reason, cls):
    err = errors.error_for(code, json.dumps(status(code, reason, "pods \"x\" not found")))
    assert type(err) is cls
    assert (err.code, err.reason, err.status["message"]) == (code, reason, 'pods "x" not found')


def test_already_exists_is_also_a_conflict_and_non_status_bodies_are_wrapped():
    assert isinstance(errors.error_for(409, status(409, "AlreadyExists")), errors.Conflict)
    err = errors.error_for(502, b"<html>bad gateway</html>")
    assert err.status["message"] == "<html>bad gateway</html>" and err.code == 502


def test_watch_lines():
    pod = {"kind": "Pod", "metadata": {"name": "p", "resourceVersion": "7"}}
    assert parse_watch_line(json.dumps({"type": "ADDED", "object": pod})) == ("ADDED", pod)
    assert parse_watch_line(b'{"type":"BOOKMARK","object":{"metadata":'
                            b'{"resourceVersion":"9"}}}')[0] == "BOOKMARK"
    with pytest.raises(errors.Gone):
        parse_watch_line(json.dumps({"type": "ERROR", "object": status(410, "Expired")}))
    with pytest.raises(errors.ServerError):
        parse_watch_line(json.dumps({"type": "ERROR", "object": status(500, "InternalError")}))
    with pytest.raises(errors.ApiError, match="malformed"):
        parse_watch_line(b"{not json")
