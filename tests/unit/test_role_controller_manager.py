"""The controller-manager role rendered the way a deploy renders it: the unit's flags are
fed to the controller manager's own flag parser (Node IPAM from the lab's cluster CIDR,
lab-short node lifecycle), the kubeconfig to the agents' kubeconfig reader, and the files
they name must be the ones the role copies."""

from __future__ import annotations

import pytest
import yaml

from agents.controller_manager.main import parse_args
from agents.controller_manager.nodeipam import CidrPlan
from agents.kubelet.config import parse_config
from labctl.inventory.defaults import DEFAULTS
from tests.unit.role_rendering import exec_start
from tests.unit.test_kubelet_role import LAB, rendered
from tests.unit.test_role_scheduler import (
    HA,
    RoleView,
    assert_notifies_restart,
    healthz_check_exit_codes,
    kubeconfig_files,
)

pytestmark = pytest.mark.unit

UNIT = "write the controller manager's systemd unit"
KUBECONFIG = "write the controller manager's kubeconfig"
CERTS = "copy the controller manager's certificates from the lab's PKI"


def manager_args(view: RoleView, host: str = "cp-1"):
    argv = exec_start(view.render(UNIT, host))
    assert argv[:3] == ["/opt/lab/venv/bin/python", "-m", "agents.controller_manager"]
    return parse_args(argv[3:])


def test_unit_runs_a_leader_elected_manager_allocating_node_cidrs(tmp_path):
    args = manager_args(RoleView(tmp_path, "controller-manager"))
    assert args.kubeconfig == "/etc/lab/controller-manager.conf"
    assert args.leader_elect is True
    assert args.allocate_node_cidrs is True
    # The inventory writes neither: the role falls back to labctl's documented defaults.
    assert args.cidr_plan == CidrPlan.parse(DEFAULTS["lab_cluster_cidr"].value,
                                            DEFAULTS["lab_node_cidr_mask"].value)
    assert (args.bind_address, args.port) == ("127.0.0.1", 10257)


def test_cluster_cidr_follows_the_inventory(tmp_path):
    text = HA.replace("lab_network: 10.9.4.0/24", "lab_network: 10.9.4.0/24, "
                      "lab_cluster_cidr: 10.50.0.0/16, lab_node_cidr_mask: 26")
    args = manager_args(RoleView(tmp_path, "controller-manager", text))
    assert args.cidr_plan == CidrPlan.parse("10.50.0.0/16", 26)


def test_node_lifecycle_timings_are_lab_short(tmp_path):
    args = manager_args(RoleView(tmp_path, "controller-manager"))
    assert args.node_monitor_grace_period < 40          # Kubernetes' default
    assert args.node_monitor_period <= 5
    assert args.default_toleration_seconds < 300        # Kubernetes' default
    assert args.node_monitor_period < args.node_monitor_grace_period


@pytest.mark.parametrize("provider, most_seconds", [("nspawn", 10), ("libvirt", 20)])
def test_a_node_is_unknown_after_several_missed_kubelet_heartbeats(tmp_path, provider,
                                                                   most_seconds):
    inventory = LAB.replace("lab_network: 10.9.3.0/24",
                            f"lab_network: 10.9.3.0/24, lab_provider: {provider}")
    (tmp_path / "kubelet").mkdir()
    (tmp_path / "cm").mkdir()
    _, text = rendered(tmp_path / "kubelet", "config.yaml.j2", inventory)
    renew = parse_config(yaml.safe_load(text), "rendered config").lease_renew_seconds
    grace = manager_args(RoleView(tmp_path / "cm", "controller-manager", inventory)
                         ).node_monitor_grace_period
    assert grace >= 2 * renew          # one late renewal does not make a node Unknown
    assert grace <= most_seconds       # a stopped worker's pods move soon


def test_every_controller_runs(tmp_path):
    args = manager_args(RoleView(tmp_path, "controller-manager"))
    assert {"namespace", "nodeipam", "nodelifecycle", "replicaset", "deployment",
            "endpoints", "garbagecollector"} <= set(args.controllers.split(","))


def test_kubeconfig_points_at_the_local_api_server_with_the_copied_files(tmp_path):
    view = RoleView(tmp_path, "controller-manager")
    server, files = kubeconfig_files(view.render(KUBECONFIG, "cp-2"))
    assert server == "https://10.9.4.12:6443"
    assert files == view.copied("cp-2", CERTS)
    assert files == {"/etc/lab/pki/ca.crt", "/etc/lab/pki/kube-controller-manager.crt",
                     "/etc/lab/pki/kube-controller-manager.key"}


def test_private_key_and_kubeconfig_are_root_only(tmp_path):
    view = RoleView(tmp_path, "controller-manager")
    modes = {i["dest"]: i["mode"] for i in view.task(CERTS).loop}
    assert modes["kube-controller-manager.key"] == "0600"
    assert view.task(KUBECONFIG).args["mode"] == "0600"


def test_unit_restarts_on_failure_and_starts_at_boot(tmp_path):
    lines = RoleView(tmp_path, "controller-manager").render(UNIT, "cp-1").splitlines()
    assert "Restart=on-failure" in lines and "WantedBy=multi-user.target" in lines


def test_changes_notify_the_restart_handler(tmp_path):
    assert_notifies_restart(RoleView(tmp_path, "controller-manager"),
                            "restart controller-manager")


def test_deploy_waits_for_healthz(tmp_path):
    wait = RoleView(tmp_path, "controller-manager").task(
        "wait until the controller manager is healthy")
    assert wait.until is not None and wait.retries >= 30
    assert wait.args["argv"][-1].endswith(":{{ controller_manager_port }}/healthz")


def test_health_check_passes_only_on_a_2xx_answer(tmp_path):
    ok, broken = healthz_check_exit_codes(RoleView(tmp_path, "controller-manager"))
    assert ok == 0 and broken != 0


@pytest.mark.parametrize("provider, lease, renew", [("nspawn", 15, 10), ("libvirt", 60, 40)])
def test_leases_give_slow_vm_control_planes_time_to_renew(tmp_path, provider, lease, renew):
    text = HA.replace("lab_network: 10.9.4.0/24",
                      f"lab_network: 10.9.4.0/24, lab_provider: {provider}")
    args = manager_args(RoleView(tmp_path, "controller-manager", text))
    assert (args.leader_elect_lease_duration, args.leader_elect_renew_deadline) == (lease, renew)
