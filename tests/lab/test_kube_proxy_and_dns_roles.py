"""The kube-proxy and dns roles on nspawn hosts, through the CLI as a user runs it.

The default lab's shape (one control plane with the stacked etcd member, two workers) is
brought up with a site of the common, etcd, apiserver, kube-proxy and dns plays (the last
two on the workers); ``labctl verify`` runs their suites (unit, /healthz, the kubernetes
ClusterIP programmed and answering from the host; the node's DNS answering for the
cluster domain and listed in kube-dns); then, from a worker, the cluster DNS ClusterIP
answers through kube-proxy; a second deploy changes nothing in those plays; ``down``
removes everything.

The dns part needs dnspython in the agents' requirements (pyproject's `agents` extra):
until it is there the dns role cannot run on the hosts and that part is skipped.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from labctl.state import labctl_home
from labctl.wheelhouse import agents_requirements
from tests.conftest import need_tool
from tests.lab.test_lifecycle import Lab, free_subnet, leftovers, shared_image_home

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]
HAVE_DNSPYTHON = any(r.lower().startswith("dnspython") for r in agents_requirements(REPO))

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
- name: kube-proxy
  hosts: workers
  roles: [kube-proxy]
"""
DNS_PLAY = """\
- name: cluster DNS
  hosts: workers
  roles: [dns]
"""


@pytest.fixture
def lab(base_image, tmp_path):
    need_tool("systemd-nspawn")
    need_tool("ssh")
    home = shared_image_home(tmp_path)
    shared_wheels = labctl_home() / "wheelhouse"
    shared_wheels.mkdir(parents=True, exist_ok=True)
    (home / "wheelhouse").symlink_to(shared_wheels)
    (tmp_path / "site.yml").write_text(SITE + (DNS_PLAY if HAVE_DNSPYTHON else ""))
    (tmp_path / "roles").symlink_to(REPO / "roles")
    name = f"lp{random.randrange(16**6):06x}"
    inventory = tmp_path / "lab.yml"
    inventory.write_text("\n".join([
        "all:", "  vars:", f"    lab_name: {name}", "    lab_provider: nspawn",
        f"    lab_network: {free_subnet()}", "  children:",
        "    control_plane:", "      hosts:", "        cp-1:",
        "    etcd:", "      children:", "        control_plane:",
        "    workers:", "      hosts:", "        worker-1:", "        worker-2:", ""]))
    lab = Lab(home, inventory, name)
    try:
        yield lab
    finally:
        lab.labctl("down", "-i", str(inventory), check=False)


def test_kube_proxy_and_dns_roles_deploy_verify_and_forward(lab, tmp_path):
    inv = str(lab.inventory)
    site = ("--site", str(tmp_path / "site.yml"))
    first = lab.up(*site, "--no-verify")
    assert first["deployed"] is True

    roles = ("kube-proxy", "dns") if HAVE_DNSPYTHON else ("kube-proxy",)
    verified = lab.labctl("verify", "-i", inv, *site, "--json", check=False, timeout=300)
    report = json.loads(verified.stdout)
    failed = [r for r in report["results"] if r["role"] in roles and r["outcome"] != "passed"]
    assert not failed, json.dumps(failed, indent=2)
    for role in roles:
        assert set(report["roles"][role]) == {"worker-1", "worker-2"}, report["roles"]
    checks = {r["check"].rpartition("::")[2] for r in report["results"]
              if r["role"] == "kube-proxy"}
    assert {"test_rules_hold_the_kubernetes_service_cluster_ip",
            "test_kubernetes_cluster_ip_answers_from_the_host"} <= checks, checks

    if HAVE_DNSPYTHON:
        # the cluster DNS ClusterIP, through kube-proxy, from a worker
        got = lab.labctl("ssh", "-i", inv, "worker-1", "--", "/opt/lab/venv/bin/python", "-m",
                         "agents.dns.query", "--server", "10.96.0.10",
                         "kubernetes.default.svc.cluster.local", timeout=60)
        answer = json.loads(got.stdout)
        assert answer["rcode"] == "NOERROR", answer
        assert [line.split()[-1] for line in answer["answer"]] == ["10.96.0.1"], answer

    again = json.loads(lab.labctl("deploy", "-i", inv, *site, "--json", timeout=600).stdout)
    assert again["ok"], again["failures"]
    # A rebuilt agents bundle (agents/ edited meanwhile) is pushed again and restarts the
    # daemons on purpose; nothing else may change.
    common = next(p for p in again["plays"] if p["name"] == "common setup of every host")
    new_agents = {host for task in common["tasks"] if task["name"].endswith("agents bundle")
                  for host, r in task["hosts"].items() if r.get("changed")}
    restarts = ("restart when the agents changed", "restart kube-proxy", "restart dns")
    changed = [f"{play['name']}: {task['name']} on {host}"
               for play in again["plays"] if play["name"] in ("kube-proxy", "cluster DNS")
               for task in play["tasks"] for host, r in task["hosts"].items()
               if r.get("changed") and not (host in new_agents and
                                            task["name"].endswith(restarts))]
    assert changed == [], f"a second deploy changed something: {changed}"

    lab.labctl("down", "-i", inv)
    from labctl.lifecycle import bridge_name

    assert leftovers(lab, bridge_name(lab.name)) == []
