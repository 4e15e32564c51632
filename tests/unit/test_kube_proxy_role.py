"""The kube-proxy and dns roles' units and kubeconfigs, rendered the way a deploy renders
them for a worker; the units' flags are fed to the agents' own flag parsers."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from agents.dns.main import parse_args as dns_args
from agents.kube_proxy.main import parse_args as proxy_args
from tests.unit.role_rendering import exec_start, render_template_task
from tests.unit.role_rendering import task_variables as role_task_variables

pytestmark = pytest.mark.unit

ROLES = Path(__file__).resolve().parents[2] / "roles"

LAB = """
all:
  vars: {lab_name: wk, lab_network: 10.9.3.0/24}
  children:
    control_plane:
      hosts:
        cp-1: {ansible_host: 10.9.3.11}
    etcd:
      children:
        control_plane:
    workers:
      hosts:
        worker-1: {ansible_host: 10.9.3.21}
        worker-2: {ansible_host: 10.9.3.22}
"""


def rendered(tmp_path, role: str, src: str, inventory: str = LAB, host: str = "worker-2"):
    # the variables of the role's first template task: no task sets its own
    play, _, variables = role_task_variables(tmp_path, inventory, "workers", role, host)
    task = next(t for t in play.tasks if t.module == "template" and t.args["src"] == src)
    return play, render_template_task(role, task, variables)


def test_kube_proxy_unit_flags(tmp_path):
    _, unit = rendered(tmp_path, "kube-proxy", "lab-kube-proxy.service.j2")
    argv = exec_start(unit)
    assert argv[:3] == ["/opt/lab/venv/bin/python", "-m", "agents.kube_proxy"]
    args = proxy_args(argv[3:])
    assert (args.kubeconfig, args.node_name, args.mode, args.nodeport_addresses) == (
        "/etc/lab/kube-proxy/kubeconfig", "worker-2", "nftables", [])
    assert (args.bind_address, args.port) == ("127.0.0.1", 10256)
    assert "Restart=on-failure" in unit.splitlines()


def test_kube_proxy_iptables_mode_and_nodeport_addresses_from_the_inventory(tmp_path):
    inv = LAB.replace("lab_network: 10.9.3.0/24", "lab_network: 10.9.3.0/24, "
                      "kube_proxy_mode: iptables, kube_proxy_nodeport_addresses: [10.9.3.0/24]")
    args = proxy_args(exec_start(rendered(tmp_path, "kube-proxy",
                                          "lab-kube-proxy.service.j2", inv)[1])[3:])
    assert (args.mode, args.nodeport_addresses) == ("iptables", ["10.9.3.0/24"])


@pytest.mark.parametrize("role,prefix", [("kube-proxy", "/etc/lab/kube-proxy"),
                                         ("dns", "/etc/lab/dns")])
def test_kubeconfig_points_at_the_first_api_server_with_the_copied_files(tmp_path, role,
                                                                        prefix):
    play, text = rendered(tmp_path, role, "kubeconfig.j2")
    doc = yaml.safe_load(text)
    cluster, user = doc["clusters"][0]["cluster"], doc["users"][0]["user"]
    assert cluster["server"] == "https://10.9.3.11:6443"
    copy = next(t for t in play.tasks if t.module == "copy")
    copied = {f"{prefix}/{item['dest']}" for item in copy.loop}
    assert {cluster["certificate-authority"], user["client-certificate"],
            user["client-key"]} <= copied


def test_kubeconfig_server_can_be_swapped_for_a_load_balancer(tmp_path):
    inv = LAB.replace("lab_network: 10.9.3.0/24", "lab_network: 10.9.3.0/24, "
                      "kube_apiserver_url: 'https://10.9.3.5:6443'")
    _, text = rendered(tmp_path, "kube-proxy", "kubeconfig.j2", inv)
    assert yaml.safe_load(text)["clusters"][0]["cluster"]["server"] == "https://10.9.3.5:6443"


def test_dns_unit_listens_on_the_host_address_and_registers_it(tmp_path):
    _, unit = rendered(tmp_path, "dns", "lab-dns.service.j2")
    argv = exec_start(unit)
    assert argv[:3] == ["/opt/lab/venv/bin/python", "-m", "agents.dns"]
    args = dns_args(argv[3:])
    assert args.listen == ("10.9.3.22", 53)
    assert args.register_endpoint_ip == "10.9.3.22"
    assert (args.domain, args.service_ip) == ("cluster.local", "10.96.0.10")
    assert "Restart=on-failure" in unit.splitlines()


@pytest.mark.parametrize("role,handler", [("kube-proxy", "restart kube-proxy"),
                                          ("dns", "restart dns")])
def test_changes_notify_the_restart_handler(tmp_path, role, handler):
    play, _, _ = role_task_variables(tmp_path, LAB, "workers", role, "worker-1")
    notifying = sorted((t.module, t.notify) for t in play.tasks if t.notify)
    assert notifying == [("command", [handler]), ("copy", [handler]),
                         ("template", [handler]), ("template", [handler])]
    handlers = yaml.safe_load((ROLES / role / "handlers" / "main.yml").read_text())
    assert [h["name"] for h in handlers] == [handler]
