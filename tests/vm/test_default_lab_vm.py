"""The shipped default lab as libvirt VMs (TCG on the build machine): `labctl up` with the
whole site, every role's verify suite and the cluster smoke test (pods on both workers,
ClusterIP from each, DNS from a pod, pod replacement, a stopped worker's pods recreated),
then `down` with nothing left in libvirt, on the bridge or on disk."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from labctl.lifecycle import bridge_name
from labctl.providers.libvirt import domain_name, network_name
from labctl.state import labctl_home
from tests.conftest import need_tool
from tests.lab.test_lifecycle import Lab, free_subnet, leftovers, shared_image_home
from tests.vm.test_libvirt_lifecycle import virsh, vm_dir  # noqa: F401

pytestmark = [pytest.mark.vm, pytest.mark.timeout(3600)]

REPO_ROOT = Path(__file__).resolve().parents[2]
HOSTS = ("cp-1", "worker-1", "worker-2")


@pytest.fixture
def vm_default_lab(base_image, vm_dir):  # noqa: F811
    need_tool("virsh")
    need_tool("qemu-system-x86_64")
    from labctl.providers.libvirt import ensure_local_daemons

    ensure_local_daemons()
    home = shared_image_home(vm_dir)
    shared_wheels = labctl_home() / "wheelhouse"
    shared_wheels.mkdir(parents=True, exist_ok=True)
    (home / "wheelhouse").symlink_to(shared_wheels)
    name = f"vd{random.randrange(16**6):06x}"
    lab = Lab(home, REPO_ROOT / "inventory" / "default.yml", name)
    lab.extra = ("-e", f"lab_name={name}", "-e", f"lab_network={free_subnet()}",
                 "-e", "lab_provider=libvirt")
    try:
        yield lab
    finally:
        lab.labctl("down", "-i", str(lab.inventory), *lab.extra, check=False)


def test_default_lab_on_vms_is_up_verified_and_removed(vm_default_lab):
    lab = vm_default_lab
    # Python runs ~18x slower under TCG: the whole site plus the smoke test take ~25 min
    first = lab.up(*lab.extra, timeout=3000)
    assert sorted(first["created"]) == sorted(HOSTS)
    assert first["deployed"] is True
    assert first["verified"] is True, first
    lab.labctl("down", "-i", str(lab.inventory), *lab.extra)
    domains = virsh("list", "--all", "--name")
    assert not [h for h in HOSTS if domain_name(lab.name, h) in domains]
    assert network_name(lab.name) not in virsh("net-list", "--all", "--name")
    assert leftovers(lab, bridge_name(lab.name)) == []
