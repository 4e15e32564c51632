"""The official `kubernetes` Python client against the API server on a real etcd 3.4."""

import os
import subprocess

import pytest

from agents.apiserver import testing
from tests.conftest import need

pytestmark = pytest.mark.component

kubernetes = pytest.importorskip("kubernetes")
from kubernetes import client, watch  # noqa: E402
from kubernetes.client.rest import ApiException  # noqa: E402
from kubernetes.dynamic import DynamicClient  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    need(os.path.exists(testing.ETCD), "needs /usr/bin/etcd (Debian etcd-server)")
    work = str(tmp_path_factory.mktemp("pyclient"))
    with testing.run_etcd(work, testing.etcd_command_from_env()) as etcd, testing.run_apiserver(
            work, etcd.endpoint, extra_args=["--default-watch-cache-size", "20"]) as api:
        yield api, etcd


@pytest.fixture(scope="module")
def api_client(server):
    cfg = client.Configuration()
    cfg.host = server[0].url
    with client.ApiClient(cfg) as c:
        yield c


def test_configmap_crud_and_optimistic_concurrency(api_client):
    v1 = client.CoreV1Api(api_client)
    cm = v1.create_namespaced_config_map("default", client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="crud", labels={"k": "v"}), data={"a": "1"}))
    assert cm.metadata.uid and int(cm.metadata.resource_version) > 0
    with pytest.raises(ApiException) as err:
        v1.create_namespaced_config_map("default", client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="crud")))
    assert err.value.status == 409
    cm.data["a"] = "2"
    updated = v1.replace_namespaced_config_map("crud", "default", cm)
    assert updated.data == {"a": "2"}
    with pytest.raises(ApiException) as err:
        v1.replace_namespaced_config_map("crud", "default", cm)  # stale resourceVersion
    assert err.value.status == 409
    same = v1.replace_namespaced_config_map("crud", "default", updated)
    assert same.metadata.resource_version == updated.metadata.resource_version  # no-op
    names = [c.metadata.name for c in v1.list_namespaced_config_map(
        "default", label_selector="k=v").items]
    assert names == ["crud"]
    v1.delete_namespaced_config_map("crud", "default")
    with pytest.raises(ApiException) as err:
        v1.read_namespaced_config_map("crud", "default")
    assert err.value.status == 404


def test_deployment_patches_and_scale(api_client):
    apps = client.AppsV1Api(api_client)
    body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "pyd"},
            "spec": {"selector": {"matchLabels": {"app": "pyd"}}, "template": {
                "metadata": {"labels": {"app": "pyd"}},
                "spec": {"containers": [{"name": "a", "image": "x:1"},
                                        {"name": "b", "image": "y:1"}]}}}}
    d = apps.create_namespaced_deployment("default", body)
    assert d.spec.replicas == 1 and d.spec.strategy.type == "RollingUpdate"
    d = apps.patch_namespaced_deployment("pyd", "default", {"spec": {"template": {"spec": {
        "containers": [{"name": "b", "image": "y:2"}]}}}})  # strategic merge by default
    assert [(c.name, c.image) for c in d.spec.template.spec.containers] == [
        ("a", "x:1"), ("b", "y:2")]
    d = apps.patch_namespaced_deployment("pyd", "default", [
        {"op": "replace", "path": "/spec/replicas", "value": 3}])
    assert d.spec.replicas == 3 and d.metadata.generation == 3
    scale = apps.read_namespaced_deployment_scale("pyd", "default")
    assert scale.spec.replicas == 3 and scale.status.selector == "app=pyd"
    apps.patch_namespaced_deployment_scale("pyd", "default", {"spec": {"replicas": 1}})
    st = apps.patch_namespaced_deployment_status("pyd", "default", {"status": {
        "replicas": 1, "readyReplicas": 1}})
    assert st.status.ready_replicas == 1 and st.spec.replicas == 1
    # the main resource ignores status; status ignores spec
    d = apps.patch_namespaced_deployment("pyd", "default", {"status": {"replicas": 9}})
    assert d.status.replicas == 1


def test_node_round_trips_through_model_validation(api_client):
    v1 = client.CoreV1Api(api_client)
    info = {k: "x" for k in ("architecture", "bootID", "containerRuntimeVersion",
                             "kernelVersion", "kubeProxyVersion", "kubeletVersion",
                             "machineID", "operatingSystem", "osImage", "systemUUID")}
    v1.create_node({"metadata": {"name": "pynode", "labels": {"role": "w"}},
                    "status": {"nodeInfo": info, "conditions": [
                        {"type": "Ready", "status": "True"}]}})
    node = v1.read_node("pynode")
    assert node.status.node_info.kubelet_version == "x"
    v1.patch_node_status("pynode", {"status": {"conditions": [
        {"type": "Ready", "status": "False"}]}})
    assert v1.read_node("pynode").status.conditions[0].status == "False"
    assert [n.metadata.name for n in v1.list_node(label_selector="role=w").items] == ["pynode"]


def test_watch_from_resource_version(api_client):
    v1 = client.CoreV1Api(api_client)
    start = v1.list_namespaced_config_map("default").metadata.resource_version
    v1.create_namespaced_config_map("default", {"metadata": {"name": "w1"}})
    v1.patch_namespaced_config_map("w1", "default", {"data": {"x": "1"}})
    v1.delete_namespaced_config_map("w1", "default")
    events = []
    w = watch.Watch()
    for ev in w.stream(v1.list_namespaced_config_map, "default", resource_version=start,
                       timeout_seconds=5):
        events.append((ev["type"], ev["object"].metadata.name))
        if len(events) == 3:
            w.stop()
    assert events == [("ADDED", "w1"), ("MODIFIED", "w1"), ("DELETED", "w1")]


def test_expired_resource_version_is_410(api_client, server):
    v1 = client.CoreV1Api(api_client)
    cm = v1.create_namespaced_config_map("default", {"metadata": {"name": "old"}})
    old_rv = cm.metadata.resource_version
    for n in range(30):  # push old_rv out of the 20-change watch cache window
        v1.patch_namespaced_config_map("old", "default", {"data": {"n": str(n)}})
    current = v1.list_namespaced_config_map("default").metadata.resource_version
    subprocess.run(["/usr/bin/etcdctl", "--endpoints", server[1].endpoint, "compact",
                    current], check=True, capture_output=True,
                   env={"ETCDCTL_API": "3", "PATH": "/usr/bin"})
    with pytest.raises(ApiException) as err:
        for _ in watch.Watch().stream(v1.list_namespaced_config_map, "default",
                                      resource_version=old_rv, timeout_seconds=5):
            pass
    assert err.value.status == 410
    # a recent resourceVersion inside the window still works after compaction
    v1.delete_namespaced_config_map("old", "default")
    w = watch.Watch()
    for ev in w.stream(v1.list_namespaced_config_map, "default", resource_version=current,
                       timeout_seconds=5):
        assert (ev["type"], ev["object"].metadata.name) == ("DELETED", "old")
        w.stop()


def test_dynamic_client_uses_legacy_discovery(api_client, tmp_path):
    # its discovery cache goes to /tmp unless told otherwise
    dyn = DynamicClient(api_client, cache_file=str(tmp_path / "discovery.json"))
    leases = dyn.resources.get(api_version="coordination.k8s.io/v1", kind="Lease")
    leases.create(namespace="kube-node-lease", body={
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "n1"}, "spec": {"holderIdentity": "n1",
                                            "leaseDurationSeconds": 40}})
    got = leases.get(name="n1", namespace="kube-node-lease")
    assert got.spec.holderIdentity == "n1"
    pods = dyn.resources.get(api_version="v1", kind="Pod")
    assert pods.namespaced and pods.get(namespace="default").items == []
    leases.delete(name="n1", namespace="kube-node-lease")
