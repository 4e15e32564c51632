"""The role engine against real sshd hosts in network namespaces."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from labctl.connection import ConnectionPool
from labctl.engine import DeployOptions, deploy
from labctl.inventory import load_inventory
from labctl.testing.netns_hosts import NetnsHosts
from tests.conftest import need_root, need_tool

pytestmark = pytest.mark.component

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"


@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    need_root()
    need_tool("sshd")
    with NetnsHosts(count=3, workdir=tmp_path_factory.mktemp("engfarm")) as hosts:
        yield hosts


def inventory(farm: NetnsHosts, tmp_path: Path, extra_vars: dict | None = None):
    path = farm.write_inventory(tmp_path / "inv.yml", groups={"web": [h.name for h in farm.hosts]})
    return load_inventory(path, extra_vars or {})


def apply(farm, tmp_path, site=FIXTURES / "site-webapp.yml", extra_vars=None, **options):
    inv = inventory(farm, tmp_path, extra_vars)
    out = io.StringIO()
    with ConnectionPool({h.name: (h.address, h.port) for h in farm.hosts},
                        key_path=farm.key_path, known_hosts=farm.known_hosts) as pool:
        result = deploy(inv, pool, site, DeployOptions(out=out, **options))
    return result, out.getvalue()


def test_role_applied_twice_second_run_changes_nothing(farm, tmp_path):
    first, out = apply(farm, tmp_path, extra_vars={"base_root": "/srv/twice"})
    assert first.ok, out
    assert all(s["changed"] >= 10 for s in first.stats.values()), first.stats
    for host in farm.hosts:
        conf = host.upper("/srv/twice/webapp/etc/webapp.conf").read_text()
        assert f"host = {host.name}\nport = 8080\n" in conf
        assert host.upper("/srv/twice/webapp/data/bob.user").read_text() == "user bob\n"
        assert len(host.upper("/srv/twice/webapp/run/restarts").read_text().splitlines()) == 1
    second, out = apply(farm, tmp_path, extra_vars={"base_root": "/srv/twice"})
    assert second.ok, out
    assert {h: s["changed"] for h, s in second.stats.items()} == {h.name: 0 for h in farm.hosts}, out
    assert "RUNNING HANDLER" not in out
    # one SSH exec per host; every task a single round trip (loops: one per item)
    assert second.round_trips < 25 * len(farm.hosts)


def test_check_mode_changes_nothing_on_the_hosts(farm, tmp_path):
    result, out = apply(farm, tmp_path, extra_vars={"base_root": "/srv/checked"}, check=True, diff=True)
    assert result.ok, out
    assert all(s["changed"] > 0 for s in result.stats.values())
    for host in farm.hosts:
        assert not host.upper("/srv/checked").exists()
    applied, _ = apply(farm, tmp_path, extra_vars={"base_root": "/srv/checked"})
    assert applied.ok
    before = {h.name: h.upper("/srv/checked/webapp/etc/webapp.conf").read_text() for h in farm.hosts}
    result, out = apply(farm, tmp_path, extra_vars={"base_root": "/srv/checked", "webapp_port": 9090},
                        check=True, diff=True)
    assert result.ok and "-port = 8080\n+port = 9090" in out
    for host in farm.hosts:
        assert host.upper("/srv/checked/webapp/etc/webapp.conf").read_text() == before[host.name]


def test_failure_names_host_task_and_message_and_others_finish(farm, tmp_path):
    bad = farm.hosts[1].name
    site = tmp_path / "site.yml"
    site.write_text(f"""\
- hosts: all
  tasks:
    - name: make dir
      file: {{path: /srv/fail-test, state: directory}}
    - name: break one host
      command: ls /nonexistent-{bad}
      when: inventory_hostname == '{bad}'
    - name: after the break
      file: {{path: /srv/fail-test/after, state: directory}}
""")
    result, out = apply(farm, tmp_path, site=site)
    assert not result.ok and result.exit_code == 1
    (failure,) = result.failures
    assert failure.host == bad and failure.task == "break one host"
    assert "non-zero return code 2" in failure.msg
    assert f"fatal: [{bad}]: FAILED!" in out and f"/nonexistent-{bad}" in out
    for host in farm.hosts:
        assert host.upper("/srv/fail-test/after").is_dir() == (host.name != bad)


def test_hosts_run_in_parallel(farm, tmp_path):
    site = tmp_path / "site.yml"
    site.write_text("""\
- hosts: all
  gather_facts: false
  tasks:
    - name: hold for a while
      shell: "date +%s.%N; sleep 0.6; date +%s.%N"
      register: span
    - copy: {content: "{{ span.stdout }}", dest: /srv/span}
""")
    result, out = apply(farm, tmp_path, site=site, forks=3)
    assert result.ok, out
    spans = [tuple(map(float, h.upper("/srv/span").read_text().split())) for h in farm.hosts]
    latest_start = max(s for s, _ in spans)
    earliest_end = min(e for _, e in spans)
    assert latest_start < earliest_end, spans      # all three were sleeping at once


def test_facts_come_from_the_hosts(farm, tmp_path):
    site = tmp_path / "site.yml"
    site.write_text("""\
- hosts: all
  tasks:
    - copy:
        content: "{{ ansible_hostname }} {{ ansible_all_ipv4_addresses | join(',') }} {{ ansible_default_ipv4 | length }} {{ ansible_os_family }}"
        dest: /srv/facts
""")
    result, out = apply(farm, tmp_path, site=site)
    assert result.ok, out
    for host in farm.hosts:
        assert host.upper("/srv/facts").read_text() == f"{host.name} {host.address} 0 Debian"


def test_deploy_cli_exit_code_and_json(farm, tmp_path, monkeypatch):
    """``labctl deploy`` end to end: the lab's key from LabState, --json, --limit."""
    monkeypatch.setenv("LABCTL_HOME", str(tmp_path / "home"))
    first = farm.hosts[0].name
    groups = {"etcd": [first], "control_plane": [first], "web": [h.name for h in farm.hosts]}
    inv_path = farm.write_inventory(tmp_path / "inv.yml", groups=groups)
    inv = load_inventory(inv_path, {})
    assert not inv.errors(), inv.errors()
    from labctl.state import LabState

    state = LabState.for_lab(inv.lab_name).ensure()
    shutil.copy(farm.key_path, state.private_key)
    shutil.copy(farm.known_hosts, state.known_hosts)
    target = farm.hosts[0].name
    cmd = [sys.executable, "-m", "labctl", "deploy", "-i", str(inv_path), "--site",
           str(FIXTURES / "site-webapp.yml"), "--limit", target, "--json",
           "-e", "base_root=/srv/cli"]
    env = dict(os.environ, LABCTL_HOME=str(tmp_path / "home"))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert list(doc["stats"]) == [target] and doc["stats"][target]["changed"] > 0
    proc = subprocess.run(cmd[:-2] + ["-e", "webapp_settings=broken"], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=120)
    assert proc.returncode == 1
    assert f"deploy failed on host {target}, task 'webapp : write the config'" in proc.stderr
