"""The testinfra backend over a Connection: what it sends and how results come back."""

from __future__ import annotations

import pytest

from labctl.connection import Result
from labctl.errors import LabError
from labctl.verify.backend import (
    DEFAULT_COMMAND_TIMEOUT,
    HostUnreachableError,
    PooledHosts,
    testinfra_host,
)

pytestmark = pytest.mark.unit


class FakeConnection:
    """Answers commands from a table; records what was run and with which timeout."""

    def __init__(self, name: str, answers: dict[str, tuple[int, str, str]] | None = None,
                 refuse: str | None = None) -> None:
        self.name = name
        self.answers = answers or {}
        self.refuse = refuse
        self.ran: list[tuple[str, float | None]] = []
        self.connects = 0

    def connect(self) -> None:
        self.connects += 1
        if self.refuse:
            raise LabError(self.refuse)

    def run(self, command: str, *, timeout: float | None = None, **_kw) -> Result:
        self.ran.append((command, timeout))
        rc, out, err = self.answers.get(command, (0, "", ""))
        return Result(command, self.name, rc, out, err)


class FakePool:
    def __init__(self, *connections: FakeConnection) -> None:
        self.connections = {c.name: c for c in connections}

    def get(self, name: str) -> FakeConnection:
        return self.connections[name]


def test_commands_are_quoted_and_results_keep_rc_stdout_stderr():
    conn = FakeConnection("h1", {"cat -- '/etc/my file'": (0, "café\n", ""),
                                 "false": (1, "", "nope\n")})
    host = testinfra_host(conn)
    assert host.backend.get_hostname() == "h1"
    assert host.run("cat -- %s", "/etc/my file").stdout == "café\n"
    failed = host.run("false")
    assert (failed.rc, failed.stderr, failed.failed) == (1, "nope\n", True)
    assert conn.ran == [("cat -- '/etc/my file'", DEFAULT_COMMAND_TIMEOUT),
                        ("false", DEFAULT_COMMAND_TIMEOUT)]


def test_non_ascii_commands_need_no_encoding_probe_and_timeout_is_passed_on():
    conn = FakeConnection("h1")
    host = testinfra_host(conn, timeout=None)
    host.run("echo %s", "héllo")
    assert conn.ran == [("echo 'héllo'", None)]  # no `python -c 'import locale...'` first


def test_sudo_wraps_the_command():
    conn = FakeConnection("h1")
    host = testinfra_host(conn)
    with host.sudo("app"):
        host.run("id -u")
    assert conn.ran[0][0] == "sudo -u app /bin/sh -c 'id -u'"


def test_testinfra_modules_run_over_the_connection():
    conn = FakeConnection("h1", {"test -d /srv": (0, "", ""), "uname -s": (0, "Linux\n", "")})
    host = testinfra_host(conn)
    assert host.file("/srv").is_directory
    assert ("test -d /srv", DEFAULT_COMMAND_TIMEOUT) in conn.ran


def test_pooled_hosts_log_in_once_and_remember_unreachable_hosts():
    good, bad = FakeConnection("good"), FakeConnection("bad", refuse="host bad is unreachable: refused")
    hosts = PooledHosts(FakePool(good, bad))
    assert hosts.connect_all(["good", "bad"]) == {"bad": "host bad is unreachable: refused"}
    assert hosts("good") is hosts("good")  # one testinfra Host per lab host
    with pytest.raises(HostUnreachableError, match="host bad is unreachable: refused"):
        hosts("bad")
    assert (good.connects, bad.connects) == (1, 1)
