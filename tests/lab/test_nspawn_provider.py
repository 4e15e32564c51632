"""The nspawn provider end to end: 3 containers on the base image, over real SSH.

Up (in parallel, as the lifecycle does) -> SSH-ready -> identity and network checks
-> stop/start -> destroy, then nothing of the lab may be left: no mounts, bridge,
veths, nspawn or container processes, cgroups or directories.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import os
import random
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from labctl.errors import LabError
from labctl.providers import netdev
from labctl.providers.base import HostRecord, HostSpec, NetworkSpec
from labctl.providers.nspawn import NspawnProvider, container_pids, process_start_time
from tests.conftest import need_tool

pytestmark = pytest.mark.lab

HOSTS = ("node1", "node2", "node3")
SSH_DEADLINE = 60.0


def free_subnet() -> ipaddress.IPv4Network:
    """A /24 that no route on this machine overlaps (other labs may run side by side)."""
    routes = subprocess.run(
        ["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True, check=True
    ).stdout
    used = []
    for line in routes.splitlines():
        words = line.split()
        dst = words[1] if words[0] in ("local", "broadcast", "unicast") else words[0]
        with contextlib.suppress(ValueError):
            net = ipaddress.IPv4Network(dst, strict=False)
            if net.prefixlen > 0:
                used.append(net)
    for _ in range(200):
        net = ipaddress.IPv4Network(f"10.{random.randint(200, 250)}.{random.randint(0, 255)}.0/24")
        if not any(net.overlaps(u) for u in used):
            return net
    raise RuntimeError("no free /24 for the test lab")


def ssh(
    key: Path, address: str, command: str, timeout: float = 20.0
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            "ssh", "-i", str(key), "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
            "-o", "ConnectTimeout=2", "-o", "LogLevel=ERROR",
            f"root@{address}", command,
        ],
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def wait_until(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def wait_for_ssh(key: Path, address: str, deadline: float) -> None:
    last = None
    while time.monotonic() < deadline:
        last = ssh(key, address, "true")
        if last.returncode == 0:
            return
        time.sleep(0.1)
    raise AssertionError(f"{address}: no SSH before the deadline: {last and last.stderr}")


def leftovers(under: Path, net: NetworkSpec, records) -> list[str]:
    """What is left of ``records``, mounts under ``under`` and the lab bridge."""
    found = []
    mountinfo = Path("/proc/self/mountinfo").read_text()
    found += [f"mount: {line}" for line in mountinfo.splitlines() if f"{under}/" in line]
    if netdev.link_exists(net.bridge):
        found.append(f"bridge {net.bridge}")
    for record in records:
        d = record.details
        if netdev.link_exists(d["veth"]):
            found.append(f"veth {d['veth']}")
        if d.get("pid") and process_start_time(d["pid"]) == d["start_time"]:
            found.append(f"nspawn pid {d['pid']}")
        if Path(d["host_dir"]).exists():
            found.append(f"dir {d['host_dir']}")
        found += [f"cgroup {c}" for c in d.get("cgroups", []) if Path(c).exists()]
    return found


@pytest.fixture(scope="module")
def lab(base_image, tmp_path_factory):
    need_tool("systemd-nspawn")
    need_tool("ssh")
    tmp = tmp_path_factory.mktemp("nspawn-lab")
    key = tmp / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    cidr = free_subnet()
    hosts = list(cidr.hosts())
    net = NetworkSpec(
        lab_name=f"t{os.getpid()}",
        cidr=cidr,
        gateway=str(hosts[0]),
        bridge=f"labt{os.getpid() % 100000}",
    )
    specs = [
        HostSpec(name, str(hosts[10 + i]), net, 1, 256, (tmp / "id_ed25519.pub").read_text())
        for i, name in enumerate(HOSTS)
    ]
    lab_root = tmp / "lab"
    provider = NspawnProvider(lab_root, image=base_image)
    created = []  # filled as hosts appear, so a failing create leaks none of the others

    def create(spec: HostSpec) -> HostRecord:
        record = provider.create(spec)
        created.append(record)
        return record

    try:
        provider.ensure_network(net)
        start = time.monotonic()
        with ThreadPoolExecutor(len(specs)) as pool:
            records = list(pool.map(create, specs))
        deadline = time.monotonic() + SSH_DEADLINE
        with ThreadPoolExecutor(len(specs)) as pool:
            list(pool.map(lambda s: wait_for_ssh(key, s.address, deadline), specs))
        print(f"\n{len(specs)} nspawn hosts SSH-ready in {time.monotonic() - start:.2f} s")
        yield provider, net, specs, records, key, lab_root
    finally:
        for record in created:
            with contextlib.suppress(Exception):
                provider.destroy(record)
        provider.destroy_network(net)


def test_hosts_have_their_identity(lab, base_image):
    provider, net, specs, records, key, _ = lab
    machine_ids = set()
    for spec, record in zip(specs, records, strict=True):
        assert provider.state(record) == "running"
        out = ssh(key, spec.address, "hostname; cat /etc/machine-id; cat /etc/lab-image; "
                  "ip -4 -o addr show dev host0; ls /etc/ssh/")  # fmt: skip
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert lines[0] == spec.name
        machine_ids.add(lines[1])
        assert f"LAB_IMAGE_RECIPE={base_image.recipe_hash}" in out.stdout
        assert f"{spec.address}/{net.cidr.prefixlen}" in out.stdout
        assert "ssh_host_ed25519_key" in out.stdout and "ssh_host_rsa_key" not in out.stdout
    assert len(machine_ids) == len(specs) and all(len(m) == 32 for m in machine_ids)


def test_each_container_has_its_own_cgroup(lab):
    """Containers sharing nspawn's cgroup tree fail units with status=219/CGROUP."""
    _, _, _, records, _, _ = lab
    seen = set()
    for record in records:
        cgroups = record.details["cgroups"]
        assert cgroups and all(Path(c, "cgroup.procs").exists() for c in cgroups)
        for cgroup in cgroups:
            assert cgroup not in seen
            seen.add(cgroup)
        # nspawn moves itself into supervisor/ and the container into payload/ below it
        own = Path(f"/proc/{record.details['pid']}/cgroup").read_text()
        machine = record.details["machine"]
        for line in own.splitlines():
            if "name=systemd" in line or line.startswith("0::"):
                assert f"/labctl-{machine}/supervisor" in line, own


def test_hosts_boot_without_failed_units(lab):
    _, _, specs, _, key, _ = lab
    for spec in specs:
        out = ssh(key, spec.address, "systemctl is-system-running --wait; systemctl --failed "
                  "--no-legend --plain | while read u _; do journalctl -b -u $u --no-pager; done")  # fmt: skip
        assert out.stdout.startswith("running\n"), out.stdout


def test_hosts_reach_each_other_through_the_bridge(lab):
    _, net, specs, _, key, _ = lab
    connect_all = (
        "python3 -c 'import socket, sys\n"
        "for a in sys.argv[1:]: socket.create_connection((a, 22), 3).close()' "
    )
    out = ssh(key, specs[0].address, connect_all + " ".join(s.address for s in specs[1:]))
    assert out.returncode == 0, out.stderr
    route = ssh(key, specs[0].address, "ip -4 route show default")
    assert f"via {net.gateway}" in route.stdout


def test_resolv_conf_is_empty_and_root_logs_in_by_key_only(lab):
    _, _, specs, _, key, _ = lab
    out = ssh(key, specs[0].address, "wc -c < /etc/resolv.conf; sshd -T")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].strip() == "0"
    assert "permitrootlogin without-password" in out.stdout  # sshd's name for prohibit-password
    assert "passwordauthentication no" in out.stdout and "usedns no" in out.stdout


def test_hosts_have_python_venv_and_firewall_tools(lab):
    _, _, specs, _, key, _ = lab
    out = ssh(key, specs[1].address, "python3 -m venv /tmp/v && /tmp/v/bin/pip --version && "
              "nft list ruleset && iptables -S >/dev/null && echo tools-ok", timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("pip ") and out.stdout.endswith("tools-ok\n")


def test_stop_and_start_keep_the_host_state(lab):
    provider, _, specs, records, key, _ = lab
    spec, record = specs[2], records[2]
    assert ssh(key, spec.address, "echo kept > /root/marker").returncode == 0
    provider.stop(record)
    assert provider.state(record) == "stopped"
    assert not Path(record.details["merged"], "root").exists()  # overlay unmounted
    provider.start(record)
    assert provider.state(record) == "running"
    wait_for_ssh(key, spec.address, time.monotonic() + SSH_DEADLINE)
    assert ssh(key, spec.address, "cat /root/marker").stdout == "kept\n"
    assert provider.console_log(record).stat().st_size > 0


def test_create_refuses_a_running_host_and_replaces_leftovers(lab, base_image):
    provider, net, specs, _, key, lab_root = lab
    with pytest.raises(LabError, match="already exists"):
        provider.create(specs[0])
    spec = HostSpec("stale", str(list(net.cidr.hosts())[22]), net, 1, 256, specs[0].public_key)
    junk = provider.host_dir("stale") / "upper/root/junk"
    junk.parent.mkdir(parents=True)
    junk.write_text("from a crashed run")
    record = provider.create(spec)
    try:
        assert not junk.exists()
        assert Path(record.details["merged"], "etc/hostname").read_text() == "stale\n"
    finally:
        provider.destroy(record)
    assert leftovers(Path(record.details["host_dir"]), net, [record]) == [f"bridge {net.bridge}"]


def test_root_key_can_come_as_a_systemd_credential(lab, base_image):
    """The path VMs use (systemd.set_credential=ssh.authorized_keys.root:...): the
    image's systemd turns the credential into root's authorized_keys."""
    _, net, specs, records, key, lab_root = lab
    address = str(list(net.cidr.hosts())[20])
    public_key = key.with_suffix(".pub").read_text().strip()
    provider = NspawnProvider(
        lab_root,
        image=base_image,
        extra_args=(f"--set-credential=ssh.authorized_keys.root:{public_key}",),
    )
    spec = HostSpec("credhost", address, net, 1, 256, public_key="")
    record = provider.create(spec)
    try:
        assert not Path(record.details["upper"], "root/.ssh/authorized_keys").exists()
        wait_for_ssh(key, address, time.monotonic() + SSH_DEADLINE)
        out = ssh(key, address, "stat -c %a /root/.ssh/authorized_keys; hostname")
        assert out.stdout.split() == ["600", "credhost"]
    finally:
        provider.destroy(record)
    assert leftovers(Path(record.details["host_dir"]), net, [record]) == [f"bridge {net.bridge}"]


def test_destroy_cleans_up_after_a_killed_nspawn(lab, base_image):
    """A SIGKILLed nspawn leaves its container running (reparented); destroy, maybe
    from another process holding only the record, must still remove everything."""
    _, net, _, _, key, lab_root = lab
    provider = NspawnProvider(lab_root, image=base_image)
    address = str(list(net.cidr.hosts())[21])
    spec = HostSpec("killed", address, net, 1, 256, key.with_suffix(".pub").read_text())
    record = provider.create(spec)
    try:
        wait_for_ssh(key, address, time.monotonic() + SSH_DEADLINE)
        os.kill(record.details["pid"], signal.SIGKILL)
        assert wait_until(lambda: provider.state(record) == "stopped")
        orphans = container_pids(Path(record.details["merged"]))
        assert orphans  # the container lives on without its nspawn
    finally:
        # as a later labctl process would: a fresh provider and the record from JSON
        saved = json.loads(json.dumps(dataclasses.asdict(record)))
        NspawnProvider(lab_root).destroy(HostRecord(**saved))
    assert leftovers(Path(record.details["host_dir"]), net, [record]) == [f"bridge {net.bridge}"]
    assert [pid for pid in orphans if process_start_time(pid) is not None] == []


def test_destroy_leaves_nothing_behind(lab):
    provider, net, _, records, _, lab_root = lab
    start = time.monotonic()
    for record in records:
        provider.destroy(record)
    provider.destroy_network(net)
    print(f"\ndestroyed {len(records)} hosts in {time.monotonic() - start:.2f} s")
    assert leftovers(lab_root, net, records) == []
    for record in records:
        assert provider.state(record) == "missing"
        provider.destroy(record)  # idempotent
    provider.destroy_network(net)
