"""The shipped ``inventory/default.yml`` brought up as a user does: ``labctl up`` with
the real ``site.yml`` (common, etcd, apiserver, scheduler, controller-manager) on nspawn
hosts, verified by every role's suite, then used through ``labctl etcdctl`` and ``labctl
kubeconfig`` + kubectl (a Deployment gets its ReplicaSet and pods, Running on two
simulated nodes run from the lab machine against the lab's API server; a registering node
gets a pod CIDR), brought up again with nothing changed, and taken down with nothing left.

Only the lab's name and network are overridden (``-e``), so a test lab never collides
with a lab the user has up from the same inventory.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import subprocess
import sys
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


def check_workloads_are_controlled(kubeconfig, tmp_path, sim_log):
    """A Deployment gets a ReplicaSet and pods; two simulated nodes (agents.simnodes on the
    lab machine, through the lab's API server) run them; a bare Node gets a pod CIDR."""
    k = lambda *a, **kw: kubectl(kubeconfig, tmp_path, *a, **kw)  # noqa: E731
    k("create", "deployment", "web", "--image=nginx", "--replicas=3")
    poll(lambda: json.loads(k("get", "replicasets", "-l", "app=web", "-o", "json").stdout)[
        "items"], 60, "the Deployment's ReplicaSet")
    poll(lambda: len(json.loads(k("get", "pods", "-l", "app=web", "-o", "json").stdout)[
        "items"]) == 3, 60, "3 pods of the Deployment")
    with open(sim_log, "wb") as log:
        sim = subprocess.Popen([sys.executable, "-m", "agents.simnodes", "--kubeconfig",
                                str(kubeconfig), "--nodes", "2", "--prefix", "sim-"],
                               stdout=log, stderr=log, stdin=subprocess.DEVNULL, cwd=REPO)
    try:
        def nodes_of_running_pods():
            pods = json.loads(k("get", "pods", "-l", "app=web", "-o", "json").stdout)["items"]
            nodes = [p["spec"]["nodeName"] for p in pods
                     if p["status"].get("phase") == "Running"]
            return nodes if len(nodes) == len(pods) == 3 else None
        nodes = poll(nodes_of_running_pods, 90, "3 Running pods on the simulated nodes")
        assert set(nodes) <= {"sim-0", "sim-1"}, nodes
    finally:
        sim.terminate()
        try:
            sim.wait(15)
        except subprocess.TimeoutExpired:
            sim.kill()
            sim.wait(5)
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
    check_workloads_are_controlled(kubeconfig, tmp_path, tmp_path / "simnodes.log")

    again = lab.up(*lab.extra)
    assert again["created"] == [] and sorted(again["kept"]) == sorted(HOSTS)
    assert all(stats["changed"] == 0 for stats in again["deploy_stats"].values()), \
        again["deploy_stats"]

    lab.labctl("down", *inv)
    assert leftovers(lab, bridge_name(lab.name)) == []
