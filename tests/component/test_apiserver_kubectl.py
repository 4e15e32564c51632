"""kubectl 1.32 (the dispatcher at /usr/bin/kubectl) against the API server on a real
etcd 3.4, over HTTPS with a client certificate."""

import json
import os
import ssl
import subprocess
import threading
import urllib.error
import urllib.request

import pytest

from agents.apiserver import testing
from tests.conftest import need

pytestmark = pytest.mark.component

KUBECTL = "/usr/bin/kubectl"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    need(os.path.exists(testing.ETCD), "needs /usr/bin/etcd (Debian etcd-server)")
    need(os.path.exists(KUBECTL), "needs /usr/bin/kubectl")
    work = str(tmp_path_factory.mktemp("kubectl"))
    pki = testing.make_pki(work, {"admin": ("admin", ["system:masters"]),
                                  "alice": ("alice", []),
                                  "node1": ("system:node:n1", ["system:nodes"])})
    tokens = os.path.join(work, "tokens.csv")
    with open(tokens, "w") as fh:
        fh.write('admintoken,token-admin,1,"system:masters"\n')
    with testing.run_etcd(work, testing.etcd_command_from_env()) as etcd, testing.run_apiserver(
            work, etcd.endpoint, secure=True, extra_args=[
                "--tls-cert-file", pki.server_cert, "--tls-private-key-file", pki.server_key,
                "--client-ca-file", pki.ca, "--token-auth-file", tokens]) as api:
        yield Cluster(work, pki, api)


class Cluster:
    def __init__(self, work, pki, api):
        self.work, self.pki, self.api = work, pki, api
        self.home = os.path.join(work, "home")
        os.makedirs(self.home, exist_ok=True)
        self.kubeconfig = self.write_kubeconfig("admin", *pki.clients["admin"])

    def write_kubeconfig(self, name, cert=None, key=None, token=None):
        user = {"client-certificate": cert, "client-key": key} if cert else {"token": token}
        config = {"apiVersion": "v1", "kind": "Config", "current-context": "lab",
                  "clusters": [{"name": "lab", "cluster": {
                      "server": self.api.secure_url, "certificate-authority": self.pki.ca}}],
                  "users": [{"name": name, "user": user}],
                  "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": name,
                                                           "namespace": "default"}}]}
        path = os.path.join(self.work, f"kubeconfig-{name}")
        with open(path, "w") as fh:
            json.dump(config, fh)
        return path

    def kubectl(self, *args, stdin=None, check=True, kubeconfig=None):
        proc = subprocess.run(
            [KUBECTL, "--kubeconfig", kubeconfig or self.kubeconfig, "--cache-dir",
             os.path.join(self.work, "cache"), *args],
            input=stdin, capture_output=True, text=True, timeout=60,
            env={"HOME": self.home, "PATH": os.environ.get("PATH", "/usr/bin")})
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {proc.stderr}")
        return proc

    def watchers(self, resource):
        with urllib.request.urlopen(self.api.url + "/metrics", timeout=5) as resp:
            for line in resp.read().decode().splitlines():
                if line.startswith(f'apiserver_registered_watchers{{resource="{resource}"}}'):
                    return int(line.split()[-1])
        return 0

    def http(self, method, path, body=None, content_type="application/json"):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.api.url + path, data=data, method=method,
                                     headers={"Content-Type": content_type})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())


def out(proc):
    return proc.stdout


def test_version_and_cluster_info(cluster):
    assert "Server Version: v1.32" in out(cluster.kubectl("version"))
    assert "Kubernetes control plane is running at https://127.0.0.1" in out(
        cluster.kubectl("cluster-info"))


def test_generator_commands_send_protobuf_and_objects_land(cluster):
    k = cluster.kubectl
    assert "deployment.apps/gen created" in out(k("create", "deployment", "gen",
                                                   "--image=nginx:1.25", "--replicas=2",
                                                   "--port=80"))
    assert "namespace/team created" in out(k("create", "namespace", "team"))
    assert "service/gen created" in out(k("create", "service", "clusterip", "gen",
                                          "--tcp=80:8080"))
    assert "configmap/cfg created" in out(k("create", "configmap", "cfg", "--from-literal=a=b"))
    assert "secret/sec created" in out(k("create", "secret", "generic", "sec",
                                         "--from-literal=pw=hunter2"))
    assert "serviceaccount/robot created" in out(k("create", "serviceaccount", "robot"))
    d = json.loads(out(k("get", "deploy", "gen", "-o", "json")))
    assert d["spec"]["replicas"] == 2
    assert d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] == 80
    svc = json.loads(out(k("get", "svc", "gen", "-o", "json")))
    assert svc["spec"]["clusterIP"].startswith("10.96.0.")
    assert svc["spec"]["ports"][0]["targetPort"] == 8080
    assert json.loads(out(k("get", "secret", "sec", "-o", "json")))["data"] == {"pw": "aHVudGVyMg=="}
    assert json.loads(out(k("get", "cm", "cfg", "-o", "json")))["data"] == {"a": "b"}


def test_get_prints_server_side_tables(cluster):
    k = cluster.kubectl
    k("run", "tbl", "--image=busybox", "--", "sleep", "100")
    lines = out(k("get", "pods")).splitlines()
    assert lines[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert lines[1].split()[:4] == ["tbl", "0/1", "Pending", "0"]
    wide = out(k("get", "pods", "-o", "wide")).splitlines()[0].split()
    assert wide[5:7] == ["IP", "NODE"]
    assert "kube-system" in out(k("get", "ns"))
    all_ns = out(k("get", "svc", "-A")).splitlines()
    assert all_ns[0].split()[:3] == ["NAMESPACE", "NAME", "TYPE"]
    assert any(line.split()[:2] == ["default", "kubernetes"] for line in all_ns)
    assert "name: tbl" in out(k("get", "pod", "tbl", "-o", "yaml"))
    assert json.loads(out(k("get", "pod", "tbl", "-o", "json")))["kind"] == "Pod"


MANIFEST = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
  labels: {app: app}
spec:
  replicas: REPLICAS
  selector:
    matchLabels: {app: app}
  template:
    metadata:
      labels: {app: app}
    spec:
      containers:
      - name: main
        image: busybox:1.36
        env:
        - {name: A, value: "VALUE"}
        ports:
        - containerPort: 80
      - name: side
        image: busybox:1.36
"""


def manifest(replicas=1, value="1"):
    return MANIFEST.replace("REPLICAS", str(replicas)).replace("VALUE", value)


def test_apply_create_change_unchanged_and_server_side(cluster):
    k = cluster.kubectl
    assert "deployment.apps/app created" in out(k("apply", "-f", "-", stdin=manifest()))
    assert "deployment.apps/app unchanged" in out(k("apply", "-f", "-", stdin=manifest()))
    assert "deployment.apps/app configured" in out(k("apply", "-f", "-",
                                                     stdin=manifest(value="2")))
    assert "deployment.apps/app unchanged" in out(k("apply", "-f", "-",
                                                    stdin=manifest(value="2")))
    d = json.loads(out(k("get", "deploy", "app", "-o", "json")))
    containers = d["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["main", "side"]
    assert containers[0]["env"] == [{"name": "A", "value": "2"}]
    assert d["metadata"]["generation"] == 2
    # replicas was set by client-side apply: taking it over needs --force-conflicts
    proc = k("apply", "--server-side", "-f", "-", stdin=manifest(replicas=3, value="2"),
             check=False)
    assert proc.returncode != 0
    assert 'conflict with "kubectl-client-side-apply" using apps/v1: .spec.replicas' in proc.stderr
    assert json.loads(out(k("get", "deploy", "app", "-o", "json")))["spec"]["replicas"] == 1
    assert "serverside-applied" in out(k("apply", "--server-side", "--force-conflicts", "-f",
                                         "-", stdin=manifest(replicas=3, value="2")))
    assert "serverside-applied" in out(k("apply", "--server-side", "-f", "-",
                                         stdin=manifest(replicas=3, value="2")))
    d = json.loads(out(k("get", "deploy", "app", "-o", "json", "--show-managed-fields")))
    assert d["spec"]["replicas"] == 3
    assert any(m["manager"] == "kubectl" and m["operation"] == "Apply"
               for m in d["metadata"]["managedFields"])


def test_apply_strict_validation_rejects_unknown_fields(cluster):
    proc = cluster.kubectl("apply", "-f", "-", check=False, stdin=(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: strict}\nbogus: 1\n"))
    assert proc.returncode != 0
    assert 'unknown field "bogus"' in proc.stderr
    assert cluster.kubectl("get", "cm", "strict", check=False).returncode != 0


def test_scale_label_annotate_and_three_patch_types(cluster):
    k = cluster.kubectl
    k("create", "deployment", "pat", "--image=nginx:1")
    assert "scaled" in out(k("scale", "deploy", "pat", "--replicas=4"))
    assert "scaled" in out(k("scale", "deploy", "pat", "--current-replicas=4", "--replicas=5"))
    assert k("scale", "deploy", "pat", "--current-replicas=9", "--replicas=1",
             check=False).returncode != 0
    k("label", "deploy", "pat", "tier=front")
    k("annotate", "deploy", "pat", "note=hello")
    k("patch", "deploy", "pat", "-p",
      '{"spec":{"template":{"spec":{"containers":[{"name":"nginx","image":"nginx:2"}]}}}}')
    k("patch", "deploy", "pat", "--type=merge", "-p", '{"metadata":{"labels":{"m":"1"}}}')
    k("patch", "deploy", "pat", "--type=json", "-p",
      '[{"op":"add","path":"/metadata/annotations/j","value":"2"}]')
    d = json.loads(out(k("get", "deploy", "pat", "-o", "json")))
    assert d["spec"]["replicas"] == 5
    assert d["metadata"]["labels"] == {"app": "pat", "tier": "front", "m": "1"}
    assert d["metadata"]["annotations"] == {"note": "hello", "j": "2"}
    assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:2"
    assert "pat" in out(k("get", "deploy", "-l", "tier in (front),m=1"))
    assert "pat" not in out(k("get", "deploy", "-l", "tier!=front"))


def test_rollout_status_follows_status_written_by_a_controller(cluster):
    k = cluster.kubectl
    k("create", "deployment", "roll", "--image=nginx:1", "--replicas=2")
    proc = subprocess.Popen(
        [KUBECTL, "--kubeconfig", cluster.kubeconfig, "--cache-dir",
         os.path.join(cluster.work, "cache"), "rollout", "status", "deploy/roll",
         "--timeout=30s"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={"HOME": cluster.home})
    try:
        testing.wait_for(lambda: cluster.watchers("deployments") > 0, 20,
                         "kubectl rollout status to watch")
        gen = cluster.http("GET", "/apis/apps/v1/namespaces/default/deployments/roll")[
            "metadata"]["generation"]
        cluster.http("PATCH", "/apis/apps/v1/namespaces/default/deployments/roll/status", {
            "status": {"observedGeneration": gen, "replicas": 2, "updatedReplicas": 2,
                       "readyReplicas": 2, "availableReplicas": 2, "conditions": [
                           {"type": "Available", "status": "True"},
                           {"type": "Progressing", "status": "True",
                            "reason": "NewReplicaSetAvailable"}]}},
            content_type="application/merge-patch+json")
        stdout, stderr = proc.communicate(timeout=40)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    assert 'deployment "roll" successfully rolled out' in stdout
    assert "2/2" in out(k("get", "deploy", "roll"))


def test_get_watch_streams_table_rows(cluster):
    proc = subprocess.Popen(
        [KUBECTL, "--kubeconfig", cluster.kubeconfig, "--cache-dir",
         os.path.join(cluster.work, "cache"), "get", "cm", "--watch", "--request-timeout=30s"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={"HOME": cluster.home})
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        testing.wait_for(lambda: cluster.watchers("configmaps") > 0, 20,
                         "kubectl get --watch to start watching")
        cluster.kubectl("create", "configmap", "watched", "--from-literal=x=y")
        testing.wait_for(lambda: any(line.split()[:2] == ["watched", "1"] for line in lines),
                         20, "the watched configmap's row")
    finally:
        proc.kill()
        proc.wait()
        reader.join(5)
    assert lines[0].split()[:2] == ["NAME", "DATA"]


def test_describe_shows_events_and_delete_is_graceful_for_bound_pods(cluster):
    k = cluster.kubectl
    k("run", "grace", "--image=busybox", "--", "sleep", "100")
    pod = cluster.http("GET", "/api/v1/namespaces/default/pods/grace")
    cluster.http("POST", "/api/v1/namespaces/default/pods/grace/binding", {
        "apiVersion": "v1", "kind": "Binding", "metadata": {"name": "grace"},
        "target": {"kind": "Node", "name": "n1"}})
    cluster.http("POST", "/api/v1/namespaces/default/events", {
        "metadata": {"name": "grace.1"}, "type": "Normal", "reason": "Scheduled",
        "message": "Successfully assigned default/grace to n1",
        "involvedObject": {"kind": "Pod", "name": "grace", "namespace": "default",
                           "uid": pod["metadata"]["uid"]}})
    described = out(k("describe", "pod", "grace"))
    assert "Node:" in described and "n1" in described
    assert "Successfully assigned default/grace to n1" in described
    assert 'pod "grace" deleted' in out(k("delete", "pod", "grace", "--wait=false"))
    assert "Terminating" in out(k("get", "pod", "grace"))
    k("delete", "pod", "grace", "--grace-period=0", "--force")
    assert k("get", "pod", "grace", check=False).returncode != 0


def test_delete_deployment_and_namespace(cluster):
    k = cluster.kubectl
    k("create", "deployment", "gone", "--image=nginx")
    assert 'deployment.apps "gone" deleted' in out(k("delete", "deploy", "gone"))
    k("create", "namespace", "scratch")
    k("create", "configmap", "inside", "-n", "scratch", "--from-literal=a=b")
    # No namespace controller runs here: the namespace stays Terminating (finalizer
    # `kubernetes`) until its contents are gone and the finalizer is removed, which is the
    # controller's job; do it by hand as it would.
    assert 'namespace "scratch" deleted' in out(k("delete", "ns", "scratch", "--wait=false"))
    assert "Terminating" in out(k("get", "ns", "scratch"))
    k("delete", "cm", "inside", "-n", "scratch")
    ns = json.loads(out(k("get", "ns", "scratch", "-o", "json")))
    ns["spec"]["finalizers"] = []
    k("replace", "--raw", "/api/v1/namespaces/scratch/finalize", "-f", "-", stdin=json.dumps(ns))
    assert k("get", "ns", "scratch", check=False).returncode != 0


def test_auth_failures(cluster):
    bad = cluster.write_kubeconfig("bad", token="wrong-token")
    proc = cluster.kubectl("get", "pods", kubeconfig=bad, check=False)
    assert proc.returncode != 0 and "You must be logged in to the server" in proc.stderr
    good = cluster.write_kubeconfig("tok", token="admintoken")
    assert "kubernetes" in out(cluster.kubectl("get", "svc", kubeconfig=good))
    alice = cluster.write_kubeconfig("alice", *cluster.pki.clients["alice"])
    proc = cluster.kubectl("get", "secrets", kubeconfig=alice, check=False)
    assert proc.returncode != 0
    assert 'User "alice" cannot list resource "secrets"' in proc.stderr
    assert cluster.kubectl("auth", "can-i", "list", "secrets").stdout.strip() == "yes"
    proc = cluster.kubectl("auth", "can-i", "list", "secrets", kubeconfig=alice, check=False)
    assert (proc.returncode, proc.stdout.strip()) == (1, "no")


def test_node_identity_may_only_touch_its_own_node_and_pods(cluster):
    ctx = ssl.create_default_context(cafile=cluster.pki.ca)
    ctx.load_cert_chain(*cluster.pki.clients["node1"])

    def node_call(method, path, body=None, content_type="application/json"):
        req = urllib.request.Request(cluster.api.secure_url + path, method=method,
                                     data=json.dumps(body).encode() if body else None,
                                     headers={"Content-Type": content_type})
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
                return resp.status
        except urllib.error.HTTPError as err:
            return err.code

    cluster.http("POST", "/api/v1/nodes", {"metadata": {"name": "n2"}})
    assert node_call("POST", "/api/v1/nodes", {"metadata": {"name": "n3"}}) == 403
    assert node_call("POST", "/api/v1/nodes", {"metadata": {"name": "n1"}}) == 201
    status = {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    merge = "application/merge-patch+json"
    assert node_call("PATCH", "/api/v1/nodes/n1/status", status, merge) == 200
    assert node_call("PATCH", "/api/v1/nodes/n2/status", status, merge) == 403
    for name, node in (("mine", "n1"), ("theirs", "n2")):
        cluster.http("POST", "/api/v1/namespaces/default/pods", {
            "metadata": {"name": name}, "spec": {"nodeName": node, "containers": [
                {"name": "c", "image": "i"}]}})
    running = {"status": {"phase": "Running"}}
    assert node_call("PATCH", "/api/v1/namespaces/default/pods/mine/status", running, merge) == 200
    assert node_call("PATCH", "/api/v1/namespaces/default/pods/theirs/status", running,
                     merge) == 403
    assert node_call("GET", "/api/v1/pods?fieldSelector=spec.nodeName%3Dn1") == 200
    assert node_call("DELETE", "/apis/apps/v1/namespaces/default/deployments/x") == 403
    assert node_call("GET", "/version") == 200
