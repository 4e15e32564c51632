"""The concurrent verify runner (labctl.verify.parallel + relay): the same results,
output and exit code as the sequential one, in the same order; commands still run in
the parent over its pool; a dead check process fails its checks with the reason."""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from labctl.connection import CommandTimeoutError, Result, UnreachableError
from labctl.errors import LabError
from labctl.inventory import load_inventory
from labctl.verify import VerifyOptions, relay, verify
from labctl.verify.parallel import InOrder, group_items

pytestmark = pytest.mark.unit

INVENTORY = """\
all:
  vars:
    lab_name: paralleltest
    lab_network: 10.78.0.0/24
  children:
    etcd: {hosts: {a: {ansible_host: 10.78.0.11}}}
    control_plane: {hosts: {a: {}}}
    web:
      hosts:
        b: {ansible_host: 10.78.0.12}
        c: {ansible_host: 10.78.0.13}
"""

SITE = """\
- hosts: all
  gather_facts: false
  roles: [alpha]
- hosts: web
  gather_facts: false
  roles: [beta]
"""

ALPHA = '''\
import os
import pytest


def test_echo_names_the_host(host):
    assert host.check_output("echo %s", host.backend.get_hostname()) == host.backend.get_hostname()


def test_waits_a_little(host):
    assert host.run("sleep 0.2").rc == 0


def test_fails_on_b(host):
    assert host.backend.get_hostname() != "b", "b is not allowed here"


def test_skipped_on_c(host):
    if host.backend.get_hostname() == "c":
        pytest.skip("not for c")


def test_times_out_on_a(host):
    if host.backend.get_hostname() == "a":
        host.run("slow")


def test_lab_only(lab):
    assert sorted(lab.hosts) == ["a", "b", "c"]
'''

BETA = '''\
import os


def test_process_dies_on_c(host):
    if host.backend.get_hostname() == "c" and os.environ.get("KILL_CHECK_PROCESS"):
        os._exit(3)


def test_after_the_death(host):
    assert host.run("true").rc == 0
'''


class LocalPool:
    """Runs a host's commands here with bash; remembers which process ran them."""

    def __init__(self) -> None:
        self.ran: list[tuple[str, str, int]] = []
        self.spans: dict[tuple[str, str], tuple[float, float]] = {}  # (host, command) -> when

    def get(self, name: str):
        pool = self

        class Conn:
            def __init__(self) -> None:
                self.name = name

            def connect(self) -> None:
                pass

            def run(self, command: str, *, timeout: float | None = None) -> Result:
                pool.ran.append((name, command, os.getpid()))
                if command.endswith("slow"):
                    raise CommandTimeoutError(
                        Result(command, name, -1, "", ""),
                        f"{name}: command timed out after {timeout:g}s: slow")
                t0 = time.monotonic()
                done = subprocess.run(["bash", "-c", command], capture_output=True, text=True)
                pool.spans[(name, command)] = (t0, time.monotonic())
                return Result(command, name, done.returncode, done.stdout, done.stderr)

        return Conn()


@pytest.fixture
def site(tmp_path):
    (tmp_path / "inv.yml").write_text(INVENTORY)
    (tmp_path / "site.yml").write_text(SITE)
    for role, suite in (("alpha", ALPHA), ("beta", BETA)):
        (tmp_path / "roles" / role / "verify").mkdir(parents=True)
        (tmp_path / "roles" / role / "tasks").mkdir()
        (tmp_path / "roles" / role / "tasks" / "main.yml").write_text("[]\n")
        (tmp_path / "roles" / role / "verify" / f"test_{role}.py").write_text(suite)
    return tmp_path


def run_verify(site: Path, workers: int, **options):
    inventory = load_inventory(site / "inv.yml", {})
    pool, out = LocalPool(), io.StringIO()
    started = time.monotonic()
    result = verify(inventory, pool, site / "site.yml",
                    VerifyOptions(out=out, workers=workers, smoke=False, command_timeout=5,
                                  **options))
    return result, out.getvalue(), pool, time.monotonic() - started


def without_times(text: str) -> str:
    return re.sub(r"0x[0-9a-f]+", "0x…", re.sub(r"\(\d+\.\d+ s\)|in \d+\.\d+ s", "(T)", text))


def comparable(result):
    """Results as they read (object addresses in assertion messages differ per run)."""
    return [(r.role, r.host, r.check, r.outcome, re.sub(r"0x[0-9a-f]+", "0x…", r.message),
             r.location) for r in result.results]


def test_concurrent_run_gives_the_sequential_results_output_and_exit_code(site):
    sequential, seq_text, seq_pool, seq_seconds = run_verify(site, workers=1)
    concurrent, con_text, con_pool, con_seconds = run_verify(site, workers=8)
    assert comparable(concurrent) == comparable(sequential)
    assert without_times(con_text) == without_times(seq_text)
    assert concurrent.exit_code == sequential.exit_code == 1
    assert concurrent.counts() == {"passed": 17, "failed": 2, "error": 0, "skipped": 1}
    # the failures read the same: message and the line in the check module
    failed = {(r.host, r.check): r for r in concurrent.results if r.outcome == "failed"}
    assert failed[("b", "test_alpha.py::test_fails_on_b")].message.startswith("b is not allowed here")
    assert failed[("b", "test_alpha.py::test_fails_on_b")].location == \
        f"roles/alpha/verify/test_alpha.py:{ALPHA.splitlines().index('def test_fails_on_b(host):') + 2}"
    assert failed[("a", "test_alpha.py::test_times_out_on_a")].message == \
        "CommandTimeoutError: a: command timed out after 5s: slow"
    # every command ran in this process, over its pool
    assert {pid for _, _, pid in con_pool.ran} == {os.getpid()}
    assert sorted(h for h, c, _ in con_pool.ran if c.endswith("sleep 0.2")) == ["a", "b", "c"]
    # the three hosts' waits overlapped (one after another when sequential)
    waits = [span for (_, command), span in con_pool.spans.items() if command.endswith("sleep 0.2")]
    assert len(waits) == 3 and max(t0 for t0, _ in waits) < min(t1 for _, t1 in waits)
    waits = sorted(span for (_, command), span in seq_pool.spans.items()
                   if command.endswith("sleep 0.2"))
    assert all(earlier[1] <= later[0] for earlier, later in zip(waits, waits[1:], strict=False))
    lines = con_text.splitlines()
    assert lines[0] == "alpha: 6 checks on 3 hosts"
    assert lines[-1].startswith("verify FAILED: 17 passed, 2 failed, 1 skipped (2 roles, 3 hosts)")


def test_a_dead_check_process_fails_its_checks_and_the_others_still_run(site, monkeypatch):
    monkeypatch.setenv("KILL_CHECK_PROCESS", "1")
    result, text, _, _ = run_verify(site, workers=8, roles=("beta",))
    outcomes = {(r.host, r.check): (r.outcome, r.message) for r in result.results}
    assert outcomes[("b", "test_beta.py::test_process_dies_on_c")] == ("passed", "")
    assert outcomes[("b", "test_beta.py::test_after_the_death")] == ("passed", "")
    for check in ("test_beta.py::test_process_dies_on_c", "test_beta.py::test_after_the_death"):
        outcome, message = outcomes[("c", check)]
        assert outcome == "failed"
        assert re.match(r"the check did not run: its check process \(pid \d+\) exited with "
                        r"status 3$", message), message
    assert [(r.host, r.check) for r in result.results] == [  # collection order, as ever
        ("b", "test_beta.py::test_process_dies_on_c"), ("c", "test_beta.py::test_process_dies_on_c"),
        ("b", "test_beta.py::test_after_the_death"), ("c", "test_beta.py::test_after_the_death")]
    assert result.exit_code == 1 and "FAILED" in text


def test_unreachable_hosts_checks_fail_with_the_reason_in_check_processes(site):
    class HalfPool(LocalPool):
        def get(self, name):
            conn = super().get(name)
            if name == "b":
                def refuse():
                    raise UnreachableError("b", "10.78.0.12", 22, "connection refused")
                conn.connect = refuse
            return conn

    inventory = load_inventory(site / "inv.yml", {})
    out = io.StringIO()
    result = verify(inventory, HalfPool(), site / "site.yml",
                    VerifyOptions(out=out, workers=8, smoke=False, roles=("beta",)))
    assert result.exit_code == 2 and list(result.unreachable) == ["b"]
    b_results = [r for r in result.results if r.host == "b"]
    assert {r.outcome for r in b_results} == {"error"}
    assert all("connection refused" in r.message for r in b_results)
    assert {r.outcome for r in result.results if r.host == "c"} == {"passed"}


def test_items_are_grouped_by_key_in_order_of_first_appearance():
    assert group_items(["a", "b", "a", "c", "b"]) == [[0, 2], [1, 4], [3]]
    assert group_items([]) == []


def test_in_order_hands_out_finished_items_only_after_their_predecessors():
    order = InOrder(3)
    order.report(2, "r2")
    order.finish(2)
    assert order.ready() == []
    order.report(0, "r0a")
    order.report(0, "r0b")
    order.finish(0)
    assert order.ready() == [(0, ["r0a", "r0b"])]
    assert not order.done
    order.finish(1)
    assert order.ready() == [(1, []), (2, ["r2"])]
    assert order.done and order.ready() == []


def test_frames_carry_messages_both_ways_and_eof_reads_as_none():
    a, b = socket.socketpair()
    with a, b:
        big = ("run", "h", "x" * 300_000, 1.5)  # more than the socket buffers at once
        sender = threading.Thread(target=relay.send, args=(a, big))
        sender.start()
        assert relay.receive(b) == big
        sender.join(timeout=5)
        a.shutdown(socket.SHUT_WR)
        assert relay.receive(b) is None


def test_labctl_errors_cross_the_process_boundary_with_type_message_and_attributes():
    timeout = CommandTimeoutError(Result("sleep 9", "h", -1, "so far", ""), "h: timed out: sleep 9")
    back = relay.rebuild_exception(relay.exception_state(timeout))
    assert type(back) is CommandTimeoutError and str(back) == "h: timed out: sleep 9"
    assert back.result.stdout == "so far"
    gone = relay.rebuild_exception(relay.exception_state(
        UnreachableError("h", "10.0.0.1", 22, "connection lost")))
    assert type(gone) is UnreachableError and gone.reason == "connection lost"
    assert str(gone) == "host h (10.0.0.1) is unreachable: connection lost"
    unknown = relay.rebuild_exception(("no.such.module", "Boom", ("bad",), {}))
    assert type(unknown) is LabError and str(unknown) == "Boom: bad"


def test_a_relayed_command_returns_the_parents_result_or_raises_its_error():
    class Pool:
        def get(self, name):
            class Conn:
                def run(self, command, *, timeout=None):
                    if command == "boom":
                        raise LabError(f"{name}: boom")
                    return Result(command, name, 0, f"ran {command} within {timeout}", "")
            return Conn()

    parent, child = socket.socketpair()
    with parent, child:
        connection = relay.RelayPool(relay.Relay(child)).get("h1")
        relay.send(parent, relay.answer_run(Pool(), "h1", "echo", 2.0))  # answer queued ahead
        assert connection.run("echo", timeout=2.0).stdout == "ran echo within 2.0"
        assert relay.receive(parent) == ("run", "h1", "echo", 2.0)
        relay.send(parent, relay.answer_run(Pool(), "h1", "boom", None))
        with pytest.raises(LabError, match="h1: boom"):
            connection.run("boom")


@pytest.mark.parametrize("workers", [1, 8])
def test_same_named_checks_of_roles_behind_a_symlinked_roles_dir_keep_their_roles(
        site, tmp_path_factory, workers):
    """A site whose roles/ is a symlink (as the lab tests lay theirs out): every check
    keeps its role and module name, and each one's outcome is its own."""
    linked = tmp_path_factory.mktemp("linked")
    for name in ("inv.yml", "site.yml"):
        (linked / name).write_text((site / name).read_text())
    (linked / "roles").symlink_to(site / "roles")
    for role in ("alpha", "beta"):
        (site / "roles" / role / "verify" / "test_same.py").write_text(
            f"def test_marker(host):\n"
            f"    assert host.check_output('echo {role}') == 'alpha', 'this is {role}'\n")
    result, _, _, _ = run_verify(linked, workers, keyword="marker")
    assert [(r.role, r.host, r.check, r.outcome) for r in result.results] == [
        ("alpha", h, "test_same.py::test_marker", "passed") for h in "abc"] + [
        ("beta", h, "test_same.py::test_marker", "failed") for h in "bc"]
    assert {r.message.splitlines()[0] for r in result.results if r.role == "beta"} == {"this is beta"}


def test_check_processes_cannot_write_to_the_parents_sockets(site, monkeypatch):
    """What a stray finalizer of a parent's object (a paramiko Channel's __del__ sends on
    its transport) would do in a check process: the parent's peer sees none of it."""
    ours, peer = socket.socketpair()
    with ours, peer:
        monkeypatch.setenv("PARENT_SOCKET_FD", str(ours.fileno()))
        (site / "roles" / "beta" / "verify" / "test_stray.py").write_text(
            "import os\n\n\ndef test_stray_write(host):\n"
            "    os.write(int(os.environ['PARENT_SOCKET_FD']), b'garbage')\n")
        result, _, _, _ = run_verify(site, workers=8, roles=("beta",), keyword="stray")
        assert [r.outcome for r in result.results] == ["passed", "passed"]
        peer.setblocking(False)
        with pytest.raises(BlockingIOError):
            peer.recv(100)
        ours.sendall(b"still ours")  # the parent's own end is untouched
        assert peer.recv(100) == b"still ours"


def test_checks_run_concurrently_on_containers_and_one_after_another_on_tcg_vms():
    from labctl.verify.runner import default_workers

    assert default_workers("nspawn") > 1
    assert default_workers("libvirt") == 1
