"""The etcd role's unit file, rendered the way a deploy renders it, for stacked and
external inventories; its flags are fed to the etcd agent's own flag parser."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from agents.etcd.config import parse_args
from tests.unit.role_rendering import exec_start, render_template_task, task_variables

pytestmark = pytest.mark.unit

ROLE = Path(__file__).resolve().parents[2] / "roles" / "etcd"

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
  vars: {lab_name: ext, lab_network: 10.9.2.0/24}
  children:
    etcd:
      hosts:
        etcd-1: {ansible_host: 10.9.2.31}
        etcd-2: {ansible_host: 10.9.2.32}
        etcd-3: {ansible_host: 10.9.2.33}
    control_plane:
      hosts:
        cp-1: {ansible_host: 10.9.2.11}
    workers:
      hosts:
        worker-1: {ansible_host: 10.9.2.21}
"""

SINGLE = """
all:
  vars: {lab_name: one, lab_network: 10.9.3.0/24, etcd_heartbeat_interval: 50,
         etcd_election_timeout: 500}
  children:
    control_plane:
      hosts:
        cp-1: {ansible_host: 10.9.3.11}
    etcd:
      children:
        control_plane:
"""


def role_vars(tmp_path: Path, inventory_text: str, host: str):
    """(play, the unit template task, the variables that task sees on ``host``)."""
    return task_variables(tmp_path, inventory_text, "etcd", "etcd", host)


def render_unit(tmp_path: Path, inventory_text: str, host: str) -> str:
    _, task, variables = role_vars(tmp_path, inventory_text, host)
    return render_template_task("etcd", task, variables)


def agent_config(unit: str):
    argv = exec_start(unit)
    assert argv[:3] == ["/opt/lab/venv/bin/python", "-m", "agents.etcd"]
    return parse_args(argv[3:])


def test_stacked_initial_cluster_is_exactly_the_control_plane(tmp_path):
    cfg = agent_config(render_unit(tmp_path, STACKED, "cp-2"))
    assert cfg.initial_members() == {
        "cp-1": ["https://10.9.1.11:2380"],
        "cp-2": ["https://10.9.1.12:2380"],
        "cp-3": ["https://10.9.1.13:2380"],
    }
    assert cfg.name == "cp-2"
    assert cfg.initial_cluster_state == "new"
    assert cfg.initial_cluster_token == "stk-etcd"


def test_external_initial_cluster_is_the_etcd_group_only(tmp_path):
    cfg = agent_config(render_unit(tmp_path, EXTERNAL, "etcd-3"))
    assert list(cfg.initial_members()) == ["etcd-1", "etcd-2", "etcd-3"]
    assert cfg.initial_members()["etcd-3"] == ["https://10.9.2.33:2380"]
    assert "cp-1" not in cfg.initial_cluster and "worker-1" not in cfg.initial_cluster


def test_urls_use_the_hosts_address_and_loopback(tmp_path):
    cfg = agent_config(render_unit(tmp_path, EXTERNAL, "etcd-1"))
    assert cfg.listen_client_urls == ["https://10.9.2.31:2379", "https://127.0.0.1:2379"]
    assert cfg.advertise_client_urls == ["https://10.9.2.31:2379"]
    assert cfg.listen_peer_urls == ["https://10.9.2.31:2380"]
    assert cfg.initial_advertise_peer_urls == ["https://10.9.2.31:2380"]
    assert cfg.listen_metrics_urls == ["http://127.0.0.1:2381"]
    assert cfg.data_dir == "/var/lib/lab/etcd"


def test_clients_and_peers_need_certificates_signed_by_the_lab_ca(tmp_path):
    cfg = agent_config(render_unit(tmp_path, STACKED, "cp-1"))
    pki = "/etc/lab/pki/etcd"
    assert (cfg.cert_file, cfg.key_file, cfg.trusted_ca_file) == (
        f"{pki}/server.crt", f"{pki}/server.key", f"{pki}/ca.crt")
    assert (cfg.peer_cert_file, cfg.peer_key_file, cfg.peer_trusted_ca_file) == (
        f"{pki}/peer.crt", f"{pki}/peer.key", f"{pki}/ca.crt")
    assert cfg.client_cert_auth is True
    assert cfg.peer_client_cert_auth is True


def test_timing_defaults_are_etcds_and_the_inventory_overrides_them(tmp_path):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
    cfg = agent_config(render_unit(tmp_path / "a", STACKED, "cp-1"))
    assert (cfg.heartbeat_interval, cfg.election_timeout, cfg.snapshot_count) == (100, 1000, 10000)
    cfg = agent_config(render_unit(tmp_path / "b", SINGLE, "cp-1"))
    assert (cfg.heartbeat_interval, cfg.election_timeout) == (50, 500)
    assert cfg.initial_members() == {"cp-1": ["https://10.9.3.11:2380"]}


def test_unit_restarts_on_failure_and_starts_at_boot(tmp_path):
    unit = render_unit(tmp_path, SINGLE, "cp-1")
    lines = unit.splitlines()
    assert "Restart=on-failure" in lines
    assert "WantedBy=multi-user.target" in lines
    assert "Type=simple" in lines


def test_rendering_is_stable(tmp_path):
    """The same inventory renders the same bytes: a second deploy changes nothing."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert render_unit(tmp_path / "a", STACKED, "cp-3") == render_unit(tmp_path / "b", STACKED, "cp-3")


def test_unit_and_certificate_changes_restart_the_member(tmp_path):
    play, _, _ = role_vars(tmp_path, SINGLE, "cp-1")
    notifying = {t.name for t in play.tasks if "restart etcd" in t.notify}
    assert notifying == {"write the member's systemd unit",
                         "copy the member's certificates from the lab's PKI",
                         "restart when the agents changed"}
    handlers = [h for h in play.handlers if h.name == "restart etcd" or "restart etcd" in h.listen]
    assert [h.module for h in handlers] == ["systemd_service", "command"]
    assert handlers[0].args["state"] == "restarted"


def test_certificates_come_from_the_lab_pki_by_host_name(tmp_path):
    play, _, _ = role_vars(tmp_path, SINGLE, "cp-1")
    copy = next(t for t in play.tasks if t.name == "copy the member's certificates from the lab's PKI")
    sources = {item["src"] for item in copy.loop}
    assert sources == {
        "ca.crt", "etcd/{{ inventory_hostname }}-server.crt", "etcd/{{ inventory_hostname }}-server.key",
        "etcd/{{ inventory_hostname }}-peer.crt", "etcd/{{ inventory_hostname }}-peer.key",
        "etcd/healthcheck-client.crt", "etcd/healthcheck-client.key",
    }
    keys = [item for item in copy.loop if item["dest"].endswith(".key")]
    assert keys and all(item["mode"] == "0600" for item in keys)


def test_defaults_are_documented():
    text = (ROLE / "defaults" / "main.yml").read_text()
    defaults = yaml.safe_load(text)
    for name in ("etcd_heartbeat_interval", "etcd_election_timeout", "etcd_snapshot_count"):
        line = next(x for x in text.splitlines() if x.startswith(f"{name}:"))
        assert "#" in line, f"{name} has no comment saying what it is"
        assert isinstance(defaults[name], int)
