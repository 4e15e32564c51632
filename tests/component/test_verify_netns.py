"""``labctl verify`` on network-namespace hosts: the fixture site (tests/fixtures/
verify_roles) is deployed with the role engine, then its roles' testinfra suites run
over the same pooled connections; passing and failing checks, exit codes, JSON,
--limit/--roles/-k, unreachable hosts, broken check modules."""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
import time
from pathlib import Path

import paramiko
import pytest

from labctl.connection import ConnectionPool
from labctl.engine import DeployOptions, deploy
from labctl.inventory import load_inventory
from labctl.testing.netns_hosts import NetnsHosts
from labctl.verify import VerifyOptions, verify
from tests.conftest import need_root, need_tool

pytestmark = pytest.mark.component

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "verify_roles"
SITE = FIXTURES / "site.yml"
LAB = "verifytest"


def make_farm(workdir: Path, count: int) -> NetnsHosts:
    need_root()
    need_tool("sshd")
    return NetnsHosts(count=count, workdir=workdir)


def pool_of(farm: NetnsHosts) -> ConnectionPool:
    return ConnectionPool({h.name: (h.address, h.port) for h in farm.hosts},
                          key_path=farm.key_path, known_hosts=farm.known_hosts)


class Lab:
    """A deployed farm: 3 hosts, the last two in group ``web`` (and a valid lab layout)."""

    def __init__(self, farm: NetnsHosts, inventory_path: Path) -> None:
        self.farm = farm
        self.inventory_path = inventory_path
        self.inventory = load_inventory(inventory_path, {})
        self.names = [h.name for h in farm.hosts]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("verifyfarm")
    with make_farm(workdir, 3) as farm:
        names = [h.name for h in farm.hosts]
        groups = {"etcd": names[:1], "control_plane": names[:1], "workers": names[1:],
                  "web": names[1:]}
        inv_path = farm.write_inventory(workdir / "inv.yml", groups, extra_vars={"lab_name": LAB})
        lab = Lab(farm, inv_path)
        with pool_of(farm) as pool:
            out = io.StringIO()
            assert deploy(lab.inventory, pool, SITE, DeployOptions(out=out)).ok, out.getvalue()
        yield lab


@pytest.fixture
def lab_home(lab, tmp_path, monkeypatch):
    """The farm registered as lab LAB under a private LABCTL_HOME, for the CLI."""
    from labctl.state import LabState

    monkeypatch.setenv("LABCTL_HOME", str(tmp_path / "home"))
    state = LabState.for_lab(LAB).ensure()
    shutil.copy(lab.farm.key_path, state.private_key)
    state.private_key.chmod(0o600)
    shutil.copy(lab.farm.known_hosts, state.known_hosts)
    return state


def cli(lab, *args: str) -> list[str]:
    return ["verify", "-i", str(lab.inventory_path), "--site", str(SITE), *args]


class CountingTransport(paramiko.Transport):
    made = 0

    def __init__(self, *args, **kwargs) -> None:
        type(self).made += 1
        super().__init__(*args, **kwargs)


def test_verify_after_deploy_reuses_the_pools_connections(lab, monkeypatch):
    """What ``labctl up`` does: deploy then verify on one pool; no second login."""
    with pool_of(lab.farm) as pool:
        out = io.StringIO()
        assert deploy(lab.inventory, pool, SITE, DeployOptions(out=out)).ok, out.getvalue()
        transports = {n: pool.get(n)._transport for n in lab.names}
        assert all(t is not None and t.is_active() for t in transports.values())
        CountingTransport.made = 0
        monkeypatch.setattr(paramiko, "Transport", CountingTransport)
        out = io.StringIO()
        started = time.monotonic()
        result = verify(lab.inventory, pool, SITE, VerifyOptions(out=out))
        seconds = time.monotonic() - started
        text = out.getvalue()
        assert result.ok, text
        assert CountingTransport.made == 0
        assert {n: pool.get(n)._transport for n in lab.names} == transports
        # the host sees one SSH connection: the pool's
        sessions = pool.get(lab.names[0]).run("ss -Htn state established '( sport = :22 )'")
        assert len(sessions.stdout.splitlines()) == 1, sessions.stdout
    assert result.counts() == {"passed": 14, "failed": 0, "error": 0, "skipped": 1}
    assert result.roles == ["toy", "webbase"] and result.hosts == lab.names
    a, b, c = lab.names
    assert {(r.role, r.host) for r in result.results if r.check.endswith("test_index_page_names_the_host")} \
        == {("webbase", b), ("webbase", c)}
    skipped = [r for r in result.results if r.outcome == "skipped"]
    assert [(r.host, r.message) for r in skipped] == [(a, "not a web host")]
    lines = text.splitlines()
    assert lines[0] == "toy: 5 checks on 3 hosts"
    assert "webbase: 1 check on 2 hosts" in lines
    assert lines[-1].startswith("verify ok: 14 passed, 1 skipped (2 roles, 3 hosts) in ")
    assert seconds < 3.8, f"verify took {seconds:.2f} s"  # testinfra's paramiko backend: 3.8 s on VMs


def test_cli_failing_check_names_host_check_location_and_assertion(lab, lab_home, capsys):
    from labctl.cli import main

    a, b, _c = lab.names
    with pool_of(lab.farm) as pool:
        pool.get(a).run("mv /srv/toy/greeting /srv/toy/greeting.away", check=True)
        try:
            code = main(cli(lab))
        finally:
            pool.get(a).run("mv /srv/toy/greeting.away /srv/toy/greeting", check=True)
    cap = capsys.readouterr()
    out = cap.out
    assert code == 1, cap
    lines = out.splitlines()
    row = next(i for i, line in enumerate(lines) if line.split()[1:2] == [a])
    assert lines[row].split()[0] == "FAILED" and "2 passed, 1 failed, 1 skipped" in lines[row]
    assert lines[row + 1].strip().startswith(
        "FAILED test_toy.py::test_greeting_names_the_host  [roles/toy/verify/test_toy.py:")
    assert lines[row + 2].strip() == "/srv/toy/greeting is missing"
    assert next(line for line in lines if line.split()[1:2] == [b]).split()[0] == "ok"
    assert lines[-1].startswith("verify FAILED: 13 passed, 1 failed, 1 skipped")
    assert main(cli(lab)) == 0  # restored: passes again


def test_cli_json_limit_and_roles(lab, lab_home, capsys):
    from labctl.cli import main

    a, b, c = lab.names
    assert main(cli(lab, "--json", "--limit", c)) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is True and doc["hosts"] == [c]
    assert doc["summary"] == {"passed": 6, "failed": 0, "error": 0, "skipped": 0}
    assert set(doc["roles"]) == {"toy", "webbase"} and set(doc["roles"]["toy"]) == {c, "-"}
    assert {r["host"] for r in doc["results"]} == {c, "-"}

    assert main(cli(lab, "--json", "--limit", a)) == 0  # a is not a web host: no webbase
    assert set(json.loads(capsys.readouterr().out)["roles"]) == {"toy"}

    assert main(cli(lab, "--json", "--roles", "webbase")) == 0
    doc = json.loads(capsys.readouterr().out)
    assert list(doc["roles"]) == ["webbase"] and doc["hosts"] == [b, c]

    assert main(cli(lab, "--json", "-k", "hostname")) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {r["check"] for r in doc["results"]} == {"test_toy.py::test_hostname_is_the_inventory_name"}

    # -e reaches the checks' hostvars: the toy directory is looked for elsewhere
    assert main(cli(lab, "--json", "--roles", "toy", "-e", "toy_dir=/srv/nowhere")) == 1
    doc = json.loads(capsys.readouterr().out)
    failed = {(r["host"], r["check"]) for r in doc["results"] if r["outcome"] == "failed"}
    assert failed == {(n, f"test_toy.py::{t}") for n in lab.names
                      for t in ("test_toy_dir_is_a_directory", "test_greeting_names_the_host")}

    assert main(cli(lab, "--roles", "webtier")) == 1
    assert "role 'webtier' has no verify suite" in capsys.readouterr().err
    assert main(cli(lab, "--limit", "nope")) == 1
    assert "matches no host" in capsys.readouterr().err


def test_broken_check_module_is_an_error_and_other_suites_still_run(lab, tmp_path):
    site_dir = tmp_path / "site"
    shutil.copytree(FIXTURES, site_dir)
    (site_dir / "roles" / "webbase" / "verify" / "test_broken.py").write_text(
        "import no_such_module_here\n")
    out = io.StringIO()
    with pool_of(lab.farm) as pool:
        result = verify(lab.inventory, pool, site_dir / "site.yml", VerifyOptions(out=out))
    assert not result.ok and result.exit_code == 1
    [broken] = [r for r in result.results if r.outcome == "error"]
    assert broken.role == "webbase" and broken.check == "test_broken.py (collecting)"
    assert "No module named 'no_such_module_here'" in broken.message
    assert result.counts()["passed"] == 14  # every real check still ran
    assert "cannot load the check module" in out.getvalue()
    # the session left nothing behind: no cache, no bytecode, no check modules in memory
    assert not list(site_dir.rglob(".pytest_cache")) and not list(site_dir.rglob("__pycache__"))
    assert not [m for m in sys.modules.values()
                if str(getattr(m, "__file__", "") or "").startswith(str(site_dir))]


def test_same_named_check_modules_in_two_roles_do_not_clash(lab, tmp_path, monkeypatch):
    """... and the session reads no conftest.py above the roles, no ini, no PYTEST_ADDOPTS."""
    site_dir = tmp_path / "site"
    shutil.copytree(FIXTURES, site_dir)
    (site_dir / "conftest.py").write_text("raise RuntimeError('a conftest above the roles')\n")
    (site_dir / "pytest.ini").write_text("[pytest]\naddopts = --no-such-option\n")
    (site_dir / "roles" / "pytest.ini").write_text("[pytest]\naddopts = --no-such-option\n")
    monkeypatch.setenv("PYTEST_ADDOPTS", "--no-such-option")
    for role, marker in (("toy", "TOY"), ("webbase", "WEB")):
        (site_dir / "roles" / role / "verify" / "test_same.py").write_text(
            f"def test_marker(host):\n    assert host.check_output('echo {marker}') == '{marker}'\n")
    out = io.StringIO()
    with pool_of(lab.farm) as pool:
        result = verify(lab.inventory, pool, site_dir / "site.yml",
                        VerifyOptions(out=out, keyword="marker", as_json=True))
    assert result.ok, out.getvalue()
    assert os.environ["PYTEST_ADDOPTS"] == "--no-such-option"  # put back afterwards
    assert sorted((r.role, r.host) for r in result.results) == sorted(
        [("toy", n) for n in lab.names] + [("webbase", n) for n in lab.names[1:]])


def test_unreachable_host_fails_fast_with_the_reason(tmp_path):
    with make_farm(tmp_path / "farm", 2) as farm:
        a, b = (h.name for h in farm.hosts)
        inventory = load_inventory(farm.write_inventory(tmp_path / "inv.yml", {"web": [b]}), {})
        with pool_of(farm) as pool:
            assert deploy(inventory, pool, SITE, DeployOptions(out=io.StringIO())).ok
        farm.stop_host(b)
        out = io.StringIO()
        started = time.monotonic()
        with pool_of(farm) as pool:
            result = verify(inventory, pool, SITE, VerifyOptions(out=out))
        assert time.monotonic() - started < 5
    text = out.getvalue()
    assert result.exit_code == 2 and list(result.unreachable) == [b]
    assert "refused" in result.unreachable[b]
    assert {r.outcome for r in result.results if r.host == b} == {"error"}
    assert {r.outcome for r in result.results if r.host == a} <= {"passed", "skipped"}
    assert sum(line.split()[:2] == ["UNREACHABLE", b] for line in text.splitlines()) == 2
    assert text.splitlines()[-1].endswith(f"unreachable: {b}")


def test_a_hung_command_times_out_and_fails_its_check(lab, tmp_path):
    site_dir = tmp_path / "site"
    shutil.copytree(FIXTURES, site_dir)
    (site_dir / "roles" / "toy" / "verify" / "test_slow.py").write_text(
        "def test_slow(host):\n    host.run('sleep 30')\n")
    out = io.StringIO()
    started = time.monotonic()
    with pool_of(lab.farm) as pool:
        result = verify(lab.inventory, pool, site_dir / "site.yml",
                        VerifyOptions(out=out, keyword="slow", command_timeout=0.5))
    assert time.monotonic() - started < 8
    assert [(r.host, r.outcome) for r in result.results] == [(n, "failed") for n in lab.names]
    assert result.results[0].message == (
        f"CommandTimeoutError: {lab.names[0]}: command timed out after 0.5s: sleep 30")
    assert result.results[0].location == "roles/toy/verify/test_slow.py:2"
