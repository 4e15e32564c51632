"""The apiserver role on nspawn hosts, through the CLI as a user runs it.

The default lab's shape (one control plane running the stacked etcd member, two
workers), and ha-external's (three etcd hosts, two control planes), are brought up with a site of the common, etcd and apiserver plays; then
``labctl verify`` runs the suites (the API server's: unit, port, /readyz, admin lists
namespaces, anonymous refused), kubectl on the lab machine reads namespaces with the
file ``labctl kubeconfig`` prints, a second deploy changes nothing in the etcd and API
server plays, and ``down`` removes everything.

labctl gives roles each host's address (``ansible_host``) and the lab's PKI
(``lab_pki_dir``) by itself: the inventory carries no addresses.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
from pathlib import Path

import pytest

from labctl.inventory import load_inventory
from labctl.state import labctl_home
from tests.conftest import need_tool
from tests.lab.test_lifecycle import Lab, free_subnet, leftovers, shared_image_home

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]
KUBECTL = "/usr/bin/kubectl"

SITE = """\
- name: common setup of every host
  hosts: all
  roles: [common]
- name: etcd members
  hosts: etcd
  roles: [etcd]
- name: API servers
  hosts: control_plane
  roles: [apiserver]
"""

# group -> hosts, on a free subnet (addresses are labctl's own)
TOPOLOGIES = {
    # inventory/default.yml's shape: stacked etcd on the one control plane
    "default": {"control_plane": ["cp-1"], "workers": ["worker-1", "worker-2"]},
    # inventory/ha-external.yml's shape without workers: two API servers, one etcd cluster
    "ha-external": {"etcd": ["etcd-1", "etcd-2", "etcd-3"],
                    "control_plane": ["cp-1", "cp-2"]},
}


def write_inventory(path: Path, lab: str, network, topology: str) -> Path:
    lines = ["all:", "  vars:", f"    lab_name: {lab}", "    lab_provider: nspawn",
             f"    lab_network: {network}", "  children:"]
    for group, hosts in TOPOLOGIES[topology].items():
        lines += [f"    {group}:", "      hosts:"]
        lines += [f"        {h}:" for h in hosts]
    if "etcd" not in TOPOLOGIES[topology]:
        lines += ["    etcd:", "      children:", "        control_plane:"]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(params=["default", "ha-external"])
def apiserver_lab(request, base_image, tmp_path):
    need_tool("systemd-nspawn")
    need_tool("ssh")
    need_tool("kubectl")
    home = shared_image_home(tmp_path)
    shared_wheels = labctl_home() / "wheelhouse"
    shared_wheels.mkdir(parents=True, exist_ok=True)
    (home / "wheelhouse").symlink_to(shared_wheels)  # built once, shared like the images
    (tmp_path / "site.yml").write_text(SITE)
    (tmp_path / "roles").symlink_to(REPO / "roles")
    name = f"la{random.randrange(16**6):06x}"
    lab = Lab(home, write_inventory(tmp_path / "lab.yml", name, free_subnet(), request.param),
              name)
    lab.control_planes = list(TOPOLOGIES[request.param]["control_plane"])
    try:
        yield lab
    finally:
        lab.labctl("down", "-i", str(lab.inventory), check=False)


def kubectl(tmp_path: Path, kubeconfig: Path, *args: str) -> subprocess.CompletedProcess:
    (tmp_path / "kube-home").mkdir(exist_ok=True)
    return subprocess.run(
        [KUBECTL, "--kubeconfig", str(kubeconfig), "--cache-dir", str(tmp_path / "kube-cache"),
         "--request-timeout", "30s", *args],
        capture_output=True, text=True, timeout=120,
        env={"HOME": str(tmp_path / "kube-home"), "PATH": os.environ.get("PATH", "/usr/bin")})


def task_result(play: dict, name: str, host: str = "cp-1") -> dict:
    """``host``'s result of the task called ``name`` (names may carry a "role : " prefix)."""
    for task in play["tasks"]:
        if task["name"].rpartition(" : ")[2] == name and host in task["hosts"]:
            return task["hosts"][host]
    raise AssertionError(f"no task {name!r} ran on {host}: ran {[t['name'] for t in play['tasks']]}")


def test_apiserver_role_deploys_verifies_serves_kubectl_and_is_idempotent(apiserver_lab, tmp_path):
    lab = apiserver_lab
    inv = str(lab.inventory)
    site = ("--site", str(tmp_path / "site.yml"))

    first = lab.up(*site, "--no-verify")
    assert first["deployed"] is True
    for host in lab.control_planes:
        assert first["deploy_stats"][host]["changed"] >= 1, first["deploy_stats"]

    verified = lab.labctl("verify", "-i", inv, *site, "--json", check=False, timeout=300)
    report = json.loads(verified.stdout)
    # the suites of the roles this test is about (common's has its own lab test)
    failed = [r for r in report["results"]
              if r["role"] in ("etcd", "apiserver") and r["outcome"] != "passed"]
    assert not failed, json.dumps(failed, indent=2)
    checks = {r["check"].rpartition("::")[2] for r in report["results"] if r["role"] == "apiserver"}
    assert {"test_unit_is_running_and_enabled", "test_secure_port_listens_on_the_host_address_and_loopback",
            "test_readyz_answers_ok_over_https_verified_with_the_lab_ca",
            "test_admin_lists_the_system_namespaces",
            "test_anonymous_request_for_a_resource_is_refused",
            "test_every_api_server_shares_the_same_store"} <= checks, checks
    assert set(report["roles"]["apiserver"]) == set(lab.control_planes)

    printed = lab.labctl("kubeconfig", "-i", inv, timeout=60)
    kubeconfig = tmp_path / "admin.kubeconfig"
    kubeconfig.write_text(printed.stdout)
    got = kubectl(tmp_path, kubeconfig, "get", "ns", "-o", "name")
    assert got.returncode == 0, got.stderr
    assert {"namespace/default", "namespace/kube-system"} <= set(got.stdout.split()), got.stdout
    addresses = {h: host.address for h, host in load_inventory(lab.inventory).hosts.items()}
    for other in lab.control_planes[1:]:  # every API server answers, through --server
        url = f"https://{addresses[other]}:6443"
        path = tmp_path / f"{other}.kubeconfig"
        path.write_text(lab.labctl("kubeconfig", "-i", inv, "--server", url, timeout=60).stdout)
        got = kubectl(tmp_path, path, "get", "ns", "kube-system", "-o", "name")
        assert got.stdout.strip() == "namespace/kube-system", f"{url}: {got.stderr}"

    # The common play may legitimately change on a re-run (a rebuilt agents wheel is pushed
    # and reinstalled); the etcd and API server plays must not.
    again = json.loads(lab.labctl("deploy", "-i", inv, *site, "--json", timeout=600).stdout)
    assert again["ok"], again["failures"]
    changed = [f"{play['name']}: {task['name']} on {host}"
               for play in again["plays"] if play["name"] in ("etcd members", "API servers")
               for task in play["tasks"] for host, r in task["hosts"].items() if r.get("changed")]
    assert changed == [], f"a second deploy changed something: {changed}"

    # A changed flag rewrites the unit; the handler restarts the server and waits for it.
    changed_flag = json.loads(lab.labctl("deploy", "-i", inv, *site, "-e", "apiserver_log_level=3",
                                         "--limit", "control_plane", "--json", timeout=600).stdout)
    assert changed_flag["ok"], changed_flag["failures"]
    api_play = next(p for p in changed_flag["plays"] if p["name"] == "API servers")
    assert task_result(api_play, "write the API server's systemd unit")["changed"]
    assert task_result(api_play, "restart apiserver")["changed"]
    waited = task_result(api_play, "wait until the API server is ready after the restart")
    assert waited["rc"] == 0, waited
    got = kubectl(tmp_path, kubeconfig, "get", "ns", "default", "-o", "name")
    assert got.returncode == 0 and got.stdout.strip() == "namespace/default", got.stderr

    lab.labctl("down", "-i", inv)
    from labctl.lifecycle import bridge_name

    assert leftovers(lab, bridge_name(lab.name)) == []
