"""Connection and ConnectionPool against real sshd hosts in network namespaces."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from labctl.connection import (
    AuthenticationFailedError,
    CommandError,
    CommandTimeoutError,
    Connection,
    ConnectionPool,
    HostKeyChangedError,
    HostKeyUnknownError,
    UnreachableError,
)
from labctl.errors import LabError
from labctl.sshkeys import KnownHosts, fingerprint, write_openssh_keypair
from labctl.testing.netns_hosts import NetnsHosts
from tests.conftest import need_root, need_tool

pytestmark = pytest.mark.component


def _farm(workdir, count):
    need_root()
    need_tool("sshd")
    return NetnsHosts(count=count, workdir=workdir)


@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    with _farm(tmp_path_factory.mktemp("connfarm"), 3) as hosts:
        yield hosts


@pytest.fixture
def own_farm(tmp_path):
    """A farm the test may break (stop hosts, change keys)."""
    with _farm(tmp_path / "own", 1) as hosts:
        yield hosts


@pytest.fixture(scope="module")
def pool(farm):
    with ConnectionPool(
        {h.name: (h.address, h.port) for h in farm.hosts},
        key_path=farm.key_path,
        known_hosts=farm.known_hosts,
    ) as p:
        yield p


def connect(farm, host=None, **kwargs) -> Connection:
    host = host or farm.hosts[0]
    kwargs.setdefault("key_path", farm.key_path)
    kwargs.setdefault("known_hosts", farm.known_hosts)
    return Connection(host.name, host.address, port=host.port, **kwargs)


def remote_pids(conn, pattern):
    out = conn.run(f"pgrep -f {pattern} || true").stdout
    return out.split()


# -- running commands ----------------------------------------------------------------


def test_run_returns_rc_stdout_stderr(pool, farm):
    conn = pool.get(farm.hosts[0].name)
    result = conn.run("echo out; echo err >&2; exit 3")
    assert (result.rc, result.stdout, result.stderr) == (3, "out\n", "err\n")
    assert result.failed and not result.ok
    assert result.host == farm.hosts[0].name and result.command == "echo out; echo err >&2; exit 3"
    assert conn.run("hostname").stdout.strip() == farm.hosts[0].name


def test_check_raises_with_the_result(pool, farm):
    with pytest.raises(CommandError) as info:
        pool.get(farm.hosts[0].name).run("echo nope >&2; false", check=True)
    assert info.value.result.rc == 1
    assert farm.hosts[0].name in str(info.value) and "nope" in str(info.value)


def test_stdin_text_bytes_and_large(pool, farm):
    conn = pool.get(farm.hosts[1].name)
    assert conn.run("cat", input="héllo").stdout == "héllo"
    assert conn.run("od -An -tx1", input=b"\x00\xff").stdout.split() == ["00", "ff"]
    assert conn.run("cat").stdout == ""  # no input: stdin is at EOF, nothing hangs
    big = os.urandom(3 * 1024 * 1024)
    result = conn.run("sha256sum; head -c 2000000 /dev/zero", input=big, timeout=30)
    assert result.stdout.startswith(hashlib.sha256(big).hexdigest())
    assert len(result.stdout) > 2_000_000


def test_env_reaches_the_command(pool, farm):
    out = pool.get(farm.hosts[0].name).run('echo "$A|$B"', env={"A": "x y", "B": "it's"})
    assert out.stdout == "x y|it's\n"
    with pytest.raises(LabError, match="invalid environment variable"):
        pool.get(farm.hosts[0].name).run("true", env={"A-B": "1"})


def test_timeout_raises_and_ends_the_remote_command(pool, farm):
    conn = pool.get(farm.hosts[2].name)
    started = time.monotonic()
    with pytest.raises(CommandTimeoutError) as info:
        conn.run("echo started; sleep 7301", timeout=0.5)
    assert time.monotonic() - started < 3
    assert info.value.result.stdout == "started\n"
    deadline = time.monotonic() + 5
    while remote_pids(conn, "[s]leep 7301") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert remote_pids(conn, "[s]leep 7301") == []
    assert conn.run("echo fine", timeout=5).stdout == "fine\n"


# -- files -----------------------------------------------------------------------------


def test_put_and_get_bytes_and_files_with_modes(pool, farm, tmp_path):
    conn = pool.get(farm.hosts[0].name)
    conn.put(b"secret\n", "/etc/labctl-test.key", mode=0o600)
    assert conn.run("stat -c %a /etc/labctl-test.key").stdout.strip() == "600"
    assert conn.get("/etc/labctl-test.key") == b"secret\n"
    local = tmp_path / "tool.sh"
    local.write_text("#!/bin/sh\necho tool\n")
    local.chmod(0o750)
    conn.put(local, "/usr/local/bin/labctl-tool")
    assert conn.run("stat -c %a /usr/local/bin/labctl-tool").stdout.strip() == "750"
    assert conn.run("labctl-tool").stdout == "tool\n"
    conn.put(b"v2", "/etc/labctl-test.key")  # replaces; bytes default to 0644
    assert conn.get("/etc/labctl-test.key") == b"v2"
    assert conn.run("stat -c %a /etc/labctl-test.key").stdout.strip() == "644"
    big = os.urandom(2 * 1024 * 1024)
    conn.put(big, "/var/tmp/big.bin")
    assert conn.get("/var/tmp/big.bin") == big
    assert conn.run("ls /etc | grep -c labctl-").stdout.strip() == "1"  # no temp files left


def test_put_and_get_errors_name_host_and_path(pool, farm):
    conn = pool.get(farm.hosts[0].name)
    with pytest.raises(LabError, match=rf"/nonexistent/dir/f on host {farm.hosts[0].name}"):
        conn.put(b"x", "/nonexistent/dir/f")
    with pytest.raises(LabError, match=rf"/nonexistent/file on host {farm.hosts[0].name}"):
        conn.get("/nonexistent/file")
    assert conn.run("true").ok  # the connection survives


# -- long-lived processes ----------------------------------------------------------------

ECHO_JSON = (
    "python3 -u -c 'import json, sys\n"
    'print("hello", file=sys.stderr, flush=True)\n'
    'for line in sys.stdin: print(json.dumps({"got": json.loads(line)}), flush=True)\n'
    "sys.exit(5)'"
)


def test_open_process_speaks_json_lines(pool, farm):
    conn = pool.get(farm.hosts[1].name)
    proc = conn.open_process(ECHO_JSON)
    try:
        for i in range(3):
            proc.write(json.dumps({"n": i}).encode() + b"\n")
            assert json.loads(proc.readline(timeout=10)) == {"got": {"n": i}}
        assert proc.exit_status() is None
        assert "hello" in proc.stderr_tail
        proc.close_stdin()
        assert proc.readline(timeout=10) == b""
        assert proc.exit_status(timeout=10) == 5
    finally:
        proc.close()
    assert conn.run("true").ok


def test_open_process_takes_a_large_write_whole(pool, farm):
    """Many MiB in one write (the engine sends bundles this way) arrive intact."""
    data = bytes(range(256)) * (5 * 4096 + 7)  # just over 5 MiB, not a slice multiple
    with pool.get(farm.hosts[1].name).open_process("sha256sum") as proc:
        proc.write(data)
        proc.close_stdin()
        assert proc.readline(timeout=30).split()[0].decode() == hashlib.sha256(data).hexdigest()


def test_readline_times_out(pool, farm):
    with pool.get(farm.hosts[1].name).open_process("sleep 7302") as proc:
        with pytest.raises(TimeoutError):
            proc.readline(timeout=0.2)
        proc.close(timeout=0.1)


# -- pooling -------------------------------------------------------------------------------


def test_pool_shares_one_connection_and_transport_per_host(pool, farm):
    name = farm.hosts[0].name
    conn = pool.get(name)
    conn.run("true")
    transport = conn._transport
    conn.put(b"x", "/tmp/x")
    conn.get("/tmp/x")
    with conn.open_process("cat") as proc:
        proc.write(b"a\n")
        assert proc.readline(timeout=5) == b"a\n"
    assert pool.get(name) is conn and conn._transport is transport
    assert sorted(pool.names) == sorted(h.name for h in farm.hosts)
    with pytest.raises(LabError, match="no host named 'nope'"):
        pool.get("nope")


def test_pool_accepts_bare_addresses(farm):
    host = farm.hosts[1]
    hosts = {host.name: host.address}
    with ConnectionPool(hosts, key_path=farm.key_path, known_hosts=farm.known_hosts) as p:
        assert p.get(host.name).run("hostname").stdout.strip() == host.name
        conn = p.get(host.name)
    assert not conn.is_connected  # close_all closed it


def test_twenty_threads_share_the_pool(pool, farm):
    names = [h.name for h in farm.hosts]

    def work(i):
        conn = pool.get(names[i % len(names)])
        out = conn.run(f"echo {i}; hostname")
        return i, out.stdout.split(), id(conn), id(conn._transport)

    with ThreadPoolExecutor(20) as ex:
        results = list(ex.map(work, range(60)))
    for i, (echo, hostname), _conn, _transport in results:
        assert echo == str(i) and hostname == names[i % len(names)]
    assert len({r[2] for r in results}) == len(names)  # one Connection per host
    assert len({r[3] for r in results}) == len(names)  # one transport per host


def test_command_round_trip_is_fast(pool, farm):
    conn = pool.get(farm.hosts[0].name)
    conn.run("true")
    times = []
    for _ in range(20):
        started = time.monotonic()
        conn.run("true")
        times.append(time.monotonic() - started)
    # ~5-7 ms on an idle machine; generous because 8 engineers share 2 cores
    assert statistics.median(times) < 0.05, times


def test_reconnects_after_the_host_restarts(own_farm):
    host = own_farm.hosts[0]
    conn = connect(own_farm, host)
    try:
        assert conn.run("true").ok
        own_farm.restart_host(host.name)
        assert conn.run("hostname").stdout.strip() == host.name
    finally:
        conn.close()


# -- host keys -----------------------------------------------------------------------------


def test_changed_host_key_is_a_loud_error(own_farm):
    host = own_farm.hosts[0]
    pinned = KnownHosts(own_farm.known_hosts).get(host.address)
    new_fp = own_farm.regenerate_host_key(host.name)
    for learn in (False, True):  # provisioning never overrides a pinned key either
        conn = connect(own_farm, host, learn_host_key=learn)
        with pytest.raises(HostKeyChangedError) as info:
            conn.run("true")
        message = str(info.value)
        assert host.name in message and host.address in message
        assert fingerprint(pinned.split()[1]) in message and new_fp in message
        assert "labctl down" in message and "ssh-keygen -R" in message
    assert KnownHosts(own_farm.known_hosts).get(host.address) == pinned


def test_unknown_host_key_is_learned_only_when_provisioning(own_farm):
    host = own_farm.hosts[0]
    known = KnownHosts(own_farm.known_hosts)
    offered = known.get(host.address)
    known.forget(host.address)
    with pytest.raises(HostKeyUnknownError, match="labctl up"):
        connect(own_farm, host).run("true")
    conn = connect(own_farm, host, learn_host_key=True)
    assert conn.run("true").ok
    conn.close()
    assert known.get(host.address) == offered
    assert connect(own_farm, host).run("true").ok


# -- unreachable hosts -----------------------------------------------------------------------


def test_stopped_host_fails_fast_with_name_and_reason(own_farm):
    host = own_farm.hosts[0]
    own_farm.stop_host(host.name)
    conn = connect(own_farm, host, connect_timeout=5)
    started = time.monotonic()
    with pytest.raises(UnreachableError) as info:
        conn.run("true")
    assert time.monotonic() - started < 1.0
    assert host.name in str(info.value) and host.address in str(info.value)
    assert "refused" in info.value.reason


def test_wrong_key_says_authentication_failed(own_farm, tmp_path):
    stranger = tmp_path / "stranger"
    write_openssh_keypair(stranger)
    conn = connect(own_farm, key_path=stranger)
    with pytest.raises(AuthenticationFailedError, match="authentication failed for root") as info:
        conn.run("true")
    assert str(stranger) in str(info.value) and "authorized_keys" in str(info.value)


def test_missing_key_file_is_explained(own_farm, tmp_path):
    with pytest.raises(LabError, match="private key .* is missing"):
        connect(own_farm, key_path=tmp_path / "absent").run("true")


def test_wait_reachable_waits_for_a_late_sshd(own_farm, monkeypatch):
    host = own_farm.hosts[0]
    own_farm.stop_host(host.name)
    conn = connect(own_farm, host)
    failures = threading.Event()
    original_open = Connection._open

    def counting_open(self, timeout):
        try:
            return original_open(self, timeout)
        except UnreachableError:
            failures.set()
            raise

    monkeypatch.setattr(Connection, "_open", counting_open)
    # start sshd only once a connect attempt has been refused
    starter = threading.Thread(
        target=lambda: failures.wait(10) and own_farm.start_host(host.name), daemon=True
    )
    starter.start()
    try:
        conn.wait_reachable(15)
        assert conn.run("hostname").stdout.strip() == host.name
    finally:
        starter.join(15)
        conn.close()


def test_wait_reachable_gives_up_with_the_last_reason(own_farm):
    host = own_farm.hosts[0]
    own_farm.stop_host(host.name)
    conn = connect(own_farm, host)
    started = time.monotonic()
    with pytest.raises(
        UnreachableError, match=r"still unreachable after 0.5s; last error: connection refused"
    ):
        conn.wait_reachable(0.5)
    assert 0.5 <= time.monotonic() - started < 2


# -- labctl ping -------------------------------------------------------------------------------


@pytest.fixture
def ping_lab(tmp_path, monkeypatch):
    """Two netns hosts registered as the lab "pingtest" under a private LABCTL_HOME."""
    from labctl.state import LabState

    monkeypatch.setenv("LABCTL_HOME", str(tmp_path / "home"))
    with _farm(tmp_path / "farm", 2) as hosts:
        state = LabState.for_lab("pingtest").ensure()
        shutil.copy(hosts.key_path, state.private_key)
        state.private_key.chmod(0o600)
        shutil.copy(hosts.known_hosts, state.known_hosts)
        a, b = hosts.hosts
        inventory = hosts.write_inventory(
            tmp_path / "pingtest.yml",
            {"etcd": [a.name], "control_plane": [a.name], "workers": [b.name]},
            extra_vars={"lab_name": "pingtest"},
        )
        yield hosts, inventory


def test_ping_reports_every_host(ping_lab, capsys):
    from labctl.cli import main

    hosts, inventory = ping_lab
    assert main(["ping", "-i", str(inventory)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines] == [[h.name, "ok"] for h in hosts.hosts]
    assert all(line.split()[3] == "ms" for line in lines)


def test_ping_limit_and_unreachable_host(ping_lab, capsys):
    from labctl.cli import main

    hosts, inventory = ping_lab
    a, b = hosts.hosts
    assert main(["ping", "-i", str(inventory), "--limit", "workers"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == [b.name]
    hosts.stop_host(b.name)
    started = time.monotonic()
    assert main(["ping", "-i", str(inventory), "--timeout", "5"]) == 1
    assert time.monotonic() - started < 3
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:2] == [a.name, "ok"]
    assert out[1].split()[:2] == [b.name, "UNREACHABLE"] and "refused" in out[1]


def test_ping_reports_a_changed_host_key(ping_lab, capsys):
    from labctl.cli import main

    hosts, inventory = ping_lab
    hosts.regenerate_host_key(hosts.hosts[0].name)
    assert main(["ping", "-i", str(inventory)]) == 1
    first = capsys.readouterr().out.splitlines()[0]
    assert "UNREACHABLE" in first and "HOST KEY CHANGED" in first


def test_ping_without_lab_state_says_what_to_do(ping_lab, tmp_path, monkeypatch, capsys):
    from labctl.cli import main

    _hosts, inventory = ping_lab
    monkeypatch.setenv("LABCTL_HOME", str(tmp_path / "empty-home"))
    assert main(["ping", "-i", str(inventory)]) == 1
    err = capsys.readouterr().err
    assert "no SSH key" in err and "labctl up" in err
    assert main(["ping", "-i", str(inventory), "--limit", "nope"]) == 1
    assert "matches no host" in capsys.readouterr().err


def test_quick_commands_at_once_never_make_sshd_drop_the_connection(pool, farm):
    # A command that ends at once races the end of its stdin: an EOF sent after the
    # channel's close makes sshd drop the whole connection ("ieof packet referred to
    # nonexistent channel"), failing every command on it.
    conn = pool.get(farm.hosts[0].name)
    conn.run("true")
    transport = conn._transport
    with ThreadPoolExecutor(8) as ex:
        results = list(ex.map(lambda _: conn.run("true").rc, range(400)))
    assert results == [0] * 400
    assert conn._transport is transport  # never lost, never logged in again
