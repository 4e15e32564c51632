"""The kubelet with the real runtime (runc) on this host, as root: a pod runs, its
status is right, `kubectl logs` shows its output, `kubectl exec` runs a command in it,
deleting it stops it and removes its containers. The image is the runtime tests' image
of this machine's own binaries (no image build, no network); the pod network is the
runtime's loopback-only plugin."""

import os
import time
import uuid

import pytest

from agents.kubelet.testing import KubeletThread
from tests.component.test_kubelet_fake import (  # noqa: F401 - the cluster fixture
    KUBECTL,
    cluster,
    container_state,
    phase_is,
    wait_until,
)
from tests.conftest import need, need_root, need_tool

pytestmark = pytest.mark.component


@pytest.fixture
def real_node(cluster, tmp_path):  # noqa: F811
    need_root()
    need_tool("runc")
    need(os.path.exists(KUBECTL), "needs /usr/bin/kubectl")
    from agents.kube.client import KubeClient
    from agents.kubelet.config import KubeletConfig
    from agents.kubelet.kubelet import Kubelet
    from agents.runtime import LoopbackNetwork, Runtime
    from tests.component.test_runtime_host import make_host_image, remove_cgroup_parent

    store = tmp_path / "images"
    make_host_image(store)
    parent = f"/lab-kubelet-test-{uuid.uuid4().hex[:8]}"
    runtime = Runtime(root=tmp_path / "rt", image_store=store, network=LoopbackNetwork(),
                      log_root=tmp_path / "logs", cgroup_parent=parent)
    node = "real1"
    from agents.kubelet.testing import node_cert
    cert, key = node_cert(cluster.work, cluster.pki.ca,
                          os.path.join(cluster.work, "ca.key"), node)
    kubeconfig = cluster.write_kubeconfig(f"node-{node}", cert, key)
    cfg = KubeletConfig(kubeconfig=kubeconfig, node_name=node, node_ip="127.0.0.1", port=0,
                        tls_cert_file=cert, tls_key_file=key, client_ca_file=cluster.pki.ca,
                        pod_log_dir=str(tmp_path / "logs"), state_dir=str(tmp_path / "state"),
                        pod_cidr="10.244.9.0/24", lease_renew_seconds=1, resync_seconds=2)

    def start(rt):
        async def make():
            api = KubeClient.from_kubeconfig(kubeconfig, user_agent=f"kubelet/{node}")
            return Kubelet(cfg, api, lambda cidr: rt, relist_period=0.2)
        return KubeletThread(make).start()

    def restart():
        """A new kubelet with a new Runtime object on the same state (a process restart)."""
        node_state["thread"].stop()
        node_state["runtime"] = Runtime(root=tmp_path / "rt", image_store=store,
                                        network=LoopbackNetwork(),
                                        log_root=tmp_path / "logs", cgroup_parent=parent)
        node_state["thread"] = start(node_state["runtime"])
        return node_state["thread"], node_state["runtime"]
    node_state = {"runtime": runtime, "thread": start(runtime)}
    try:
        yield node, runtime, restart
    finally:
        node_state["thread"].stop()
        runtime = node_state["runtime"]
        for sandbox in runtime.list_pod_sandboxes():
            runtime.remove_pod_sandbox(sandbox.id)
        for container in runtime.list_containers():
            runtime.remove_container(container.id)
        remove_cgroup_parent(parent)


def test_a_real_pod_runs_logs_and_execs(cluster, real_node):  # noqa: F811
    node, runtime, _ = real_node
    started = time.monotonic()
    cluster.create_pod("real", node, [{
        "name": "app", "image": "lab/hosttools",
        "command": ["sh", "-c", "echo hello from $POD_NAME; echo oops >&2; "
                    "while :; do sleep 0.2; done"],
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {
            "fieldPath": "metadata.name"}}}],
        "resources": {"limits": {"cpu": "100m", "memory": "32Mi"}},
        "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1}}],
        terminationGracePeriodSeconds=2)
    wait_until(phase_is(cluster, "real", "Running"), timeout=30, what="the real pod Running")
    print(f"created → Running in {time.monotonic() - started:.2f}s")
    wait_until(lambda: container_state(cluster.pod("real")).get("ready"), timeout=30,
               what="the real pod ready")
    print(f"created → ready in {time.monotonic() - started:.2f}s")
    pod = cluster.pod("real")
    assert pod["status"]["phase"] == "Running"
    wait_until(lambda: "hello from real" in cluster.kubectl("logs", "real").stdout,
               what="the container's output in kubectl logs")
    # stdout and stderr are separate pipes: their relative order is not defined.
    assert sorted(cluster.kubectl("logs", "real").stdout.splitlines()) == [
        "hello from real", "oops"]
    proc = cluster.kubectl("exec", "real", "--", "sh", "-c", "hostname; exit 4", check=False)
    assert proc.stdout == "real\n" and proc.returncode == 4, proc.stderr
    t0 = time.monotonic()
    cluster.http("DELETE", "/api/v1/namespaces/default/pods/real", {})
    wait_until(lambda: cluster.pod("real") is None, timeout=30, what="the pod deleted")
    print(f"deleted in {time.monotonic() - t0:.2f}s")
    assert not runtime.list_pod_sandboxes() and not runtime.list_containers()


def test_real_containers_survive_a_kubelet_restart_and_are_adopted(cluster, real_node):  # noqa: F811
    node, runtime, restart = real_node
    cluster.create_pod("stay", node, [{"name": "app", "image": "lab/hosttools",
                                       "command": ["sh", "-c", "echo up; exec sleep 300"]}],
                       terminationGracePeriodSeconds=1)
    wait_until(phase_is(cluster, "stay", "Running"), timeout=30, what="stay Running")
    before = [(c.id, c.pid) for c in runtime.list_containers() if c.state == "running"]
    assert len(before) == 1
    thread, runtime = restart()
    wait_until(lambda: thread.kubelet.metrics["syncs"] >= 2, what="the new kubelet syncing")
    cluster.http("PATCH", "/api/v1/namespaces/default/pods/stay",
                 {"metadata": {"labels": {"poke": "1"}}}, "application/merge-patch+json")
    wait_until(lambda: thread.kubelet.metrics["syncs"] >= 4, what="a sync after the poke")
    after = [(c.id, c.pid) for c in runtime.list_containers() if c.state == "running"]
    assert after == before, "the running container was not adopted as it was"
    assert container_state(cluster.pod("stay"))["restartCount"] == 0
    assert cluster.kubectl("logs", "stay").stdout == "up\n"
    cluster.http("DELETE", "/api/v1/namespaces/default/pods/stay", {})
    wait_until(lambda: cluster.pod("stay") is None, timeout=30, what="stay deleted")
