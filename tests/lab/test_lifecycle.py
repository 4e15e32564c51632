"""The lab lifecycle on nspawn hosts, through the CLI as a user runs it.

3 hosts: ``labctl up`` (hosts only) -> status --json -> ssh -> ``up`` again changes
nothing -> ``up`` with a tiny role (applied, then unchanged on a re-run) -> ``down``,
after which nothing of the lab may be left (records, directories, mounts, bridge,
nspawn processes, known_hosts).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from labctl.state import images_dir
from tests.conftest import need_tool

pytestmark = pytest.mark.lab

HOSTS = ("cp-1", "worker-1", "worker-2")


def free_subnet() -> ipaddress.IPv4Network:
    """A /24 in 10.200-250.x that no route here overlaps (labs run side by side)."""
    routes = subprocess.run(
        ["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True
    ).stdout
    used = []
    for line in routes.splitlines():
        for word in line.split()[:2]:
            with contextlib.suppress(ValueError):
                net = ipaddress.IPv4Network(word, strict=False)
                if net.prefixlen > 0:
                    used.append(net)
    for _ in range(500):
        net = ipaddress.IPv4Network(f"10.{random.randint(200, 250)}.{random.randint(0, 255)}.0/24")
        if not any(net.overlaps(u) for u in used):
            return net
    raise RuntimeError("no free /24 for the test lab")


def write_inventory(path: Path, lab: str, provider: str, network, hosts=HOSTS) -> Path:
    control, workers = hosts[0], hosts[1:]
    lines = [
        "all:",
        "  vars:",
        f"    lab_name: {lab}",
        f"    lab_provider: {provider}",
        f"    lab_network: {network}",
        "    memory_mb: 384",
        "  children:",
        "    control_plane:",
        "      hosts:",
        f"        {control}:",
        "    etcd:",
        "      children:",
        "        control_plane:",
    ]
    if workers:
        lines += ["    workers:", "      hosts:", *[f"        {w}:" for w in workers]]
    path.write_text("\n".join(lines) + "\n")
    return path


def shared_image_home(tmp: Path) -> Path:
    """A LABCTL_HOME for the test whose images/ is the real (shared, cached) image store."""
    home = tmp / "home"
    home.mkdir()
    for d in (tmp, home):
        d.chmod(0o711)  # qemu (libvirt-qemu) must traverse to overlays and images
    (home / "images").symlink_to(images_dir())
    return home


class Lab:
    def __init__(self, home: Path, inventory: Path, lab: str):
        self.home, self.inventory, self.name = home, inventory, lab
        self.env = dict(os.environ, LABCTL_HOME=str(home))

    def labctl(
        self, *args: str, check: bool = True, timeout: float = 600
    ) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, "-m", "labctl", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"labctl {' '.join(args)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    def up(self, *extra: str, timeout: float = 600) -> dict:
        return json.loads(self.labctl("up", "-i", str(self.inventory), "--json", *extra,
                                      timeout=timeout).stdout)

    @property
    def root(self) -> Path:
        return self.home / "labs" / self.name


def leftovers(lab: Lab, bridge: str) -> list[str]:
    found = []
    if lab.root.exists():
        found.append(f"lab dir {lab.root}: {sorted(p.name for p in lab.root.iterdir())}")
    mountinfo = Path("/proc/self/mountinfo").read_text()
    found += [
        f"mount {line.split()[4]}" for line in mountinfo.splitlines() if str(lab.home) in line
    ]
    if Path("/sys/class/net", bridge).exists():
        found.append(f"bridge {bridge}")
    for proc in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            cmdline = proc.read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if str(lab.home) in cmdline and ("nspawn" in cmdline or "qemu" in cmdline):
                found.append(f"process {proc.parent.name}: {cmdline[:120]}")
    return found


@pytest.fixture
def nspawn_lab(base_image, tmp_path):
    need_tool("systemd-nspawn")
    need_tool("ssh")
    home = shared_image_home(tmp_path)
    name = f"lt{random.randrange(16**6):06x}"
    lab = Lab(home, write_inventory(tmp_path / "lab.yml", name, "nspawn", free_subnet()), name)
    try:
        yield lab
    finally:
        lab.labctl("down", "-i", str(lab.inventory), check=False)


def test_nspawn_lab_up_rerun_role_ssh_status_down(nspawn_lab, tmp_path):
    lab = nspawn_lab
    from labctl.lifecycle import bridge_name

    first = lab.up("--no-deploy")
    assert sorted(first["created"]) == sorted(HOSTS)
    assert set(first["ready_at"]) == set(HOSTS)
    for phase in ("image", "network", "create", "ready"):
        assert phase in first["phases"]

    status = json.loads(lab.labctl("status", "-i", str(lab.inventory), "--json").stdout)
    rows = {row["host"]: row for row in status["hosts"]}
    assert set(rows) == set(HOSTS)
    assert all(row["state"] == "running" and row["provider"] == "nspawn" for row in rows.values())
    assert rows["cp-1"]["groups"] == ["control_plane", "etcd"]
    assert rows["worker-1"]["groups"] == ["workers"]

    out = lab.labctl(
        "ssh", "--lab", lab.name, "worker-2", "--", "hostname; ip -4 -br addr show host0"
    )
    assert out.stdout.splitlines()[0] == "worker-2"
    assert rows["worker-2"]["address"] in out.stdout

    console = lab.labctl("console", "--lab", lab.name, "cp-1", "-n", "5")
    assert 0 < len(console.stdout.splitlines()) <= 5

    again = lab.up("--no-deploy")
    assert again["created"] == [] and again["removed"] == [] and again["started"] == []
    assert sorted(again["kept"]) == sorted(HOSTS)

    # a tiny role, if the role engine is there: applied once, unchanged the second time
    try:
        import labctl.engine  # noqa: F401
    except ImportError:
        pytest.skip("role engine not available")
    tasks = tmp_path / "roles" / "tiny" / "tasks"
    tasks.mkdir(parents=True)
    (tasks / "main.yml").write_text(
        '- name: mark the host\n  copy:\n    dest: /etc/lab-tiny\n    content: "tiny {{ inventory_hostname }}\\n"\n'
    )
    (tmp_path / "site.yml").write_text("- hosts: all\n  roles:\n    - tiny\n")
    applied = lab.up("--site", str(tmp_path / "site.yml"))
    assert applied["deployed"] is True
    assert all(applied["deploy_stats"][h]["changed"] >= 1 for h in HOSTS)
    out = lab.labctl("ssh", "--lab", lab.name, "cp-1", "--", "cat /etc/lab-tiny")
    assert out.stdout == "tiny cp-1\n"
    rerun = lab.up("--site", str(tmp_path / "site.yml"))
    assert rerun["created"] == [] and all(rerun["deploy_stats"][h]["changed"] == 0 for h in HOSTS)

    down = lab.labctl("down", "-i", str(lab.inventory))
    assert "3 host(s) removed" in down.stderr
    assert leftovers(lab, bridge_name(lab.name)) == []


def test_hosts_added_and_removed_from_the_inventory_converge(nspawn_lab):
    lab = nspawn_lab
    lab.up("--no-deploy")
    text = lab.inventory.read_text().replace("        worker-2:\n", "        worker-3:\n")
    lab.inventory.write_text(text)
    changed = lab.up("--no-deploy")
    assert changed["created"] == ["worker-3"] and changed["removed"] == ["worker-2"]
    assert sorted(changed["kept"]) == ["cp-1", "worker-1"]
    records = sorted(p.stem for p in (lab.root / "hosts").glob("*.json"))
    assert records == ["cp-1", "worker-1", "worker-3"]


def test_interrupted_up_is_resumed_by_up_and_removed_by_down(nspawn_lab):
    import signal
    import time

    from labctl.lifecycle import bridge_name

    lab = nspawn_lab
    proc = subprocess.Popen(
        [sys.executable, "-m", "labctl", "up", "-i", str(lab.inventory), "--no-deploy"],
        env=lab.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    hosts_dir = lab.root / "hosts"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if hosts_dir.is_dir() and any(hosts_dir.glob("*.json")):
            break
        time.sleep(0.02)  # polling for the first record, bounded by the deadline
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode in (0, 130), err  # 0: it finished before the signal landed
    if proc.returncode == 130:
        assert "interrupted" in err
    assert any(hosts_dir.glob("*.json")), "records of created hosts survive the interrupt"

    resumed = lab.up("--no-deploy")
    assert set(resumed["ready_at"]) == set(HOSTS)
    lab.labctl("down", "--lab", lab.name)
    assert leftovers(lab, bridge_name(lab.name)) == []
