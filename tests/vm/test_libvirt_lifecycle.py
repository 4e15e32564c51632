"""A 2-VM libvirt lab through the CLI: up -> status -> ssh -> console -> down, no leftovers.

Leftovers checked after ``down``: domains and the network in libvirt, the bridge, the
overlay and console files, qemu processes, the lab directory.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from labctl.lifecycle import bridge_name
from labctl.providers.libvirt import domain_name, network_name
from tests.conftest import need, need_tool
from tests.lab.test_lifecycle import Lab, free_subnet, leftovers, shared_image_home, write_inventory

pytestmark = pytest.mark.vm

HOSTS = ("vm-cp", "vm-w1")


def virsh(*args: str) -> str:
    return subprocess.run(["virsh", "-q", "-c", "qemu:///system", *args], capture_output=True, text=True).stdout


@pytest.fixture
def vm_dir():
    """pytest's tmp dirs are 0700; qemu runs as libvirt-qemu and must traverse to its files."""
    path = Path(tempfile.mkdtemp(prefix="labctl-vm-test-", dir="/var/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def vm_lab(base_image, vm_dir):
    tmp_path = vm_dir
    need_tool("virsh")
    need_tool("qemu-system-x86_64")
    need_tool("ssh")
    from labctl.providers.libvirt import ensure_local_daemons

    ensure_local_daemons()  # starts virtlogd/libvirtd when there is no systemd
    need(Path("/run/libvirt/libvirt-sock").exists(), "libvirtd is running")
    home = shared_image_home(tmp_path)
    name = f"vt{random.randrange(16**6):06x}"
    lab = Lab(home, write_inventory(tmp_path / "vms.yml", name, "libvirt", free_subnet(), HOSTS), name)
    try:
        yield lab
    finally:
        lab.labctl("down", "-i", str(lab.inventory), check=False)


@pytest.mark.timeout(3600)  # ~1 min normally; TCG on a loaded machine is far slower
def test_two_vm_lab_up_ssh_down_leaves_nothing(vm_lab):
    lab = vm_lab
    # generous: TCG boots take ~20 s alone but minutes on a machine busy with other work
    steps = [f"--step-timeout={step}=900" for step in ("ssh-banner", "logged-in", "booted")]
    up = json.loads(lab.labctl("up", "-i", str(lab.inventory), "--json", "--no-deploy", *steps, timeout=3000).stdout)
    assert sorted(up["created"]) == sorted(HOSTS)
    domains = virsh("list", "--all", "--name").split()
    assert {domain_name(lab.name, h) for h in HOSTS} <= set(domains)
    records = {h: json.loads((lab.root / "hosts" / f"{h}.json").read_text()) for h in HOSTS}
    assert all(Path(r["details"]["overlay"]).exists() for r in records.values())

    status = json.loads(lab.labctl("status", "--lab", lab.name, "--json").stdout)
    assert {(r["host"], r["provider"], r["state"]) for r in status["hosts"]} == {
        (h, "libvirt", "running") for h in HOSTS
    }

    out = lab.labctl("ssh", "--lab", lab.name, "vm-w1", "--", "hostname; ip -4 -br addr show eth0")
    assert out.stdout.splitlines()[0] == "vm-w1"
    assert records["vm-w1"]["address"] in out.stdout
    # the trimmed boot (no initrd, no udev coldplug, masked units) must not leave
    # failed units behind: systemd says "running", not "degraded"
    state = lab.labctl("ssh", "--lab", lab.name, "vm-cp", "--",
                       "systemctl is-system-running --wait; systemctl --failed --no-legend --plain",
                       check=False)
    assert state.stdout.splitlines()[0] == "running", state.stdout
    peer = records["vm-cp"]["address"]
    lab.labctl("ssh", "--lab", lab.name, "vm-w1", "--", f"ping -c1 -W5 {peer} >/dev/null || (exec 3<>/dev/tcp/{peer}/22)")

    console = lab.labctl("console", "--lab", lab.name, "vm-cp", "-n", "50")
    assert console.stdout.strip(), "the console log has the boot messages"

    lab.labctl("down", "-i", str(lab.inventory))
    assert not {domain_name(lab.name, h) for h in HOSTS} & set(virsh("list", "--all", "--name").split())
    assert network_name(lab.name) not in virsh("net-list", "--all", "--name").split()
    assert not any(Path(r["details"]["overlay"]).exists() for r in records.values())
    assert not any(Path(r["details"]["console_log"]).exists() for r in records.values())
    assert leftovers(lab, bridge_name(lab.name)) == []
