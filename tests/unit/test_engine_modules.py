"""The host-side modules, run locally in a tmp dir: idempotence, check mode, diff."""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import sys
from pathlib import Path

import pytest

from labctl.engine import hostrunner as hr
from labctl.engine.transport import (
    BOOTSTRAP,
    RUNNER_HASH,
    RUNNER_SOURCE,
    HostUnreachable,
    LocalProcess,
    RunnerSession,
)

pytestmark = pytest.mark.unit


def run(module, args, check=False, diff=False):
    return hr.execute({"module": module, "args": args, "check": check, "diff": diff})


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def mode_of(path) -> int:
    return os.stat(path).st_mode & 0o7777


# -- file ----------------------------------------------------------------------------


def test_file_directory_is_idempotent_and_sets_mode(tmp_path):
    d = tmp_path / "a" / "b"
    first = run("file", {"path": str(d), "state": "directory", "mode": "0750"})
    assert first["changed"] and d.is_dir() and mode_of(d) == 0o750
    assert run("file", {"path": str(d), "state": "directory", "mode": "0750"})["changed"] is False
    fixed = run("file", {"path": str(d), "state": "directory", "mode": 0o700}, diff=True)
    assert fixed["changed"] and mode_of(d) == 0o700
    assert fixed["diff"]["before"]["mode"] == "0750" and fixed["diff"]["after"]["mode"] == "0700"


def test_file_check_mode_changes_nothing(tmp_path):
    d = tmp_path / "d"
    res = run("file", {"path": str(d), "state": "directory"}, check=True, diff=True)
    assert res["changed"] and not d.exists()
    assert res["diff"]["before"]["state"] == "absent" and res["diff"]["after"]["state"] == "directory"


def test_file_touch_absent_and_link(tmp_path):
    f = tmp_path / "f"
    assert run("file", {"path": str(f), "state": "touch"})["changed"] and f.exists()
    link = tmp_path / "l"
    assert run("file", {"src": str(f), "dest": str(link), "state": "link"})["changed"]
    assert os.readlink(link) == str(f)
    assert not run("file", {"src": str(f), "dest": str(link), "state": "link"})["changed"]
    assert run("file", {"path": str(f), "state": "absent"}, check=True)["changed"] and f.exists()
    assert run("file", {"path": str(f), "state": "absent"})["changed"] and not f.exists()
    assert not run("file", {"path": str(f), "state": "absent"})["changed"]


def test_file_on_a_missing_file_fails_clearly(tmp_path):
    res = run("file", {"path": str(tmp_path / "x"), "state": "file"})
    assert res["failed"] and "does not exist" in res["msg"]


# -- copy ----------------------------------------------------------------------------


def test_copy_inline_content_idempotent_with_diff(tmp_path):
    dest = tmp_path / "c.conf"
    res = run("copy", {"dest": str(dest), "content_b64": b64("a=1\n"), "mode": "0640"}, diff=True)
    assert res["changed"] and dest.read_text() == "a=1\n" and mode_of(dest) == 0o640
    assert res["diff"]["before"] == "" and res["diff"]["after"] == "a=1\n"
    assert not run("copy", {"dest": str(dest), "content_b64": b64("a=1\n"), "mode": "0640"})["changed"]
    res = run("copy", {"dest": str(dest), "content_b64": b64("a=2\n")}, check=True, diff=True)
    assert res["changed"] and res["diff"]["before"] == "a=1\n" and res["diff"]["after"] == "a=2\n"
    assert dest.read_text() == "a=1\n"        # check mode: unchanged
    assert mode_of(dest) == 0o640


def test_copy_by_checksum_asks_for_content_only_when_different(tmp_path):
    dest = tmp_path / "big"
    data = b"x" * 1000
    want = hashlib.sha1(data).hexdigest()
    assert run("copy", {"dest": str(dest), "checksum": want}) == {"need_content": True, "dest": str(dest), "changed": False}
    dest.write_bytes(data)
    assert run("copy", {"dest": str(dest), "checksum": want})["changed"] is False
    assert run("copy", {"dest": str(dest), "checksum": "0" * 40}, check=True)["changed"] is True


def test_copy_force_no_keeps_an_existing_file(tmp_path):
    dest = tmp_path / "keep"
    dest.write_text("mine")
    assert not run("copy", {"dest": str(dest), "content_b64": b64("theirs"), "force": "no"})["changed"]
    assert dest.read_text() == "mine"


def test_copy_into_missing_directory_fails(tmp_path):
    res = run("copy", {"dest": str(tmp_path / "no" / "f"), "content_b64": b64("x")})
    assert res["failed"] and "does not exist" in res["msg"]


# -- stat ----------------------------------------------------------------------------


def test_stat(tmp_path):
    f = tmp_path / "s"
    assert run("stat", {"path": str(f)})["stat"] == {"exists": False}
    f.write_text("hello")
    st = run("stat", {"path": str(f)})["stat"]
    assert st["exists"] and st["isreg"] and not st["isdir"] and st["size"] == 5
    assert st["checksum"] == hashlib.sha1(b"hello").hexdigest()


# -- lineinfile ----------------------------------------------------------------------


@pytest.mark.parametrize("lines, args, expected", [
    (["a=1", "b=2"], {"regexp": "^b=", "line": "b=3"}, ["a=1", "b=3"]),
    (["a=1"], {"regexp": "^b=", "line": "b=3"}, ["a=1", "b=3"]),
    (["a=1", "b=3"], {"regexp": "^c=", "line": "b=3"}, ["a=1", "b=3"]),
    (["a=1", "b=2"], {"line": "z", "insertbefore": "BOF"}, ["z", "a=1", "b=2"]),
    (["a=1", "b=2"], {"line": "z", "insertafter": "^a="}, ["a=1", "z", "b=2"]),
    (["a=1", "b=2", "a=9"], {"regexp": "^a=", "state": "absent"}, ["b=2"]),
    (["x"], {"line": "x"}, ["x"]),
])
def test_lineinfile_planning(lines, args, expected):
    assert hr.plan_lineinfile(lines, args) == expected


def test_lineinfile_module_idempotent_check_and_create(tmp_path):
    f = tmp_path / "conf"
    args = {"path": str(f), "line": "mode=prod", "regexp": "^mode=", "create": True}
    res = run("lineinfile", args, check=True, diff=True)
    assert res["changed"] and not f.exists() and res["diff"]["after"] == "mode=prod\n"
    assert run("lineinfile", args)["changed"] and f.read_text() == "mode=prod\n"
    assert not run("lineinfile", args)["changed"]
    f.write_text("# top\nmode=dev\n")
    assert run("lineinfile", args)["changed"] and f.read_text() == "# top\nmode=prod\n"
    missing = run("lineinfile", {"path": str(tmp_path / "nope"), "line": "x"})
    assert missing["failed"] and "does not exist" in missing["msg"]


# -- sysctl --------------------------------------------------------------------------


def test_sysctl_file_planning():
    assert hr.sysctl_file_lines(["a=1"], "net.x", "1", "present") == ["a=1", "net.x=1"]
    assert hr.sysctl_file_lines(["net.x = 0", "b=2"], "net.x", "1", "present") == ["net.x=1", "b=2"]
    assert hr.sysctl_file_lines(["net.x=1"], "net.x", "1", "present") == ["net.x=1"]
    assert hr.sysctl_file_lines(["net.x=1", "b"], "net.x", None, "absent") == ["b"]


def test_sysctl_writes_the_file_without_touching_the_kernel_when_reload_is_off(tmp_path):
    conf = tmp_path / "99-lab.conf"
    args = {"name": "net.ipv4.ip_forward", "value": "1", "sysctl_file": str(conf), "reload": False}
    assert run("sysctl", args)["changed"] and conf.read_text() == "net.ipv4.ip_forward=1\n"
    assert not run("sysctl", args)["changed"]


def test_sysctl_compares_the_live_value(tmp_path):
    live = Path("/proc/sys/kernel/ostype").read_text().strip()  # read-only: equal means no write
    args = {"name": "kernel.ostype", "value": live, "sysctl_file": str(tmp_path / "s.conf")}
    run("sysctl", args)
    assert not run("sysctl", args)["changed"]


# -- command / shell -----------------------------------------------------------------


def test_command_creates_removes_and_results(tmp_path):
    marker = tmp_path / "m"
    args = {"_raw_params": f"touch {marker}", "creates": str(marker)}
    res = run("command", args)
    assert res["changed"] and res["rc"] == 0 and marker.exists()
    assert not run("command", args)["changed"]
    assert not run("command", {"_raw_params": "true", "removes": str(tmp_path / "none")})["changed"]
    out = run("shell", {"_raw_params": "echo one; echo two >&2; exit 3"})
    assert out["failed"] and out["rc"] == 3 and out["stdout_lines"] == ["one"] and out["stderr"] == "two"
    assert run("command", {"argv": ["echo", "a b"]})["stdout"] == "a b"


def test_command_in_check_mode_is_skipped_and_runs_nothing(tmp_path):
    marker = tmp_path / "m"
    res = run("command", {"_raw_params": f"touch {marker}"}, check=True)
    assert res["skipped"] and not marker.exists()


def test_command_does_not_read_the_runners_stdin():
    assert run("command", {"_raw_params": "cat"})["stdout"] == ""
    assert run("command", {"_raw_params": "cat", "stdin": "fed"})["stdout"] == "fed"


def test_missing_program_fails_clearly():
    res = run("command", {"_raw_params": "/nonexistent/prog"})
    assert res["failed"] and "command not found" in res["msg"]


# -- systemd_service planning ---------------------------------------------------------


@pytest.mark.parametrize("args, active, enabled, commands", [
    ({"name": "x", "state": "started"}, "inactive", "enabled", [["systemctl", "start", "x"]]),
    ({"name": "x", "state": "started"}, "active", "enabled", []),
    ({"name": "x", "state": "stopped"}, "active", "enabled", [["systemctl", "stop", "x"]]),
    ({"name": "x", "state": "stopped"}, "failed", "enabled", []),
    ({"name": "x", "state": "restarted"}, "active", "enabled", [["systemctl", "restart", "x"]]),
    ({"name": "x", "state": "reloaded"}, "inactive", "enabled", [["systemctl", "start", "x"]]),
    ({"name": "x", "state": "reloaded"}, "active", "enabled", [["systemctl", "reload", "x"]]),
    ({"name": "x", "enabled": True}, "active", "disabled", [["systemctl", "enable", "x"]]),
    ({"name": "x", "enabled": True}, "active", "enabled", []),
    ({"name": "x", "enabled": False}, "active", "enabled", [["systemctl", "disable", "x"]]),
    ({"name": "x", "enabled": True}, "active", "static", []),
    ({"name": "x", "daemon_reload": True, "state": "started", "enabled": "yes"}, "inactive", "disabled",
     [["systemctl", "daemon-reload"], ["systemctl", "enable", "x"], ["systemctl", "start", "x"]]),
])
def test_systemd_planning(args, active, enabled, commands):
    assert hr.plan_systemd(args, active, enabled) == commands


def test_systemd_bad_state():
    with pytest.raises(hr.ModuleFailed, match="unsupported state"):
        hr.plan_systemd({"name": "x", "state": "running"}, "active", "enabled")


def test_systemd_check_mode_runs_only_queries(monkeypatch):
    ran = []
    monkeypatch.setattr(hr, "systemctl_query", lambda verb, name: {"is-active": "inactive", "is-enabled": "disabled"}[verb])
    monkeypatch.setattr(hr.subprocess, "run", lambda cmd, **kw: ran.append(cmd))
    res = run("systemd_service", {"name": "x", "state": "started", "enabled": True}, check=True)
    assert res["changed"] and ran == []
    assert res["commands"] == ["systemctl enable x", "systemctl start x"]


# -- wait_for ------------------------------------------------------------------------


def test_wait_for_port_and_path(tmp_path):
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        port = srv.getsockname()[1]
        assert not run("wait_for", {"port": port, "timeout": 2}).get("failed")
    res = run("wait_for", {"port": port, "timeout": 0.3, "sleep": 0.05})
    assert res["failed"] and f"Timeout when waiting for port 127.0.0.1:{port}" in res["msg"]
    f = tmp_path / "ready"
    f.write_text("state: READY\n")
    assert not run("wait_for", {"path": str(f), "search_regex": "READY", "timeout": 1}).get("failed")
    assert not run("wait_for", {"path": str(tmp_path / "gone"), "state": "absent", "timeout": 1}).get("failed")


# -- pip -----------------------------------------------------------------------------


def test_pip_present_when_satisfied_changes_nothing():
    res = run("pip", {"name": ["pyyaml>=5", "jinja2"], "executable": sys.executable})
    assert res == {"changed": False, "name": ["pyyaml>=5", "jinja2"], "state": "present"}


def test_pip_missing_package_in_check_mode_reports_change_without_installing():
    res = run("pip", {"name": "surely-not-installed-pkg-xyz", "executable": sys.executable}, check=True)
    assert res["changed"] and not res.get("failed")


def test_pip_new_virtualenv_in_check_mode_is_not_created(tmp_path):
    res = run("pip", {"name": "x", "virtualenv": str(tmp_path / "venv")}, check=True)
    assert res["changed"] and not (tmp_path / "venv").exists()


def test_pip_requirements_file_is_read(tmp_path):
    req = tmp_path / "req.txt"
    req.write_text("# comment\npyyaml>=5  # inline\n--no-index\n\njinja2\n")
    assert hr.read_requirements(str(req)) == ["pyyaml>=5", "jinja2"]


# -- facts and the runner protocol ------------------------------------------------------


def test_facts_have_what_roles_use():
    facts = run("_facts", {})["ansible_facts"]
    for key in ("hostname", "default_ipv4", "os_family", "python_version", "processor_count", "memtotal_mb"):
        assert key in facts
    assert facts["os_family"] == "Debian" and facts["memtotal_mb"] > 0


def test_unknown_module_and_crash_are_failures_not_exceptions():
    assert run("nope", {})["msg"] == "unknown module 'nope'"
    res = run("file", {"path": "/proc/1/nonexistent/x", "state": "directory"})
    assert res["failed"] and res["changed"] is False


def test_runner_session_round_trips_over_a_pipe(tmp_path):
    session = RunnerSession.start("local", LocalProcess.runner())
    try:
        d = tmp_path / "via-runner"
        assert session.call("file", {"path": str(d), "state": "directory"})["changed"]
        assert not session.call("file", {"path": str(d), "state": "directory"})["changed"]
        assert session.round_trips == 2
    finally:
        session.close()


class RecordingProcess(LocalProcess):
    """A local runner that records what the controller sent."""

    def __init__(self, cache_dir):
        super().__init__([sys.executable, "-u", "-c", BOOTSTRAP], env={"LABCTL_RUNNER_CACHE": str(cache_dir)})
        self.sent = bytearray()

    def write(self, data):
        self.sent += data
        super().write(data)


def test_runner_is_cached_on_the_host_by_content_hash(tmp_path):
    first = RecordingProcess(tmp_path)
    session = RunnerSession.start("h", first)
    assert session.call("stat", {"path": "/"})["stat"]["isdir"]
    session.close()
    assert (tmp_path / f"labctl_hostrunner_{RUNNER_HASH}.py").read_bytes() == RUNNER_SOURCE
    assert RUNNER_SOURCE in bytes(first.sent)
    second = RecordingProcess(tmp_path)
    session = RunnerSession.start("h", second)
    assert session.call("stat", {"path": "/"})["stat"]["isdir"]
    session.close()
    assert RUNNER_SOURCE not in bytes(second.sent)      # the source travelled once


class DeadProcess:
    def write(self, data):
        raise OSError("channel closed")

    def readline(self):
        return b""

    def close(self):
        pass


def test_a_dead_channel_is_unreachable_not_a_crash():
    with pytest.raises(HostUnreachable, match="cannot start the module runner"):
        RunnerSession.start("h", DeadProcess())
