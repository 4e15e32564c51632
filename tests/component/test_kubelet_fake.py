"""The kubelet against a real etcd 3.4 + our API server, with the FakeRuntime: node
registration and lease, pod lifecycle and status, back-off, image errors, graceful
deletion, probes, restart adoption, and `kubectl logs` / `kubectl exec` through the API
server's proxy to the kubelet's HTTPS API."""

import fcntl
import json
import os
import struct
import subprocess
import termios
import time
import urllib.error
import urllib.request

import pytest

from agents.apiserver import testing
from agents.kube.client import KubeClient
from agents.kubelet.config import KubeletConfig
from agents.kubelet.kubelet import Kubelet
from agents.kubelet.testing import FakeProcess, FakeRuntime, KubeletThread, node_cert
from tests.conftest import need

pytestmark = pytest.mark.component

KUBECTL = "/usr/bin/kubectl"


def wait_until(predicate, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.05)
    what = what() if callable(what) else what  # a callable describes the state at the end
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class Cluster:
    def __init__(self, work, pki, api, node_certs):
        self.work, self.pki, self.api, self.node_certs = work, pki, api, node_certs
        self.home = os.path.join(work, "home")
        os.makedirs(self.home, exist_ok=True)
        self.kubeconfig = self.write_kubeconfig("admin", *pki.clients["admin"])

    def write_kubeconfig(self, name, cert, key):
        config = {"apiVersion": "v1", "kind": "Config", "current-context": "lab",
                  "clusters": [{"name": "lab", "cluster": {
                      "server": self.api.secure_url, "certificate-authority": self.pki.ca}}],
                  "users": [{"name": name, "user": {"client-certificate": cert,
                                                    "client-key": key}}],
                  "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": name,
                                                           "namespace": "default"}}]}
        path = os.path.join(self.work, f"kubeconfig-{name}")
        with open(path, "w") as fh:
            json.dump(config, fh)
        return path

    def kubectl(self, *args, check=True, timeout=60):
        proc = subprocess.run(
            [KUBECTL, "--kubeconfig", self.kubeconfig, "--cache-dir",
             os.path.join(self.work, "cache"), *args],
            capture_output=True, text=True, timeout=timeout,
            env={"HOME": self.home, "PATH": os.environ.get("PATH", "/usr/bin")})
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {proc.stderr}")
        return proc

    def http(self, method, path, body=None, content_type="application/json"):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.api.url + path, data=data, method=method,
                                     headers={"Content-Type": content_type})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def get(self, path):
        try:
            return self.http("GET", path)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise

    def pod(self, name, ns="default"):
        return self.get(f"/api/v1/namespaces/{ns}/pods/{name}")

    def create_pod(self, name, node, containers, ns="default", **spec):
        body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                "spec": {"nodeName": node, "containers": containers, **spec}}
        return self.http("POST", f"/api/v1/namespaces/{ns}/pods", body)

    def events(self, name):
        items = self.http("GET", "/api/v1/namespaces/default/events")["items"]
        return [(e["reason"], e["message"]) for e in items
                if e["involvedObject"]["name"] == name]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    need(os.path.exists(testing.ETCD), "needs /usr/bin/etcd (Debian etcd-server)")
    work = str(tmp_path_factory.mktemp("kubelet"))
    pki = testing.make_pki(work, {
        "admin": ("admin", ["system:masters"]),
        "kubelet-client": ("kube-apiserver-kubelet-client", ["system:masters"])})
    certs = {n: node_cert(work, pki.ca, os.path.join(work, "ca.key"), n)
             for n in ("n1", "n2", "n3")}
    kc_cert, kc_key = pki.clients["kubelet-client"]
    with testing.run_etcd(work, testing.etcd_command_from_env()) as etcd, \
            testing.run_apiserver(work, etcd.endpoint, secure=True, extra_args=[
                "--tls-cert-file", pki.server_cert, "--tls-private-key-file", pki.server_key,
                "--client-ca-file", pki.ca, "--kubelet-client-certificate", kc_cert,
                "--kubelet-client-key", kc_key,
                "--kubelet-certificate-authority", pki.ca]) as api:
        yield Cluster(work, pki, api, certs)


def start_kubelet(cluster, node, runtime, **overrides):
    cert, key = cluster.node_certs[node]
    kubeconfig = cluster.write_kubeconfig(f"node-{node}", cert, key)
    state = os.path.join(cluster.work, f"state-{node}")
    cfg = KubeletConfig(kubeconfig=kubeconfig, node_name=node, node_ip="127.0.0.1", port=0,
                        tls_cert_file=cert, tls_key_file=key, client_ca_file=cluster.pki.ca,
                        pod_log_dir=runtime.log_root, state_dir=state,
                        lease_renew_seconds=0.5, backoff_initial_seconds=0.5,
                        backoff_max_seconds=2, resync_seconds=2, **overrides)

    async def make():
        api = KubeClient.from_kubeconfig(kubeconfig, user_agent=f"kubelet/{node}")
        return Kubelet(cfg, api, lambda cidr: runtime, relist_period=0.2)
    return KubeletThread(make).start()


def set_pod_cidr(cluster, node, cidr):
    wait_until(lambda: cluster.get(f"/api/v1/nodes/{node}"), what=f"node {node} registered")
    cluster.http("PATCH", f"/api/v1/nodes/{node}", {"spec": {"podCIDR": cidr,
                                                             "podCIDRs": [cidr]}},
                 "application/merge-patch+json")


def behaviour(config):
    """What the fake containers do, by their command line."""
    line = " ".join(list(config.command) + list(config.args))
    if "crash" in line:
        return FakeProcess([("stderr", "crashing")], exit_code=1)
    if "finish" in line:
        return FakeProcess([("stdout", "done")], exit_code=0)
    if "stubborn" in line:
        return FakeProcess(ignores_sigterm=True)
    return FakeProcess([("stdout", f"hello from {config.name}"),
                        ("stderr", "a warning"), ("stdout", "second line")])


@pytest.fixture(scope="module")
def n1(cluster):
    runtime = FakeRuntime(os.path.join(cluster.work, "logs-n1"),
                          images={"lab/busybox:latest", "lab/python:latest"},
                          on_start=behaviour)
    thread = start_kubelet(cluster, "n1", runtime)
    try:
        set_pod_cidr(cluster, "n1", "10.244.1.0/24")
        wait_until(lambda: thread.kubelet.ready, what="runtime ready")
        yield thread, runtime
    finally:
        thread.stop()


def has_event(cluster, pod, reason, message=None, prefix=None):
    """Events are written in the background: wait for this one."""
    def seen():
        return any(r == reason and (message is None or m == message)
                   and (prefix is None or m.startswith(prefix))
                   for r, m in cluster.events(pod))
    wait_until(seen, what=f"event {reason} {message or prefix or ''} for {pod}")
    return True


def phase_is(cluster, name, phase):
    def check():
        pod = cluster.pod(name)
        return pod if pod and pod.get("status", {}).get("phase") == phase else None
    return check


def container_state(pod, name=None):
    statuses = pod.get("status", {}).get("containerStatuses") or []
    for s in statuses:
        if name is None or s["name"] == name:
            return s
    return {}


def test_node_registers_ready_with_host_facts_and_renews_its_lease(cluster, n1):
    thread, _ = n1
    node = wait_until(lambda: (lambda n: n if any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in n.get("status", {}).get("conditions", [])) else None)(
            cluster.get("/api/v1/nodes/n1")), what="node n1 Ready")
    status = node["status"]
    assert status["capacity"]["cpu"] == str(os.cpu_count())
    assert status["capacity"]["pods"] == "110"
    assert status["daemonEndpoints"]["kubeletEndpoint"]["Port"] == thread.kubelet.port
    assert {"type": "InternalIP", "address": "127.0.0.1"} in status["addresses"]
    assert all(status["nodeInfo"].values())
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == "n1"
    lease = cluster.get("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1")
    first = lease["spec"]["renewTime"]
    wait_until(lambda: cluster.get("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease"
                                   "/leases/n1")["spec"]["renewTime"] != first,
               what="the lease to be renewed")


def test_kubernetes_python_client_reads_the_node(cluster, n1):
    from kubernetes import client as k8s
    conf = k8s.Configuration()
    conf.host = cluster.api.url
    api = k8s.CoreV1Api(k8s.ApiClient(conf))
    node = api.read_node("n1")
    assert node.status.node_info.kubelet_version.startswith("v1.32")


def test_pod_runs_with_full_status(cluster, n1):
    _, runtime = n1
    cluster.http("POST", "/api/v1/namespaces/default/configmaps",
                 {"metadata": {"name": "cfg"}, "data": {"color": "blue"}})
    cluster.create_pod("web", "n1", [{
        "name": "app", "image": "lab/busybox", "command": ["sleep", "3600"],
        "env": [{"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": "cfg",
                                                                    "key": "color"}}},
                {"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
        "resources": {"limits": {"cpu": "200m", "memory": "64Mi"}},
        "volumeMounts": [{"name": "conf", "mountPath": "/etc/conf"}]}],
        volumes=[{"name": "conf", "configMap": {"name": "cfg"}}])
    pod = wait_until(phase_is(cluster, "web", "Running"), what="web Running")
    pod = wait_until(lambda: (lambda p: p if container_state(p).get("ready") else None)(
        cluster.pod("web")), what="web ready")
    status = pod["status"]
    assert status["podIP"].startswith("10.244.1.") and status["hostIP"] == "127.0.0.1"
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "PodReadyToStartContainers": "True", "Initialized": "True", "Ready": "True",
        "ContainersReady": "True", "PodScheduled": "True"}
    c = container_state(pod)
    assert c["started"] and c["restartCount"] == 0 and "running" in c["state"]
    assert c["containerID"].startswith("lab://") and c["image"] == "lab/busybox"
    assert c["imageID"].startswith("lab://sha256:")  # the image's id in the node's store
    assert status["startTime"]
    (created,) = [call[2] for call in runtime.calls if call[0] == "create_container"
                  and call[2].labels["io.kubernetes.pod.name"] == "web"]
    env = dict(created.env)
    assert env["COLOR"] == "blue" and env["MY_IP"] == status["podIP"]
    assert created.cpu_millis == 200 and created.memory_limit_bytes == 64 << 20
    (mount,) = created.mounts
    with open(os.path.join(mount.host_path, "color")) as fh:
        assert fh.read() == "blue"
    for reason in ("Pulled", "Created", "Started"):
        assert has_event(cluster, "web", reason)


def test_unchanged_pod_status_is_not_rewritten(cluster, n1):
    thread, _ = n1
    pod = wait_until(lambda: (lambda p: p if container_state(p).get("ready") else None)(
        cluster.pod("web")), what="web ready")
    syncs = thread.kubelet.metrics["syncs"]
    wait_until(lambda: thread.kubelet.metrics["syncs"] >= syncs + 3, what="three more syncs")
    assert cluster.pod("web")["metadata"]["resourceVersion"] == \
        pod["metadata"]["resourceVersion"], "the kubelet rewrote an unchanged status"


def test_crashing_container_goes_into_crash_loop_backoff(cluster, n1):
    cluster.create_pod("crasher", "n1", [{"name": "app", "image": "lab/busybox",
                                          "command": ["crash"]}])

    def looping():
        c = container_state(cluster.pod("crasher"))
        waiting = c.get("state", {}).get("waiting", {})
        return c if waiting.get("reason") == "CrashLoopBackOff" and \
            c.get("restartCount", 0) >= 2 else None
    c = wait_until(looping, what="CrashLoopBackOff with restarts")
    assert c["lastState"]["terminated"]["exitCode"] == 1
    assert c["lastState"]["terminated"]["reason"] == "Error"
    assert has_event(cluster, "crasher", "BackOff",
                     "Back-off restarting failed container app in pod crasher")


def test_missing_image_gives_err_image_pull_then_image_pull_backoff(cluster, n1):
    _, runtime = n1
    cluster.create_pod("noimage", "n1", [{"name": "app", "image": "lab/nothere:1"}])
    seen = set()

    def reasons():
        c = container_state(cluster.pod("noimage"))
        seen.add(c.get("state", {}).get("waiting", {}).get("reason"))
        return {"ErrImagePull", "ImagePullBackOff"} <= seen
    wait_until(reasons, what=lambda: f"ErrImagePull and ImagePullBackOff (seen {seen})")
    assert cluster.pod("noimage")["status"]["phase"] == "Pending"
    runtime.add_image("lab/nothere:1")  # a user adds the image to the store
    wait_until(phase_is(cluster, "noimage", "Running"), what="running once the image is there")


def test_completed_pod_succeeds(cluster, n1):
    cluster.create_pod("job", "n1", [{"name": "app", "image": "lab/busybox",
                                      "command": ["finish"]}], restartPolicy="Never")
    pod = wait_until(phase_is(cluster, "job", "Succeeded"), what="job Succeeded")
    term = container_state(pod)["state"]["terminated"]
    assert term["exitCode"] == 0 and term["reason"] == "Completed"


def test_init_container_runs_before_the_app(cluster, n1):
    _, runtime = n1
    cluster.create_pod("inited", "n1", [{"name": "app", "image": "lab/busybox"}],
                       initContainers=[{"name": "setup", "image": "lab/busybox",
                                        "command": ["finish"]}])
    pod = wait_until(phase_is(cluster, "inited", "Running"), what="inited Running")
    init = pod["status"]["initContainerStatuses"][0]
    assert init["state"]["terminated"]["exitCode"] == 0 and init["ready"]
    order = [call[2].name for call in runtime.calls if call[0] == "create_container"
             and call[2].labels["io.kubernetes.pod.name"] == "inited"]
    assert order == ["setup", "app"]


def test_failing_liveness_probe_restarts_the_container(cluster, n1):
    _, runtime = n1
    cluster.create_pod("sick", "n1", [{
        "name": "app", "image": "lab/busybox",
        "livenessProbe": {"exec": {"command": ["false"]}, "periodSeconds": 1,
                          "failureThreshold": 2},
        "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1}}],
        terminationGracePeriodSeconds=1)
    c = wait_until(lambda: (lambda s: s if s.get("restartCount", 0) >= 1 else None)(
        container_state(cluster.pod("sick"))), timeout=30, what="a liveness restart")
    assert c["lastState"]["terminated"]
    assert has_event(cluster, "sick", "Unhealthy", prefix="Liveness probe failed")
    assert has_event(cluster, "sick", "Killing",
                     "Container app failed liveness probe, will be restarted")


def test_readiness_probe_gates_ready(cluster, n1):
    _, runtime = n1
    cluster.create_pod("gated", "n1", [{
        "name": "app", "image": "lab/busybox",
        "readinessProbe": {"exec": {"command": ["false"]},
                           "periodSeconds": 1}}])
    wait_until(phase_is(cluster, "gated", "Running"), what="gated Running")
    pod = cluster.pod("gated")
    assert not container_state(pod)["ready"], json.dumps(pod["status"], indent=1)
    gate = os.path.join(cluster.work, "gate-open")
    runtime.exec_handler = lambda cid, argv: (
        (0, b"", b"") if os.path.exists(gate) else (1, b"", b"closed"))
    try:
        open(gate, "w").close()
        wait_until(lambda: container_state(cluster.pod("gated")).get("ready"),
                   what="ready once the probe passes")
    finally:
        runtime.exec_handler = None


def test_deletion_stops_with_the_grace_period_then_removes_the_pod(cluster, n1):
    _, runtime = n1
    cluster.create_pod("slow", "n1", [{"name": "app", "image": "lab/busybox",
                                       "command": ["stubborn"]}],
                       terminationGracePeriodSeconds=1)
    wait_until(phase_is(cluster, "slow", "Running"), what="slow Running")
    (cid,) = [c.id for c in runtime.find("slow", "app")]
    uid = cluster.pod("slow")["metadata"]["uid"]
    os.makedirs(os.path.join(runtime.log_root, f"default_slow_{uid}", "app"), exist_ok=True)
    started = time.monotonic()
    cluster.http("DELETE", "/api/v1/namespaces/default/pods/slow", {})
    wait_until(lambda: cluster.pod("slow") is None, what="the pod object gone")
    elapsed = time.monotonic() - started
    assert ("stop_container", cid, 1) in runtime.calls
    assert elapsed >= 1.0, "the container was not given its grace period"
    assert runtime.find("slow", "app") == []
    assert not any(s.name == "slow" for s in runtime.list_pod_sandboxes())
    leftovers = [d for d in os.listdir(runtime.log_root) if d.startswith("default_slow_")] \
        if os.path.isdir(runtime.log_root) else []
    assert leftovers == [], f"the pod's log directory outlived it: {leftovers}"


def test_kubectl_logs_and_exec_through_the_api_server(cluster, n1):
    need(os.path.exists(KUBECTL), "needs /usr/bin/kubectl")
    cluster.create_pod("talk", "n1", [{"name": "app", "image": "lab/busybox"}])
    wait_until(phase_is(cluster, "talk", "Running"), what="talk Running")
    out = cluster.kubectl("logs", "talk").stdout
    assert out == "hello from app\na warning\nsecond line\n"
    assert cluster.kubectl("logs", "talk", "--tail=1").stdout == "second line\n"
    stamped = cluster.kubectl("logs", "talk", "--timestamps").stdout.splitlines()
    assert stamped[0].endswith("Z hello from app") and stamped[0][:4].isdigit()
    assert cluster.kubectl("logs", "talk", "--limit-bytes=5").stdout == "hello"
    proc = cluster.kubectl("exec", "talk", "--", "sh", "-c", "echo out; echo err >&2; exit 3",
                           check=False)
    assert proc.stdout == "out\n" and "err" in proc.stderr and proc.returncode == 3
    proc = cluster.kubectl("exec", "-i", "talk", "--", "cat", check=False)
    assert proc.returncode == 0


def test_kubectl_exec_stdin_and_tty(cluster, n1):
    need(os.path.exists(KUBECTL), "needs /usr/bin/kubectl")
    cluster.create_pod("shell", "n1", [{"name": "app", "image": "lab/busybox"}])
    wait_until(phase_is(cluster, "shell", "Running"), what="shell Running")
    proc = subprocess.run(
        [KUBECTL, "--kubeconfig", cluster.kubeconfig, "--cache-dir",
         os.path.join(cluster.work, "cache"), "exec", "-i", "shell", "--", "tr", "a-z", "A-Z"],
        input="shout\n", capture_output=True, text=True, timeout=60,
        env={"HOME": cluster.home, "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "SHOUT\n"
    # -it from a terminal: the command runs on a pseudo-terminal of the kubelet's.
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 99, 0, 0))
    tty = subprocess.Popen(
        [KUBECTL, "--kubeconfig", cluster.kubeconfig, "--cache-dir",
         os.path.join(cluster.work, "cache"), "exec", "-it", "shell", "--",
         "sh", "-c", "tty; stty size; exit 5"],
        stdin=slave, stdout=slave, stderr=slave, close_fds=True,
        env={"HOME": cluster.home, "PATH": "/usr/bin:/bin", "TERM": "dumb"})
    os.close(slave)
    output = b""
    try:
        assert tty.wait(60) == 5
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
    finally:
        if tty.poll() is None:
            tty.kill()
            tty.wait()
        os.close(master)
    assert b"/dev/pts/" in output, output
    assert b"33 99" in output, f"the terminal size was not passed on: {output!r}"


def test_kubectl_logs_follow_streams_until_the_container_ends(cluster, n1):
    need(os.path.exists(KUBECTL), "needs /usr/bin/kubectl")
    _, runtime = n1
    cluster.create_pod("chatty", "n1", [{"name": "app", "image": "lab/busybox"}])
    wait_until(phase_is(cluster, "chatty", "Running"), what="chatty Running")
    (c,) = runtime.find("chatty", "app")
    follow = subprocess.Popen(
        [KUBECTL, "--kubeconfig", cluster.kubeconfig, "--cache-dir",
         os.path.join(cluster.work, "cache"), "logs", "-f", "chatty"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={"HOME": cluster.home, "PATH": "/usr/bin:/bin"})
    try:
        assert follow.stdout.readline() == "hello from app\n"
        runtime.write_log(c.id, "late line")
        lines = [follow.stdout.readline() for _ in range(3)]
        assert lines == ["a warning\n", "second line\n", "late line\n"]
        runtime.exit(c.id, 0)
        assert follow.wait(20) == 0
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()


def test_kubelet_api_requires_a_client_certificate(cluster, n1):
    import ssl
    thread, _ = n1
    ctx = ssl.create_default_context(cafile=cluster.pki.ca)
    base = f"https://127.0.0.1:{thread.kubelet.port}"
    with urllib.request.urlopen(base + "/healthz", context=ctx, timeout=5) as resp:
        assert resp.read() == b"ok"
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(base + "/containerLogs/default/talk/app", context=ctx,
                               timeout=5)
    assert err.value.code == 401
    cert, key = cluster.pki.clients["kubelet-client"]
    ctx.load_cert_chain(cert, key)
    with urllib.request.urlopen(base + "/metrics", context=ctx, timeout=5) as resp:
        text = resp.read().decode()
    assert "kubelet_containers_started_total " in text and "kubelet_ready 1" in text


def test_previous_logs_after_a_restart(cluster, n1):
    need(os.path.exists(KUBECTL), "needs /usr/bin/kubectl")
    cluster.create_pod("twice", "n1", [{"name": "app", "image": "lab/busybox",
                                        "command": ["crash"]}])
    wait_until(lambda: container_state(cluster.pod("twice")).get("restartCount", 0) >= 1,
               what="a restart")
    assert cluster.kubectl("logs", "twice", "--previous").stdout == "crashing\n"


def test_restarted_kubelet_adopts_running_containers(cluster):
    runtime = FakeRuntime(os.path.join(cluster.work, "logs-n2"), on_start=behaviour)
    first = start_kubelet(cluster, "n2", runtime, pod_cidr="10.244.2.0/24")
    try:
        cluster.create_pod("keeper", "n2", [{"name": "app", "image": "lab/busybox"}])
        wait_until(phase_is(cluster, "keeper", "Running"), what="keeper Running")
        before = [(c.id, c.state) for c in runtime.find("keeper", "app")]
    finally:
        first.stop()
    starts = sum(1 for call in runtime.calls if call[0] == "start_container")
    second = start_kubelet(cluster, "n2", runtime, pod_cidr="10.244.2.0/24")
    try:
        wait_until(lambda: second.kubelet.metrics["syncs"] > 0, what="the new kubelet syncing")
        cluster.http("PATCH", "/api/v1/namespaces/default/pods/keeper",
                     {"metadata": {"labels": {"poke": "1"}}}, "application/merge-patch+json")
        wait_until(lambda: second.kubelet.metrics["syncs"] > 2, what="more syncs")
        assert [(c.id, c.state) for c in runtime.find("keeper", "app")] == before
        assert sum(1 for call in runtime.calls if call[0] == "start_container") == starts
        assert container_state(cluster.pod("keeper"))["restartCount"] == 0
        # A pod deleted while no kubelet ran is cleaned up as an orphan.
    finally:
        second.stop()


def test_orphaned_sandbox_is_removed(cluster):
    runtime = FakeRuntime(os.path.join(cluster.work, "logs-n3"), on_start=behaviour)
    thread = start_kubelet(cluster, "n3", runtime, pod_cidr="10.244.3.0/24")
    try:
        cluster.create_pod("ghost", "n3", [{"name": "app", "image": "lab/busybox"}])
        wait_until(phase_is(cluster, "ghost", "Running"), what="ghost Running")
        thread.stop()
        # Force-delete while the kubelet is down (grace 0 deletes at once).
        cluster.http("DELETE", "/api/v1/namespaces/default/pods/ghost",
                     {"gracePeriodSeconds": 0})
        assert runtime.find("ghost", "app", state="running")
        thread = start_kubelet(cluster, "n3", runtime, pod_cidr="10.244.3.0/24")
        wait_until(lambda: not runtime.list_pod_sandboxes(), what="the orphan removed")
    finally:
        thread.stop()


def test_many_pods_start_and_report_running(cluster, n1):
    """30 pods bound at once all reach Running; prints the created → Running latency."""
    names = [f"bulk-{i}" for i in range(30)]
    created = {}
    for name in names:
        created[name] = time.time()
        cluster.create_pod(name, "n1", [{"name": "app", "image": "lab/busybox"}])
    running = {}
    deadline = time.monotonic() + 60
    while len(running) < len(names) and time.monotonic() < deadline:
        items = cluster.http("GET", "/api/v1/namespaces/default/pods")["items"]
        for pod in items:
            name = pod["metadata"]["name"]
            if name in created and name not in running and \
                    pod.get("status", {}).get("phase") == "Running":
                running[name] = time.time()
        time.sleep(0.05)
    assert len(running) == len(names), f"only {len(running)} of {len(names)} Running"
    latencies = sorted(running[n] - created[n] for n in names)
    print(f"created → Running over {len(names)} pods: p50 {latencies[len(names) // 2]:.3f}s "
          f"p99 {latencies[-1]:.3f}s")
    for name in names:
        cluster.http("DELETE", f"/api/v1/namespaces/default/pods/{name}",
                     {"gracePeriodSeconds": 0})


def test_oom_kill_is_reported_and_fails_a_never_pod(cluster, n1):
    _, runtime = n1
    cluster.create_pod("hog", "n1", [{"name": "app", "image": "lab/busybox"}],
                       restartPolicy="Never")
    wait_until(phase_is(cluster, "hog", "Running"), what="hog Running")
    (c,) = runtime.find("hog", "app")
    runtime.oom(c.id)
    pod = wait_until(phase_is(cluster, "hog", "Failed"), what="hog Failed")
    term = container_state(pod)["state"]["terminated"]
    assert (term["reason"], term["exitCode"]) == ("OOMKilled", 137)
    assert not container_state(pod)["ready"]


def test_missing_configmap_gives_create_container_config_error(cluster, n1):
    cluster.create_pod("unconfigured", "n1", [{
        "name": "app", "image": "lab/busybox",
        "envFrom": [{"configMapRef": {"name": "later"}}]}])

    def waiting_reason():
        c = container_state(cluster.pod("unconfigured"))
        return c.get("state", {}).get("waiting", {}).get("reason")
    wait_until(lambda: waiting_reason() == "CreateContainerConfigError",
               what="CreateContainerConfigError")
    cluster.http("POST", "/api/v1/namespaces/default/configmaps",
                 {"metadata": {"name": "later"}, "data": {"k": "v"}})
    wait_until(phase_is(cluster, "unconfigured", "Running"), what="Running once it exists")


def test_changing_a_running_containers_image_restarts_it(cluster, n1):
    _, runtime = n1
    cluster.create_pod("upgrade", "n1", [{"name": "app", "image": "lab/busybox"}],
                       terminationGracePeriodSeconds=1)
    wait_until(phase_is(cluster, "upgrade", "Running"), what="upgrade Running")
    cluster.http("PATCH", "/api/v1/namespaces/default/pods/upgrade",
                 [{"op": "replace", "path": "/spec/containers/0/image", "value": "lab/python"}],
                 "application/json-patch+json")

    def upgraded():
        c = container_state(cluster.pod("upgrade"))
        return c if c.get("restartCount") == 1 and "running" in c.get("state", {}) else None
    wait_until(upgraded, what="the container restarted on the new image")
    latest = runtime.find("upgrade", "app")[-1]
    assert latest.image == "lab/python" and latest.state == "running"
    assert has_event(cluster, "upgrade", "Killing",
                     "Container app definition changed, will be restarted")


def test_a_dead_sandbox_is_replaced_and_the_restart_count_carries_over(cluster, n1):
    _, runtime = n1
    cluster.create_pod("reborn", "n1", [{"name": "app", "image": "lab/busybox"}])
    wait_until(phase_is(cluster, "reborn", "Running"), what="reborn Running")
    (first,) = [s for s in runtime.list_pod_sandboxes() if s.name == "reborn"]
    runtime.lose_sandbox(first.id)

    def restarted():
        c = container_state(cluster.pod("reborn"))
        return c if c.get("restartCount") == 1 and "running" in c.get("state", {}) else None
    c = wait_until(restarted, what="the container running again in a new sandbox")
    assert c["lastState"]["terminated"]["exitCode"] == 137
    sandboxes = {s.id: s.state for s in runtime.list_pod_sandboxes() if s.name == "reborn"}
    assert sandboxes[first.id] == "notready" and list(sandboxes.values()).count("ready") == 1
    ip = cluster.pod("reborn")["status"]["podIP"]
    assert ip == next(s.ip for s in runtime.list_pod_sandboxes()
                      if s.name == "reborn" and s.state == "ready")
