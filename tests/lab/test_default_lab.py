"""The shipped ``inventory/default.yml`` brought up as a user does: ``labctl up`` with
the real ``site.yml`` (common, etcd, apiserver) on nspawn hosts, verified by every role's
suite, then used through ``labctl etcdctl`` and ``labctl kubeconfig`` + kubectl, brought
up again with nothing changed, and taken down with nothing left.

Only the lab's name and network are overridden (``-e``), so a test lab never collides
with a lab the user has up from the same inventory.
"""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

import pytest

from labctl.lifecycle import bridge_name
from labctl.state import labctl_home
from tests.conftest import need_tool
from tests.lab.test_lifecycle import Lab, free_subnet, leftovers, shared_image_home

pytestmark = [pytest.mark.lab, pytest.mark.timeout(1800)]

REPO = Path(__file__).resolve().parents[2]
HOSTS = {"cp-1", "worker-1", "worker-2"}


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
    ns = subprocess.run(
        ["/usr/bin/kubectl", "--kubeconfig", str(kubeconfig), "--cache-dir",
         str(tmp_path / "kube-cache"), "get", "namespaces", "-o", "name"],
        capture_output=True, text=True, timeout=120,
        env={"HOME": str(tmp_path / "kube-home"), "PATH": os.environ.get("PATH", "/usr/bin")})
    assert ns.returncode == 0, ns.stderr
    assert {"namespace/default", "namespace/kube-system"} <= set(ns.stdout.split())

    again = lab.up(*lab.extra)
    assert again["created"] == [] and sorted(again["kept"]) == sorted(HOSTS)
    assert all(stats["changed"] == 0 for stats in again["deploy_stats"].values()), \
        again["deploy_stats"]

    lab.labctl("down", *inv)
    assert leftovers(lab, bridge_name(lab.name)) == []
