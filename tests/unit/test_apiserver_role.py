"""The apiserver role's unit file, rendered the way a deploy renders it, for stacked and
external inventories; its flags are fed to the API server agent's own flag parser."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from agents.apiserver.main import parse_args
from tests.unit.role_rendering import exec_start, load_play, render_template_task
from tests.unit.role_rendering import task_variables as role_task_variables

pytestmark = pytest.mark.unit

ROLE = Path(__file__).resolve().parents[2] / "roles" / "apiserver"

STACKED = """
all:
  vars: {lab_name: stk, lab_network: 10.9.1.0/24}
  children:
    control_plane:
      hosts:
        cp-1: {ansible_host: 10.9.1.11}
        cp-2: {ansible_host: 10.9.1.12}
        cp-3: {ansible_host: 10.9.1.13}
    etcd:
      children:
        control_plane:
    workers:
      hosts:
        worker-1: {ansible_host: 10.9.1.21}
"""

EXTERNAL = """
all:
  vars: {lab_name: ext, lab_network: 10.9.2.0/24, apiserver_service_cidr: 10.100.0.0/16}
  children:
    etcd:
      hosts:
        etcd-1: {ansible_host: 10.9.2.31}
        etcd-2: {ansible_host: 10.9.2.32}
        etcd-3: {ansible_host: 10.9.2.33}
    control_plane:
      hosts:
        cp-1: {ansible_host: 10.9.2.11}
        cp-2: {ansible_host: 10.9.2.12}
    workers:
      hosts:
        worker-1: {ansible_host: 10.9.2.21}
"""


def load(tmp_path: Path, inventory_text: str):
    return load_play(tmp_path, inventory_text, "control_plane", "apiserver")


def task_variables(tmp_path: Path, inventory_text: str, host: str, module: str = "template"):
    """(play, the first ``module`` task, the variables that task sees on ``host``)."""
    return role_task_variables(tmp_path, inventory_text, "control_plane", "apiserver", host,
                               module)


def render_unit(tmp_path: Path, inventory_text: str, host: str) -> str:
    _, task, variables = task_variables(tmp_path, inventory_text, host)
    return render_template_task("apiserver", task, variables)


def agent_args(unit: str):
    argv = exec_start(unit)
    assert argv[:3] == ["/opt/lab/venv/bin/python", "-m", "agents.apiserver"]
    return parse_args(argv[3:])


def test_stacked_stores_in_every_control_plane_member(tmp_path):
    args = agent_args(render_unit(tmp_path, STACKED, "cp-2"))
    assert args.etcd_servers == ("https://10.9.1.11:2379,https://10.9.1.12:2379,"
                                 "https://10.9.1.13:2379")
    # every address: the host's own scheduler and controller manager use 127.0.0.1
    assert (args.bind_address, args.advertise_address, args.secure_port) == (
        "0.0.0.0", "10.9.1.12", 6443)
    assert args.service_cluster_ip_range == "10.96.0.0/12"


def test_external_stores_in_the_etcd_hosts_only(tmp_path):
    args = agent_args(render_unit(tmp_path, EXTERNAL, "cp-1"))
    assert args.etcd_servers == ("https://10.9.2.31:2379,https://10.9.2.32:2379,"
                                 "https://10.9.2.33:2379")
    assert args.advertise_address == "10.9.2.11"
    assert args.service_cluster_ip_range == "10.100.0.0/16"  # the inventory's value wins


def test_tls_files_are_the_ones_the_role_copies(tmp_path):
    args = agent_args(render_unit(tmp_path, STACKED, "cp-1"))
    play, copy_task, variables = task_variables(tmp_path, STACKED, "cp-1", "copy")
    copied = {f"/etc/lab/pki/{item['dest']}" for item in copy_task.loop}
    used = {args.etcd_cafile, args.etcd_certfile, args.etcd_keyfile, args.tls_cert_file,
            args.tls_private_key_file, args.client_ca_file, args.kubelet_client_certificate,
            args.kubelet_client_key, args.kubelet_certificate_authority}
    assert used <= copied, f"the unit uses files the role does not copy: {used - copied}"
    assert args.token_auth_file is None


def test_token_file_flag_only_when_given(tmp_path):
    text = STACKED.replace("lab_network: 10.9.1.0/24",
                           "lab_network: 10.9.1.0/24, apiserver_token_auth_file: /etc/lab/tokens.csv")
    assert agent_args(render_unit(tmp_path, text, "cp-1")).token_auth_file == "/etc/lab/tokens.csv"


def test_unit_restarts_on_failure_and_starts_at_boot(tmp_path):
    lines = render_unit(tmp_path, STACKED, "cp-1").splitlines()
    assert "Restart=on-failure" in lines
    assert "WantedBy=multi-user.target" in lines


def test_changes_to_unit_and_certificates_notify_the_restart_handler(tmp_path):
    _, play = load(tmp_path, STACKED)
    notifying = {t.name: (t.module, t.notify) for t in play.tasks if t.notify}
    assert sorted(notifying.values()) == [("command", ["restart apiserver"]),
                                          ("copy", ["restart apiserver"]),
                                          ("template", ["restart apiserver"])]
    agents_changed = notifying["restart when the agents changed"]
    assert agents_changed == ("command", ["restart apiserver"])
    handlers = yaml.safe_load((ROLE / "handlers" / "main.yml").read_text())
    assert handlers[0]["name"] == "restart apiserver"
    assert all(h.get("listen", h["name"]) == "restart apiserver" for h in handlers)


def test_deploy_waits_for_readyz_through_the_probe_tool(tmp_path):
    _, play = load(tmp_path, STACKED)
    wait = next(t for t in play.tasks if t.module == "command" and "argv" in t.args)
    assert "/readyz" in wait.args["argv"] and wait.until is not None and wait.retries >= 60
