"""The apiserver-lb role: haproxy only where it is needed, in front of every API server."""

from __future__ import annotations

import pytest

from tests.unit.role_rendering import render_template_task, task_variables
from tests.unit.test_apiserver_role import EXTERNAL, STACKED

pytestmark = pytest.mark.unit

SINGLE = """
all:
  vars: {lab_name: one, lab_network: 10.9.3.0/24}
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
"""


def rendered(tmp_path, inventory, host):
    _, task, variables = task_variables(tmp_path, inventory, "all", "apiserver-lb", host)
    return variables, render_template_task("apiserver-lb", task, variables)


def enabled(variables) -> bool:
    return str(variables["apiserver_lb_enabled"]).lower() == "true"


@pytest.mark.parametrize(("inventory", "host", "wanted"), [
    (STACKED, "worker-1", True), (STACKED, "cp-2", False),
    (EXTERNAL, "worker-1", True), (EXTERNAL, "etcd-1", True), (EXTERNAL, "cp-1", False),
    (SINGLE, "worker-1", False),
])
def test_only_hosts_without_an_api_server_in_ha_labs_get_a_balancer(tmp_path, inventory, host, wanted):
    variables, _ = rendered(tmp_path, inventory, host)
    assert enabled(variables) is wanted


def test_every_control_plane_is_a_checked_backend(tmp_path):
    _, config = rendered(tmp_path, EXTERNAL, "worker-1")
    servers = [line.split() for line in config.splitlines() if line.strip().startswith("server ")]
    assert servers == [["server", "cp-1", "10.9.2.11:6443"], ["server", "cp-2", "10.9.2.12:6443"]]
    assert "bind 127.0.0.1:6443" in config
    assert "http-check send meth GET uri /readyz" in config
