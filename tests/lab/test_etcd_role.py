"""The etcd role on nspawn hosts, through the CLI as a user runs it.

A lab per topology — external (3 etcd hosts + 1 control plane) and stacked (3
control planes that each run a member) — is brought up with a site of the common and
etcd plays; then ``labctl verify`` runs the etcd suite (members, one leader, health,
put/get), ``labctl etcdctl`` talks to the cluster from the lab machine, a second
``deploy`` changes no etcd task, and ``down`` removes everything.

labctl gives roles each host's address (``ansible_host``) and the lab's PKI
(``lab_pki_dir``) by itself: the inventory carries no addresses.
"""

from __future__ import annotations

import json
import random
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
- name: etcd members
  hosts: etcd
  roles: [etcd]
"""

TOPOLOGIES = {
    # group -> hosts (addresses are labctl's own)
    "external": {"etcd": ["etcd-1", "etcd-2", "etcd-3"], "control_plane": ["cp-1"]},
    "stacked": {"control_plane": ["cp-1", "cp-2", "cp-3"]},
}


def write_inventory(path: Path, lab: str, network, topology: str) -> Path:
    lines = [
        "all:",
        "  vars:",
        f"    lab_name: {lab}",
        "    lab_provider: nspawn",
        f"    lab_network: {network}",
        "  children:",
    ]
    for group, hosts in TOPOLOGIES[topology].items():
        lines += [f"    {group}:", "      hosts:"]
        lines += [f"        {h}:" for h in hosts]
    if topology == "stacked":
        lines += ["    etcd:", "      children:", "        control_plane:"]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(params=sorted(TOPOLOGIES))
def etcd_lab(request, base_image, tmp_path):
    need_tool("systemd-nspawn")
    need_tool("ssh")
    need_tool("etcdctl")
    home = shared_image_home(tmp_path)
    shared_wheels = labctl_home() / "wheelhouse"
    shared_wheels.mkdir(parents=True, exist_ok=True)
    (home / "wheelhouse").symlink_to(shared_wheels)  # built once, shared like the images
    (tmp_path / "site.yml").write_text(SITE)
    (tmp_path / "roles").symlink_to(REPO / "roles")
    name = f"le{random.randrange(16**6):06x}"
    inventory = write_inventory(tmp_path / "lab.yml", name, free_subnet(), request.param)
    lab = Lab(home, inventory, name)
    lab.topology = request.param
    try:
        yield lab
    finally:
        lab.labctl("down", "-i", str(lab.inventory), check=False)


def etcd_hosts(lab) -> list[str]:
    return [
        h
        for g, hosts in TOPOLOGIES[lab.topology].items()
        for h in hosts
        if lab.topology == "stacked" or g == "etcd"
    ]


def test_etcd_role_deploys_verifies_answers_etcdctl_and_is_idempotent(etcd_lab, tmp_path):
    lab = etcd_lab
    inv = str(lab.inventory)
    site = ("--site", str(tmp_path / "site.yml"))

    first = lab.up(*site, "--no-verify")
    assert first["deployed"] is True
    print(f"[{lab.topology}] up phases (s): {first['phases']}", file=sys.stderr)
    for host in etcd_hosts(lab):
        assert first["deploy_stats"][host]["changed"] >= 1, first["deploy_stats"]

    verified = lab.labctl("verify", "-i", inv, *site, "--json", check=False, timeout=300)
    report = json.loads(verified.stdout)
    failed = [r for r in report["results"] if r["outcome"] != "passed"]
    assert verified.returncode == 0 and not failed, json.dumps(failed, indent=2)
    etcd_checks = {r["check"].rpartition("::")[2] for r in report["results"] if r["role"] == "etcd"}
    assert {"test_every_member_of_the_etcd_group_is_listed", "test_endpoint_is_healthy",
            "test_exactly_one_leader_across_the_cluster",
            "test_put_on_this_member_is_read_back_from_every_member"} <= etcd_checks
    assert set(report["roles"]["etcd"]) == set(etcd_hosts(lab))

    health = lab.labctl("etcdctl", "-i", inv, "--", "endpoint", "health", timeout=60)
    assert health.stderr.count("is healthy") == len(etcd_hosts(lab)), health.stderr
    members = lab.labctl("etcdctl", "-i", inv, "--", "member", "list", "-w", "json", timeout=60)
    names = sorted(m["name"] for m in json.loads(members.stdout)["members"])
    assert names == sorted(etcd_hosts(lab))
    lab.labctl("etcdctl", "-i", inv, "--", "put", "/labctl-test/k", "v1", timeout=60)
    got = lab.labctl(
        "etcdctl", "-i", inv, "--", "get", "/labctl-test/k", "--print-value-only", timeout=60
    )
    assert got.stdout.strip() == "v1"

    # A second deploy leaves the members alone: no etcd task or handler changes anything.
    # (common may re-push the agents' wheel when agents/ changed meanwhile.)
    again = json.loads(lab.labctl("deploy", "-i", inv, *site, "--json", timeout=600).stdout)
    assert again["ok"], again["failures"]
    etcd_steps = [t for play in again["plays"] if play["name"] == "etcd members" for t in play["tasks"]]
    assert etcd_steps, "the etcd play did not run"
    changed = [(t["name"], h) for t in etcd_steps for h, r in t["hosts"].items() if r.get("changed")]
    assert changed == [], f"a second deploy changed: {changed}"

    lab.labctl("down", "-i", inv)
    from labctl.lifecycle import bridge_name

    assert leftovers(lab, bridge_name(lab.name)) == []
