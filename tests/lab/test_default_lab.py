"""The shipped ``inventory/default.yml`` brought up as a user does: ``labctl up`` with
the real ``site.yml`` (every role) on nspawn hosts, verified by every role's suite and the
cluster smoke test, then used through ``labctl etcdctl`` and ``labctl kubeconfig`` +
kubectl (a Deployment's pods run on the workers, kubectl logs/exec reach them, a
registering node gets a pod CIDR), brought up again with nothing changed (and verified
without stopping hosts), and taken down with nothing left.

Only the lab's name and network are overridden (``-e``), so a test lab never collides
with a lab the user has up from the same inventory.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import subprocess
import time
from pathlib import Path

import pytest

from labctl.lifecycle import bridge_name
from labctl.state import labctl_home
from tests.conftest import need_tool
from tests.lab.test_lifecycle import Lab, free_subnet, leftovers, shared_image_home

pytestmark = [pytest.mark.lab, pytest.mark.timeout(1800)]

REPO = Path(__file__).resolve().parents[2]
HOSTS = {"cp-1", "worker-1", "worker-2"}
CONTROL_PLANE_ROLES = ("apiserver", "scheduler", "controller-manager")


def kubectl(kubeconfig, tmp_path, *args, check=True):
    proc = subprocess.run(
        ["/usr/bin/kubectl", "--kubeconfig", str(kubeconfig), "--cache-dir",
         str(tmp_path / "kube-cache"), *args],
        capture_output=True, text=True, timeout=120,
        env={"HOME": str(tmp_path / "kube-home"), "PATH": os.environ.get("PATH", "/usr/bin")})
    assert not check or proc.returncode == 0, f"kubectl {' '.join(args)}: {proc.stderr}"
    return proc


def poll(check, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def check_control_plane_suites(lab, inv):
    """The scheduler and controller-manager suites run (and pass) on the control plane."""
    proc = lab.labctl("verify", *inv, "--no-smoke", "--json", "--roles",
                      ",".join(CONTROL_PLANE_ROLES), check=False)
    report = json.loads(proc.stdout)
    assert report["ok"], proc.stdout[-3000:]
    for role in CONTROL_PLANE_ROLES:
        counts = report["roles"].get(role, {}).get("cp-1")
        assert counts and counts["passed"] >= 4 and counts["failed"] == 0, (role, counts)


def check_workloads_run_on_the_workers(kubeconfig, tmp_path):
    """kubectl's own workflow on the lab: a Deployment's pods run on the real workers
    (kubelet + runc), `kubectl logs` and `kubectl exec` reach them through the API server,
    pods resolve through the cluster DNS; a bare Node gets a pod CIDR (Node IPAM)."""
    k = lambda *a, **kw: kubectl(kubeconfig, tmp_path, *a, **kw)  # noqa: E731
    k("create", "deployment", "sleeper", "--image=lab/busybox", "--replicas=2", "--",
      "sh", "-c", "echo hello from $(hostname); exec sleep 3600")

    def running_pods():
        pods = json.loads(k("get", "pods", "-l", "app=sleeper", "-o", "json").stdout)["items"]
        running = [p for p in pods if p["status"].get("phase") == "Running"]
        return running if len(running) == len(pods) == 2 else None
    pods = poll(running_pods, 120, "2 Running pods of the Deployment")
    assert {p["spec"]["nodeName"] for p in pods} <= {"worker-1", "worker-2"}, pods
    name = pods[0]["metadata"]["name"]
    logs = poll(lambda: k("logs", name).stdout, 30, f"kubectl logs {name}")
    assert f"hello from {name}" in logs
    resolv = k("exec", name, "--", "cat", "/etc/resolv.conf").stdout
    assert "nameserver 10.96.0.10" in resolv, resolv
    k("delete", "deployment", "sleeper")
    node = tmp_path / "node.json"
    node.write_text(json.dumps({"apiVersion": "v1", "kind": "Node",
                                "metadata": {"name": "registering"}}))
    k("create", "-f", str(node))
    cidr = poll(lambda: json.loads(k("get", "node", "registering", "-o", "json").stdout)[
        "spec"].get("podCIDR"), 60, "a pod CIDR on the new node")
    assert ipaddress.ip_network(cidr).subnet_of(ipaddress.ip_network("10.244.0.0/16"))


@pytest.fixture
def default_lab(base_image, tmp_path):
    need_tool("systemd-nspawn")
    need_tool("etcdctl")
    need_tool("kubectl")
    home = shared_image_home(tmp_path)
    shared_wheels = labctl_home() / "wheelhouse"
    shared_wheels.mkdir(parents=True, exist_ok=True)
    (home / "wheelhouse").symlink_to(shared_wheels)  # built once, shared like the images
    name = f"ld{random.randrange(16**6):06x}"
    lab = Lab(home, REPO / "inventory" / "default.yml", name)
    lab.extra = ("-e", f"lab_name={name}", "-e", f"lab_network={free_subnet()}")
    try:
        yield lab
    finally:
        lab.labctl("down", "-i", str(lab.inventory), *lab.extra, check=False)


def test_default_inventory_up_verify_use_rerun_down(default_lab, tmp_path):
    lab = default_lab
    inv = ("-i", str(lab.inventory), *lab.extra)

    first = lab.up(*lab.extra)  # deploys site.yml and runs every role's verify suite
    assert sorted(first["created"]) == sorted(HOSTS)
    assert first["deployed"] is True
    assert first["verified"] is True, first

    health = lab.labctl("etcdctl", *inv, "--", "endpoint", "health")
    assert "is healthy" in health.stdout + health.stderr
    members = lab.labctl("etcdctl", *inv, "--", "member", "list")
    assert len(members.stdout.splitlines()) == 1 and "cp-1" in members.stdout
    lab.labctl("etcdctl", *inv, "--", "put", "/lab/probe", "ok")
    got = lab.labctl("etcdctl", *inv, "--", "get", "/lab/probe", "--print-value-only")
    assert got.stdout.strip() == "ok"

    kubeconfig = tmp_path / "admin.kubeconfig"
    kubeconfig.write_text(lab.labctl("kubeconfig", *inv).stdout)
    (tmp_path / "kube-home").mkdir()
    ns = kubectl(kubeconfig, tmp_path, "get", "namespaces", "-o", "name")
    assert {"namespace/default", "namespace/kube-system"} <= set(ns.stdout.split())

    check_control_plane_suites(lab, inv)
    check_workloads_run_on_the_workers(kubeconfig, tmp_path)

    again = lab.up(*lab.extra, "--no-verify")
    assert again["created"] == [] and sorted(again["kept"]) == sorted(HOSTS)
    assert all(stats["changed"] == 0 for stats in again["deploy_stats"].values()), \
        again["deploy_stats"]

    lab.labctl("down", *inv)
    assert leftovers(lab, bridge_name(lab.name)) == []
