"""The Namespace and Node IPAM controllers on a real control plane on 127.0.0.1 (etcd
3.4, the API server, the scheduler, the controller manager, 3 simulated nodes), driven
by kubectl 1.32: `kubectl delete namespace` with pods, configmaps, services and
deployments inside completes and they are gone; a namespace with a finalizer of its
own stays Terminating until that is finalized too; every node gets its own pod CIDR."""

import ipaddress
import json
import os
import urllib.error
import urllib.request

import pytest

from agents.apiserver import testing
from tests.component.test_controllers_deployment import KUBECTL, ControlPlane, poll
from tests.conftest import need

pytestmark = pytest.mark.component

NODES = 3
CLUSTER_CIDR = "10.244.0.0/16"


@pytest.fixture(scope="module")
def plane(tmp_path_factory):
    need(os.path.exists(testing.ETCD), "needs /usr/bin/etcd (Debian etcd-server)")
    need(os.path.exists(KUBECTL), "needs /usr/bin/kubectl")
    work = str(tmp_path_factory.mktemp("nsplane"))
    with testing.run_etcd(work, testing.etcd_command_from_env()) as etcd, \
            testing.run_apiserver(work, etcd.endpoint) as api:
        cp = ControlPlane(work, api.url)
        try:
            cp.start("simnodes", "agents.simnodes", "--nodes", str(NODES), "--prefix", "ns-node-",
                     "--cpu", "8", "--memory", "32Gi")
            cp.start("scheduler", "agents.scheduler", "--port", "0")
            cp.start("controller-manager", "agents.controller_manager", "--port", "0",
                     "--allocate-node-cidrs", "--cluster-cidr", CLUSTER_CIDR,
                     "--node-cidr-mask-size", "24")
            poll(lambda: len(nodes(cp)) == NODES, 60, "simulated nodes")
            yield cp
        finally:
            cp.stop_all()


def nodes(cp):
    return json.loads(cp.kubectl("get", "nodes", "-o", "json").stdout)["items"]


def call(cp, method, path, body=None):
    """(status, parsed body) of one request to the API server."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(cp.url + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def left_in(cp, ns):
    """kind → names of what is still stored in namespace ns."""
    out = {}
    for kind in ("pods", "configmaps", "services", "endpoints", "deployments.apps",
                 "replicasets.apps", "secrets"):
        items = json.loads(cp.kubectl("get", kind, "-n", ns, "-o", "json").stdout)["items"]
        if items:
            out[kind] = [i["metadata"]["name"] for i in items]
    return out


def test_every_registered_node_gets_its_own_pod_cidr(plane):
    """Simulated nodes bring their own podCIDR (left alone); nodes registering without
    one, as kubelets do, get a free /24 of the cluster CIDR each."""
    names = [f"bare-{i}" for i in range(4)]
    try:
        for name in names:
            status, answer = call(plane, "POST", "/api/v1/nodes", {"metadata": {"name": name}})
            assert status == 201, answer

        def allocated():
            found = {n["metadata"]["name"]: n["spec"].get("podCIDR") for n in nodes(plane)
                     if n["metadata"]["name"] in names}
            return found if None not in found.values() and len(found) == 4 else None
        cidrs = poll(allocated, 30, "pod CIDRs on every new node")
        assert len(set(cidrs.values())) == 4, f"nodes share a pod CIDR: {cidrs}"
        for node in nodes(plane):
            if node["metadata"]["name"] in names:
                cidr = ipaddress.ip_network(node["spec"]["podCIDR"])
                assert cidr.prefixlen == 24
                assert cidr.subnet_of(ipaddress.ip_network(CLUSTER_CIDR))
                assert node["spec"]["podCIDRs"] == [node["spec"]["podCIDR"]]
    finally:
        for name in names:
            call(plane, "DELETE", f"/api/v1/nodes/{name}")


def test_kubectl_delete_namespace_deletes_everything_in_it(plane):
    k = plane.kubectl
    k("create", "namespace", "doomed")
    k("create", "deployment", "web", "--image=nginx", "--replicas=3", "-n", "doomed")
    k("create", "configmap", "settings", "--from-literal=a=b", "-n", "doomed")
    k("create", "service", "clusterip", "web", "--tcp=80:80", "-n", "doomed")
    k("run", "solo", "--image=busybox", "-n", "doomed")

    def running():
        pods = json.loads(k("get", "pods", "-n", "doomed", "-o", "json").stdout)["items"]
        up = [p for p in pods if p["status"].get("phase") == "Running"]
        return len(up) == 4
    poll(running, 60, "4 running pods in namespace doomed")

    proc = k("delete", "namespace", "doomed", "--timeout=60s", timeout=90)
    assert 'namespace "doomed" deleted' in proc.stdout
    assert k("get", "namespace", "doomed", check=False).returncode != 0
    assert left_in(plane, "doomed") == {}


def test_a_terminating_namespace_refuses_new_content_and_waits_for_every_finalizer(plane):
    status, ns = call(plane, "POST", "/api/v1/namespaces", {
        "metadata": {"name": "held"}, "spec": {"finalizers": ["kubernetes", "example.com/hold"]}})
    assert status == 201, ns
    call(plane, "POST", "/api/v1/namespaces/held/configmaps", {"metadata": {"name": "c"}})

    status, marked = call(plane, "DELETE", "/api/v1/namespaces/held")
    assert status == 200 and marked["status"]["phase"] == "Terminating"
    assert marked["metadata"].get("deletionTimestamp")
    status, refused = call(plane, "POST", "/api/v1/namespaces/held/configmaps",
                           {"metadata": {"name": "late"}})
    assert status == 403 and "being terminated" in refused["message"]

    # The controller empties it and removes only its own finalizer.
    def only_ours_left():
        status, now = call(plane, "GET", "/api/v1/namespaces/held")
        return status == 200 and now["spec"]["finalizers"] == ["example.com/hold"] and now
    now = poll(only_ours_left, 30, "the kubernetes finalizer to be removed")
    assert left_in(plane, "held") == {}

    now["spec"]["finalizers"] = []
    status, _ = call(plane, "PUT", "/api/v1/namespaces/held/finalize", now)
    assert status == 200
    assert call(plane, "GET", "/api/v1/namespaces/held")[0] == 404
