"""The podnet role rendered the way a deploy renders it: the unit's flags fed to the
daemon's own flag parser, the kubeconfig read by the agents' kubeconfig loader, on a
worker and on a control plane (every host runs the route sync)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from agents.kube.kubeconfig import parse_kubeconfig
from agents.podnet.main import parse_args
from labctl.engine.templating import LazyVars
from labctl.engine.variables import HostState, HostVars, inventory_vars_of, magic_vars, task_vars
from tests.unit.role_rendering import exec_start, load_play, render_template_task

pytestmark = pytest.mark.unit

ROLE = Path(__file__).resolve().parents[2] / "roles" / "podnet"

LAB = """
all:
  vars: {lab_name: pn, lab_network: 10.9.3.0/24, lab_pki_dir: /tmp/pki}
  children:
    control_plane:
      hosts:
        cp-1: {ansible_host: 10.9.3.11}
        cp-2: {ansible_host: 10.9.3.12}
    etcd:
      children:
        control_plane:
    workers:
      hosts:
        worker-1: {ansible_host: 10.9.3.21}
"""


def rendered(tmp_path: Path, template: str, host: str, inventory_text: str = LAB) -> str:
    inventory, play = load_play(tmp_path, inventory_text, "all", "podnet")
    task = next(t for t in play.tasks if t.module == "template" and t.args["src"] == template)
    states = {h: HostState(h, inventory_vars_of(inventory, h)) for h in inventory.hosts}
    hostvars = HostVars(states, inventory.extra_vars)
    magic = magic_vars(inventory, host, inventory.hosts_matching(play.hosts), hostvars, False,
                       False, str(tmp_path))
    variables = LazyVars(task_vars(play, task, states[host], inventory.extra_vars, magic))
    return render_template_task("podnet", task, variables)


def daemon_args(tmp_path: Path, host: str, inventory_text: str = LAB):
    argv = exec_start(rendered(tmp_path, "lab-podnet.service.j2", host, inventory_text))
    assert argv[:3] == ["/opt/lab/venv/bin/python", "-m", "agents.podnet"]
    return parse_args(argv[3:])


@pytest.mark.parametrize("host", ["worker-1", "cp-2"])
def test_unit_runs_the_route_sync_as_this_hosts_node(tmp_path, host):
    args = daemon_args(tmp_path, host)
    assert (args.node_name, args.kubeconfig) == (host, "/etc/lab/podnet/kubeconfig")
    assert (args.route_proto, args.bind_address, args.port, args.netns) == (
        77, "127.0.0.1", 10264, None)


def test_kubeconfig_points_at_the_api_server_this_host_should_use_with_the_copied_files(tmp_path):
    config = parse_kubeconfig(yaml.safe_load(rendered(tmp_path, "kubeconfig.j2", "worker-1")))
    assert config.server == "https://127.0.0.1:6443"  # two control planes: the node-local balancer
    on_cp = parse_kubeconfig(yaml.safe_load(rendered(tmp_path, "kubeconfig.j2", "cp-2")))
    assert on_cp.server == "https://10.9.3.12:6443"  # a control plane uses its own
    single = LAB.replace("        cp-2: {ansible_host: 10.9.3.12}\n", "")
    alone = parse_kubeconfig(yaml.safe_load(rendered(tmp_path, "kubeconfig.j2", "worker-1", single)))
    assert alone.server == "https://10.9.3.11:6443"  # one control plane: straight to it
    assert (config.ca_file, config.cert_file, config.key_file) == (
        "/etc/lab/podnet/ca.crt", "/etc/lab/podnet/client.crt", "/etc/lab/podnet/client.key")
    _, play = load_play(tmp_path, LAB, "all", "podnet")
    copy = next(t for t in play.tasks if t.module == "copy")
    assert {f"/etc/lab/podnet/{item['dest']}" for item in copy.loop} == {
        config.ca_file, config.cert_file, config.key_file}


def test_the_api_server_url_can_be_swapped_for_a_load_balancer(tmp_path):
    text = LAB.replace("lab_pki_dir: /tmp/pki",
                       "lab_pki_dir: /tmp/pki, kube_apiserver_url: 'https://10.9.3.5:8443'")
    config = parse_kubeconfig(yaml.safe_load(rendered(tmp_path, "kubeconfig.j2", "cp-1", text)))
    assert config.server == "https://10.9.3.5:8443"


def test_forwarding_and_bridge_netfilter_are_kept_on_across_reboots(tmp_path):
    lines = rendered(tmp_path, "sysctl.conf.j2", "worker-1").splitlines()
    assert "net.ipv4.ip_forward = 1" in lines
    assert "net.bridge.bridge-nf-call-iptables = 1" in lines
    _, play = load_play(tmp_path, LAB, "all", "podnet")
    modules = next(t for t in play.tasks if t.args.get("dest", "").startswith(
        "/etc/modules-load.d/"))
    assert "br_netfilter" in modules.args["content"].splitlines()


def test_unit_restarts_on_failure_and_starts_at_boot(tmp_path):
    lines = rendered(tmp_path, "lab-podnet.service.j2", "cp-1").splitlines()
    assert "Restart=on-failure" in lines and "WantedBy=multi-user.target" in lines


def test_changes_to_unit_kubeconfig_and_certificates_restart_the_daemon(tmp_path):
    _, play = load_play(tmp_path, LAB, "all", "podnet")
    notifying = {(t.module, t.args.get("src")) for t in play.tasks if t.notify}
    assert ("template", "lab-podnet.service.j2") in notifying
    assert ("template", "kubeconfig.j2") in notifying
    assert ("command", None) in notifying  # the agents changed
    assert all(t.notify == ["restart podnet"] for t in play.tasks if t.notify)
    handlers = yaml.safe_load((ROLE / "handlers" / "main.yml").read_text())
    assert [h["name"] for h in handlers] == ["restart podnet"]
