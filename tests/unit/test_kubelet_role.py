"""The kubelet role's config, kubeconfig and unit, rendered the way a deploy renders them
for a worker; the config is fed to the kubelet's own config parser."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from agents.kubelet.config import parse_config
from agents.kubelet.main import parse_args
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


def rendered(tmp_path, src: str, inventory: str = LAB, host: str = "worker-2"):
    play, _, variables = role_task_variables(tmp_path, inventory, "workers", "kubelet", host)
    task = next(t for t in play.tasks if t.module == "template" and t.args["src"] == src)
    return play, render_template_task("kubelet", task, variables)


def test_config_parses_with_the_node_identity_and_lab_networks(tmp_path):
    _, text = rendered(tmp_path, "config.yaml.j2")
    cfg = parse_config(yaml.safe_load(text), "rendered config")
    assert (cfg.node_name, cfg.node_ip, cfg.port) == ("worker-2", "10.9.3.22", 10250)
    assert cfg.kubeconfig == "/etc/lab/kubelet/kubeconfig"
    assert (cfg.tls_cert_file, cfg.tls_key_file, cfg.client_ca_file) == (
        "/etc/lab/kubelet/kubelet.crt", "/etc/lab/kubelet/kubelet.key",
        "/etc/lab/kubelet/ca.crt")
    assert cfg.cluster_dns == ["10.96.0.10"] and cfg.cluster_domain == "cluster.local"
    assert cfg.kubernetes_service == "10.96.0.1:443" and cfg.pod_cidr == ""
    assert (cfg.backoff_initial_seconds, cfg.backoff_max_seconds) == (10, 300)
    assert cfg.labels == {}
    assert cfg.pod_unreachable == ["10.9.3.1/32"]  # the lab machine


def test_kubeconfig_uses_the_node_certificate_and_a_swappable_server(tmp_path):
    play, text = rendered(tmp_path, "kubeconfig.j2")
    doc = yaml.safe_load(text)
    cluster, user = doc["clusters"][0]["cluster"], doc["users"][0]["user"]
    assert cluster["server"] == "https://10.9.3.11:6443"
    copy = next(t for t in play.tasks if t.module == "copy")
    copied = {f"/etc/lab/kubelet/{item['dest']}" for item in copy.loop}
    assert {cluster["certificate-authority"], user["client-certificate"],
            user["client-key"]} <= copied
    inv = LAB.replace("lab_network: 10.9.3.0/24",
                      "lab_network: 10.9.3.0/24, kube_apiserver_url: 'https://10.9.3.5:6443'")
    _, text = rendered(tmp_path, "kubeconfig.j2", inv)
    assert yaml.safe_load(text)["clusters"][0]["cluster"]["server"] == "https://10.9.3.5:6443"


def test_unit_runs_the_agent_and_kills_only_the_kubelet(tmp_path):
    _, unit = rendered(tmp_path, "lab-kubelet.service.j2")
    argv = exec_start(unit)
    assert argv[:3] == ["/opt/lab/venv/bin/python", "-m", "agents.kubelet"]
    assert parse_args(argv[3:]).config == "/etc/lab/kubelet/config.yaml"
    lines = unit.splitlines()
    assert "KillMode=process" in lines and "Restart=on-failure" in lines


def test_certificates_come_from_the_node_entry_of_the_pki(tmp_path):
    play, _, _ = role_task_variables(tmp_path, LAB, "workers", "kubelet", "worker-1")
    copy = next(t for t in play.tasks if t.module == "copy")
    sources = [item["src"] for item in copy.loop]
    assert sources == ["ca.crt", "{{ kubelet_cert }}.crt", "{{ kubelet_cert }}.key"]
    defaults = yaml.safe_load((ROLES / "kubelet" / "defaults" / "main.yml").read_text())
    assert defaults["kubelet_cert"] == "kubelet/{{ inventory_hostname }}"


def test_changes_notify_the_restart_handler(tmp_path):
    play, _, _ = role_task_variables(tmp_path, LAB, "workers", "kubelet", "worker-1")
    notifying = sorted((t.module, t.notify) for t in play.tasks if t.notify)
    handler = ["restart kubelet"]
    assert notifying == [("command", handler), ("copy", handler), ("template", handler),
                         ("template", handler), ("template", handler)]
    handlers = yaml.safe_load((ROLES / "kubelet" / "handlers" / "main.yml").read_text())
    assert [h["name"] for h in handlers] == ["restart kubelet"]
