"""The scheduler role rendered the way a deploy renders it: the unit's flags are fed to the
scheduler's own flag parser, the kubeconfig to the agents' kubeconfig reader, and the
files they name must be the ones the role copies."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from agents.kube.kubeconfig import parse_kubeconfig
from agents.scheduler.main import parse_args
from labctl.engine.templating import LazyVars
from labctl.engine.variables import HostState, HostVars, inventory_vars_of, magic_vars, task_vars
from tests.unit.role_rendering import exec_start, load_play, render_template_task

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]

HA = """
all:
  vars: {lab_name: ha, lab_network: 10.9.4.0/24}
  children:
    control_plane:
      hosts:
        cp-1: {ansible_host: 10.9.4.11}
        cp-2: {ansible_host: 10.9.4.12}
    etcd:
      children:
        control_plane:
    workers:
      hosts:
        worker-1: {ansible_host: 10.9.4.21}
"""


class RoleView:
    """One role's play on an inventory: its tasks by name and what they render to."""

    def __init__(self, tmp_path: Path, role: str, inventory_text: str = HA):
        self.role, self.tmp_path = role, tmp_path
        self.inventory, self.play = load_play(tmp_path, inventory_text, "control_plane", role)

    def task(self, name: str):
        return next(t for t in self.play.tasks if t.name == name)

    def variables(self, task, host: str) -> LazyVars:
        inv = self.inventory
        states = {h: HostState(h, inventory_vars_of(inv, h)) for h in inv.hosts}
        hostvars = HostVars(states, inv.extra_vars)
        magic = magic_vars(inv, host, inv.hosts_matching(self.play.hosts), hostvars, False,
                           False, str(self.tmp_path))
        return LazyVars(task_vars(self.play, task, states[host], inv.extra_vars, magic))

    def render(self, task_name: str, host: str) -> str:
        task = self.task(task_name)
        return render_template_task(self.role, task, self.variables(task, host))

    def copied(self, host: str, copy_task: str) -> set[str]:
        task = self.task(copy_task)
        dest_dir = self.variables(task, host)[f"{self.prefix}_pki_dir"]
        return {f"{dest_dir}/{item['dest']}" for item in task.loop}

    @property
    def prefix(self) -> str:
        return self.role.replace("-", "_")


def kubeconfig_files(text: str) -> tuple[str, set[str]]:
    """(server, the files a kubeconfig names) as the agents read it."""
    config = parse_kubeconfig(yaml.safe_load(text), "/", None, where="kubeconfig")
    return config.server, {config.ca_file, config.cert_file, config.key_file}


def assert_notifies_restart(view: RoleView, handler: str) -> None:
    notifying = sorted((t.module, t.notify) for t in view.play.tasks if t.notify)
    assert notifying == [("command", [handler]), ("copy", [handler]),
                         ("template", [handler]), ("template", [handler])]
    handlers = yaml.safe_load((ROOT / "roles" / view.role / "handlers" / "main.yml")
                              .read_text())
    assert handlers[0]["name"] == handler
    assert all(h.get("listen", h["name"]) == handler for h in handlers)


def healthz_check_exit_codes(view: RoleView) -> tuple[int, int]:
    """(exit code against a /healthz answering 200, against one answering 500) of the
    role's health check snippet, run as the deploy runs it."""
    snippet = view.variables(view.play.tasks[0], "cp-1")[f"{view.prefix}_healthz_check"]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/healthz" else 500)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        return tuple(subprocess.run([sys.executable, "-c", snippet, f"{base}{path}"],
                                    capture_output=True, timeout=10).returncode
                     for path in ("/healthz", "/broken"))
    finally:
        server.shutdown()
        server.server_close()


# -- the scheduler ------------------------------------------------------------------------


def scheduler_args(view: RoleView, host: str):
    argv = exec_start(view.render("write the scheduler's systemd unit", host))
    assert argv[:3] == ["/opt/lab/venv/bin/python", "-m", "agents.scheduler"]
    return parse_args(argv[3:])


def test_unit_runs_a_leader_elected_scheduler_with_its_kubeconfig(tmp_path):
    args = scheduler_args(RoleView(tmp_path, "scheduler"), "cp-2")
    assert args.kubeconfig == "/etc/lab/scheduler.conf"
    assert args.leader_elect is True
    assert (args.bind_address, args.port) == ("127.0.0.1", 10259)


def test_leader_election_can_be_turned_off(tmp_path):
    text = HA.replace("lab_network: 10.9.4.0/24", "lab_network: 10.9.4.0/24, "
                      "scheduler_leader_elect: false")
    assert scheduler_args(RoleView(tmp_path, "scheduler", text), "cp-1").leader_elect is False


def test_kubeconfig_points_at_the_local_api_server_with_the_copied_files(tmp_path):
    view = RoleView(tmp_path, "scheduler")
    server, files = kubeconfig_files(view.render("write the scheduler's kubeconfig", "cp-2"))
    assert server == "https://10.9.4.12:6443"
    assert files == view.copied("cp-2", "copy the scheduler's certificates from the lab's PKI")
    assert files == {"/etc/lab/pki/ca.crt", "/etc/lab/pki/kube-scheduler.crt",
                     "/etc/lab/pki/kube-scheduler.key"}


def test_private_key_and_kubeconfig_are_root_only(tmp_path):
    view = RoleView(tmp_path, "scheduler")
    modes = {i["dest"]: i["mode"] for i in
             view.task("copy the scheduler's certificates from the lab's PKI").loop}
    assert modes["kube-scheduler.key"] == "0600"
    assert view.task("write the scheduler's kubeconfig").args["mode"] == "0600"


def test_unit_restarts_on_failure_and_starts_at_boot(tmp_path):
    lines = RoleView(tmp_path, "scheduler").render(
        "write the scheduler's systemd unit", "cp-1").splitlines()
    assert "Restart=on-failure" in lines and "WantedBy=multi-user.target" in lines


def test_changes_notify_the_restart_handler(tmp_path):
    assert_notifies_restart(RoleView(tmp_path, "scheduler"), "restart scheduler")


def test_deploy_waits_for_healthz(tmp_path):
    view = RoleView(tmp_path, "scheduler")
    wait = view.task("wait until the scheduler is healthy")
    assert wait.until is not None and wait.retries >= 30
    assert wait.args["argv"][1] == "-c"
    assert wait.args["argv"][-1].endswith(":{{ scheduler_port }}/healthz")


def test_health_check_passes_only_on_a_2xx_answer(tmp_path):
    ok, broken = healthz_check_exit_codes(RoleView(tmp_path, "scheduler"))
    assert ok == 0 and broken != 0


@pytest.mark.parametrize("provider, lease, renew", [("nspawn", 15, 10), ("libvirt", 60, 40)])
def test_leases_give_slow_vm_control_planes_time_to_renew(tmp_path, provider, lease, renew):
    text = HA.replace("lab_network: 10.9.4.0/24",
                      f"lab_network: 10.9.4.0/24, lab_provider: {provider}")
    args = scheduler_args(RoleView(tmp_path, "scheduler", text), "cp-1")
    assert (args.leader_elect_lease_duration, args.leader_elect_renew_deadline) == (lease, renew)
