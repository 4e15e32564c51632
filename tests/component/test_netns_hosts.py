"""NetnsHosts: real sshd hosts in network namespaces, checked with OpenSSH's own client."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from labctl.errors import LabError
from labctl.sshkeys import KnownHosts
from labctl.testing.netns_hosts import NetnsHosts
from tests.conftest import need, need_root, need_tool

pytestmark = pytest.mark.component


def ssh(farm: NetnsHosts, host, command: str, *extra: str) -> subprocess.CompletedProcess:
    """Run ``command`` with OpenSSH, trusting only the farm's known_hosts."""
    return subprocess.run(
        [
            "ssh", "-i", str(farm.key_path), "-p", str(host.port),
            "-o", f"UserKnownHostsFile={farm.known_hosts}", "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", *extra,
            f"root@{host.address}", command,
        ],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def leftovers(farm: NetnsHosts) -> list[str]:
    found = []
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    found += [line for line in netns.splitlines() if line.startswith(f"{farm.prefix}-")]
    found += [name for name in os.listdir("/sys/class/net") if name.startswith(f"{farm.prefix}-")]
    return found


@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    need_root()
    need_tool("sshd")
    need_tool("ssh")
    with NetnsHosts(count=3, workdir=tmp_path_factory.mktemp("farm")) as hosts:
        yield hosts


def test_hosts_answer_on_ssh_with_their_own_identity(farm):
    fingerprints = set()
    for host in farm.hosts:
        out = ssh(
            farm, host, "hostname; cat /etc/hostname; cat /proc/1/comm; ip -4 -br addr show eth0"
        )
        assert out.returncode == 0, out.stderr
        hostname, etc_hostname, pid1, addr = out.stdout.splitlines()
        assert hostname == etc_hostname == host.name
        assert pid1 == "sshd"  # no systemd: sshd is the host's PID 1
        assert f"{host.address}/" in addr
        fingerprints.add(KnownHosts(farm.known_hosts).get(host.address))
        assert host.pid and Path(f"/proc/{host.pid}/comm").read_text().strip() == "sshd"
    assert len(fingerprints) == len(farm.hosts)  # every host has its own host key


def test_hosts_have_private_writable_directories(farm):
    a, b = farm.hosts[:2]
    marker = f"labctl-test-{os.getpid()}"
    paths = ["/etc", "/var/lib", "/opt", "/srv", "/usr/local", "/home", "/tmp", "/run", "/root"]
    files = " ".join(f"{p}/{marker}" for p in paths)
    out = ssh(farm, a, f"for f in {files}; do echo {a.name} > $f && cat $f; done")
    assert out.returncode == 0 and out.stdout.split() == [a.name] * len(paths), out.stderr
    leaked = [p for p in paths if Path(p, marker).exists()]
    assert leaked == [], "not private to the host"
    other = ssh(farm, b, f"ls {files} 2>/dev/null; true")
    assert other.stdout == "", "shared between hosts"
    assert a.upper(f"/etc/{marker}").read_text() == f"{a.name}\n"


def test_hosts_start_clean_and_quiet(farm):
    host = farm.hosts[0]
    out = ssh(
        farm, host, "cat /etc/resolv.conf; ls -A /root; cat ~/.bashrc ~/.profile; mount -t tmpfs"
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    # /root has nothing of the lab machine's
    assert sorted(lines[:3]) == [".bashrc", ".profile", ".ssh"]
    assert " on /run " in out.stdout and " on /tmp " in out.stdout
    started = time.monotonic()
    assert ssh(farm, host, "getent hosts nothing.invalid").returncode != 0
    assert time.monotonic() - started < 5  # an empty resolv.conf fails lookups at once


def test_hosts_resolve_and_reach_each_other_and_run_python(farm):
    a, b = farm.hosts[:2]
    script = f'getent hosts {b.name}; python3 -c \'import socket; socket.create_connection(("{b.name}", 22), 2); print("ok")\''
    out = ssh(farm, a, script)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == b.address and out.stdout.split()[-1] == "ok"


def test_known_hosts_rejects_a_host_whose_key_is_not_pinned(farm, tmp_path):
    other = tmp_path / "known_hosts"
    other.write_text("")
    out = subprocess.run(
        ["ssh", "-i", str(farm.key_path), "-o", f"UserKnownHostsFile={other}",
         "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
         f"root@{farm.hosts[0].address}", "true"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert out.returncode == 255 and "Host key verification failed" in out.stderr


def test_inventory_works_with_ansible(farm, tmp_path):
    inv = farm.write_inventory(tmp_path / "hosts.yml", {"web": [farm.hosts[0].name]})
    data = yaml.safe_load(inv.read_text())
    assert data["all"]["hosts"][farm.hosts[1].name]["ansible_host"] == farm.hosts[1].address
    assert list(data["all"]["children"]["web"]["hosts"]) == [farm.hosts[0].name]
    ansible = shutil.which("ansible") or str(Path(os.sys.executable).parent / "ansible")
    need(Path(ansible).exists(), "needs ansible-core")
    out = subprocess.run(
        [ansible, "-i", str(inv), "web", "-m", "ansible.builtin.command", "-a", "hostname"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "ANSIBLE_HOST_KEY_CHECKING": "True", "ANSIBLE_NOCOLOR": "1"},
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert farm.hosts[0].name in out.stdout.splitlines()[-1]


def test_inventory_refuses_unknown_group_members(farm, tmp_path):
    with pytest.raises(LabError, match="unknown netns hosts: nope"):
        farm.write_inventory(tmp_path / "bad.yml", {"g": ["nope"]})


def test_stopped_host_refuses_and_comes_back(farm):
    host = farm.hosts[2]
    farm.stop_host(host.name)
    try:
        assert host.pid is None
        out = ssh(farm, host, "true")
        assert out.returncode == 255 and "refused" in out.stderr
    finally:
        farm.start_host(host.name)
    assert ssh(farm, host, "true").returncode == 0


def test_stopping_a_host_still_booting_leaves_no_process(farm):
    host = farm.hosts[2]
    farm.stop_host(host.name)
    try:
        farm.start_host(host.name, wait=False)
        farm.stop_host(host.name)
        pids = subprocess.run(["ip", "netns", "pids", host.netns], capture_output=True, text=True)
        assert pids.stdout.split() == []
    finally:
        farm.start_host(host.name)


def test_five_hosts_start_fast_and_leave_nothing_behind(tmp_path):
    need_root()
    need_tool("sshd")
    workdir = tmp_path / "five"
    started = time.monotonic()
    with NetnsHosts(count=5, workdir=workdir) as farm:
        elapsed = time.monotonic() - started
        pids = [h.pid for h in farm.hosts]
        assert len(set(pids)) == 5 and all(pids)
        assert leftovers(farm)
        with NetnsHosts(count=1, workdir=tmp_path / "second") as second:
            assert second.prefix != farm.prefix and second.cidr != farm.cidr
    assert elapsed < 3.0, f"5 hosts took {elapsed:.2f}s"  # ~0.3 s on an idle 2-core machine
    assert leftovers(farm) == []
    assert all(not Path(f"/proc/{pid}").exists() for pid in pids)
    assert list(workdir.iterdir()) == []


def test_teardown_happens_when_the_body_fails(tmp_path):
    need_root()
    need_tool("sshd")
    with pytest.raises(RuntimeError), NetnsHosts(count=2, workdir=tmp_path) as farm:
        pids = [h.pid for h in farm.hosts]
        raise RuntimeError("boom")
    assert leftovers(farm) == []
    assert all(not Path(f"/proc/{pid}").exists() for pid in pids)


def test_failed_start_cleans_up(tmp_path):
    need_root()
    need_tool("sshd")
    farm = NetnsHosts(count=2, workdir=tmp_path, boot_timeout=5)
    farm.names = ["ok", "ok"]
    with pytest.raises(LabError, match="unique"):
        farm.start()
    assert leftovers(farm) == []


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(LabError, match="prefix"):
        NetnsHosts(count=1, prefix="Bad-Prefix", workdir=tmp_path)
    with pytest.raises(LabError, match="at least one"):
        NetnsHosts(count=0, workdir=tmp_path)
