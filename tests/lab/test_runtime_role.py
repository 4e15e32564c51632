"""The runtime role on a 1-host nspawn lab, through the CLI as a user runs it.

common + runtime are deployed; ``labctl verify`` runs the runtime suite (runc, the image
store with lab/busybox and lab/python, writable cgroup controllers, a container that
echoes ok, one OOM-killed over its memory limit, python3 in lab/python); then a pod-like
sandbox with two containers runs on the host through the runtime's Python API (timed:
create -> running), a second deploy changes nothing, and ``down`` leaves nothing.
"""

from __future__ import annotations

import json
import random
import shlex
import sys
from pathlib import Path

import pytest

from labctl.state import labctl_home
from tests.conftest import need_tool
from tests.lab.test_lifecycle import Lab, free_subnet, leftovers, shared_image_home

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]

SITE = """\
- name: common setup of every host
  hosts: all
  roles: [common]
- name: container runtime
  hosts: workers
  roles: [runtime]
"""

# Run on the host by the venv's python: a sandbox, a long-running container and an
# exec in it, the create->running latency of a few containers, then everything removed.
PROBE = r"""
import json, time
from agents.runtime import Runtime, PodSandboxConfig, ContainerConfig, DnsConfig, LoopbackNetwork
rt = Runtime(root="/var/lib/lab/runtime-probe", network=LoopbackNetwork(),
             log_root="/var/lib/lab/runtime-probe/logs")
sid = rt.run_pod_sandbox(PodSandboxConfig("u1", "probe", "p", "probe-pod",
                         dns=DnsConfig(("10.96.0.10",), ("probe.svc.cluster.local",), ())))
latencies = []
exec(PODNET_SOURCE)
try:
    for n in range(3):
        t0 = time.monotonic()
        cid = rt.create_container(sid, ContainerConfig(f"c{n}", "lab/busybox", command=["sleep", "60"]))
        rt.start_container(cid)
        assert rt.container_status(cid).state == "running"
        latencies.append(time.monotonic() - t0)
    code, out, _ = rt.exec_sync(cid, ["cat", "/etc/hostname", "/etc/resolv.conf"], 10)
    web = rt.create_container(sid, ContainerConfig("web", "lab/python", args=["-c", "print('py ok')"],
                                                   command=["python3"]))
    rt.start_container(web)
    deadline = time.monotonic() + 30
    while rt.container_status(web).state != "exited" and time.monotonic() < deadline:
        time.sleep(0.05)
    web_status = rt.container_status(web)
    print(json.dumps({"latencies": latencies, "exec": [code, out.decode()],
                      "web": [web_status.exit_code, open(web_status.log_path).read()],
                      "podnet": pod_network()}))
finally:
    rt.remove_pod_sandbox(sid)
"""

# The same with the real pod network plugin: two sandboxes on a node bridge, one
# container sees its address on eth0 and pings the other sandbox.
PODNET = r"""
def pod_network():
    from agents.podnet import BridgeNetwork
    net = BridgeNetwork(pod_cidr="10.244.99.0/24", bridge="lab-probe",
                        state_dir="/var/lib/lab/runtime-probe/podnet")
    prt = Runtime(root="/var/lib/lab/runtime-probe/net", network=net,
                  log_root="/var/lib/lab/runtime-probe/logs")
    a = prt.run_pod_sandbox(PodSandboxConfig("ua", "probe", "a", "a"))
    b = prt.run_pod_sandbox(PodSandboxConfig("ub", "probe", "b", "b"))
    try:
        ip_a = prt.pod_sandbox_status(a).ip
        cid = prt.create_container(b, ContainerConfig("ping", "lab/busybox", command=[
            "sh", "-c", "ip -4 -o addr show eth0; ping -c 1 -W 3 " + ip_a]))
        prt.start_container(cid)
        deadline = time.monotonic() + 30
        while prt.container_status(cid).state != "exited" and time.monotonic() < deadline:
            time.sleep(0.05)
        status = prt.container_status(cid)
        return [ip_a, prt.pod_sandbox_status(b).ip, status.exit_code, open(status.log_path).read()]
    finally:
        prt.remove_pod_sandbox(a)
        prt.remove_pod_sandbox(b)
"""


def write_inventory(path: Path, lab: str, network) -> Path:
    path.write_text(
        "all:\n"
        "  vars:\n"
        f"    lab_name: {lab}\n"
        "    lab_provider: nspawn\n"
        f"    lab_network: {network}\n"
        "  children:\n"
        "    control_plane:\n      hosts:\n        node-1:\n"
        "    etcd:\n      children:\n        control_plane:\n"
        "    workers:\n      hosts:\n        node-1:\n"
    )
    return path


@pytest.fixture(scope="session")
def container_images(base_image):
    from labctl.images.containers import ensure_container_images

    return ensure_container_images(progress=lambda line: print(f"images: {line}", file=sys.stderr))


@pytest.fixture
def runtime_lab(container_images, tmp_path):
    need_tool("systemd-nspawn")
    need_tool("ssh")
    need_tool("runc")
    home = shared_image_home(tmp_path)
    shared_wheels = labctl_home() / "wheelhouse"
    shared_wheels.mkdir(parents=True, exist_ok=True)
    (home / "wheelhouse").symlink_to(shared_wheels)
    (tmp_path / "site.yml").write_text(SITE)
    (tmp_path / "roles").symlink_to(REPO / "roles")
    name = f"rt{random.randrange(16**6):06x}"
    lab = Lab(home, write_inventory(tmp_path / "lab.yml", name, free_subnet()), name)
    try:
        yield lab
    finally:
        lab.labctl("down", "-i", str(lab.inventory), check=False)


def test_runtime_role_deploys_verifies_runs_containers_and_is_idempotent(
    runtime_lab, container_images, tmp_path
):
    lab = runtime_lab
    inv = str(lab.inventory)
    site = ("--site", str(tmp_path / "site.yml"))
    # labctl's deploy provides lab_container_images_dir itself once the lead wires it;
    # given explicitly it works either way.
    images = ("-e", f"lab_container_images_dir={container_images}")

    first = lab.up(*site, *images, "--no-verify")
    assert first["deployed"] is True, first
    print(f"up phases (s): {first['phases']}", file=sys.stderr)

    verified = lab.labctl("verify", "-i", inv, *site, *images, "--json", check=False, timeout=300)
    report = json.loads(verified.stdout)
    failed = [r for r in report["results"] if r["outcome"] != "passed"]
    assert verified.returncode == 0 and not failed, json.dumps(failed, indent=2)
    checks = {r["check"].rpartition("::")[2] for r in report["results"] if r["role"] == "runtime"}
    assert {"test_a_throwaway_busybox_container_echoes_ok",
            "test_a_container_over_its_memory_limit_is_oom_killed",
            "test_image_store_holds_every_image_of_the_role"} <= checks

    source = f"PODNET_SOURCE = {PODNET!r}\n" + PROBE
    # ssh hands the remote shell one command line: quote the script into it.
    remote = shlex.join(["/opt/lab/venv/bin/python", "-c", source])
    probe = lab.labctl("ssh", "-i", inv, "node-1", "--", remote, timeout=120)
    result = json.loads(probe.stdout.strip().splitlines()[-1])
    print(f"create->running in nspawn (s): {result['latencies']}", file=sys.stderr)
    code, text = result["exec"]
    assert code == 0 and text.startswith("probe-pod\nnameserver 10.96.0.10\n"), result["exec"]
    assert result["web"][0] == 0 and " stdout F py ok\n" in result["web"][1], result["web"]
    ip_a, ip_b, ping_code, ping_log = result["podnet"]
    assert ip_a.startswith("10.244.99.") and ip_b.startswith("10.244.99.") and ip_a != ip_b
    assert f"inet {ip_b}/24" in ping_log and ping_code == 0, ping_log

    again = json.loads(lab.labctl("deploy", "-i", inv, *site, *images, "--json").stdout)
    assert again["ok"], again["failures"]
    steps = [t for play in again["plays"] if play["name"] == "container runtime" for t in play["tasks"]]
    assert steps, "the runtime play did not run"
    changed = [(t["name"], h) for t in steps for h, r in t["hosts"].items() if r.get("changed")]
    assert changed == [], f"a second deploy changed: {changed}"

    lab.labctl("down", "-i", inv)
    from labctl.lifecycle import bridge_name

    assert leftovers(lab, bridge_name(lab.name)) == []
