"""The check helpers the roles' verify suites share (labctl.verify.checks), on a fake
testinfra host."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from labctl.verify import checks

pytestmark = pytest.mark.unit


class FakeHost:
    """Files with modes; ``run`` is set per test."""

    def __init__(self, name="h1", files=None):
        self.backend = SimpleNamespace(get_hostname=lambda: name)
        self.files = files or {}

    def file(self, path):
        mode = self.files.get(path)
        return SimpleNamespace(path=path, is_file=mode is not None, mode=mode)


def test_once_per_host_reads_once_for_each_host():
    cache, reads = {}, []

    def read(name):
        reads.append(name)
        return {"host": name}

    a, b = FakeHost("a"), FakeHost("b")
    assert checks.once_per_host(cache, a, lambda: read("a")) == {"host": "a"}
    assert checks.once_per_host(cache, a, lambda: read("a")) == {"host": "a"}
    assert checks.once_per_host(cache, b, lambda: read("b")) == {"host": "b"}
    assert reads == ["a", "b"]


def test_readable_only_by_root_names_the_missing_or_open_file():
    checks.assert_readable_only_by_root(FakeHost(files={"/k": 0o600}), ["/k"])
    with pytest.raises(AssertionError, match=r"^/gone is missing$"):
        checks.assert_readable_only_by_root(FakeHost(files={"/k": 0o600}), ["/k", "/gone"])
    with pytest.raises(AssertionError, match=r"^/k has mode 644, not 600$"):
        checks.assert_readable_only_by_root(FakeHost(files={"/k": 0o644}), ["/k"])


def lease_host(answer, rc=0):
    host = FakeHost()
    host.run = lambda command, *argv: SimpleNamespace(rc=rc, stdout=json.dumps(answer), stderr="")
    return host


def assert_lease(host):
    checks.assert_lease_held_by_a_control_plane(
        host, python="py", probe_tool="probe", server="https://x:6443", pki_dir="/pki",
        client="kube-scheduler", user="system:kube-scheduler", lease="/leases/kube-scheduler",
        component="scheduler", control_planes=["cp-1", "cp-2"])


def test_lease_must_be_held_by_a_control_plane():
    assert_lease(lease_host({"status": 200, "body": {"spec": {"holderIdentity": "cp-2_1234"}}}))
    with pytest.raises(AssertionError, match=r"the scheduler Lease is held by 'worker-1_9', "
                                             r"not by one of \['cp-1', 'cp-2'\]"):
        assert_lease(lease_host({"status": 200, "body": {"spec": {"holderIdentity": "worker-1_9"}}}))
    with pytest.raises(AssertionError, match=r"GET /leases/kube-scheduler as "
                                             r"system:kube-scheduler failed: \{'status': 403"):
        assert_lease(lease_host({"status": 403, "body": {}}, rc=1))


def test_healthz_failure_shows_the_end_of_stderr():
    host = FakeHost()
    host.run = lambda command, *argv: SimpleNamespace(rc=1, stdout="", stderr="x" * 500 + "refused")
    with pytest.raises(AssertionError, match=r"GET http://h/healthz failed: x+refused$"):
        checks.assert_healthz_answers(host, "py", "code", "http://h/healthz")


TOOL = '''\
import json, sys
calls = 0
def main(argv=None):
    global calls
    calls += 1
    if argv[0] == "crash":
        raise RuntimeError("tool bug")
    if argv[0] == "text":
        print("not json")
        return 3
    print(json.dumps({"argv": argv, "call": calls}))
    print("a warning", file=sys.stderr)
    return 0 if argv[0] == "ok" else 1

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
'''


class LocalHost(FakeHost):
    """Runs commands here (testinfra-style %s quoting), counting them."""

    def __init__(self):
        super().__init__()
        self.commands = 0

    def run(self, command, *args):
        import shlex
        import subprocess

        self.commands += 1
        done = subprocess.run(command % tuple(shlex.quote(a) for a in args), shell=True,
                              capture_output=True, text=True)
        return SimpleNamespace(rc=done.returncode, stdout=done.stdout, stderr=done.stderr)


def test_tool_runs_call_the_tools_main_once_per_argv_in_one_python(tmp_path):
    import sys

    tool = tmp_path / "tool.py"
    tool.write_text(TOOL)
    host = LocalHost()
    ok, bad, text, crash = checks.tool_runs(host, sys.executable, str(tool),
                                            [["ok", "x"], ["bad"], ["text"], ["crash"]])
    assert host.commands == 1
    assert ok.answer() == (0, {"argv": ["ok", "x"], "call": 1}) and ok.stderr == "a warning\n"
    assert bad.answer() == (1, {"argv": ["bad"], "call": 2})  # one module, loaded once
    with pytest.raises(pytest.fail.Exception, match=r"tool.py text printed no JSON \(exit 3\): not json"):
        text.answer()
    with pytest.raises(pytest.fail.Exception, match=r"(?s)printed no JSON \(exit 1\):.*RuntimeError: tool bug"):
        crash.answer()


def test_tool_readings_make_the_listed_calls_once_per_host_and_others_alone(tmp_path):
    import sys

    tool = tmp_path / "tool.py"
    tool.write_text(TOOL)
    readings, host = checks.ToolReadings(), LocalHost()
    together = [["ok", "a"], ["ok", "b"]]
    assert readings.answer(host, sys.executable, str(tool), ["ok", "b"], together) == \
        (0, {"argv": ["ok", "b"], "call": 2})
    assert readings.answer(host, sys.executable, str(tool), ["ok", "a"], together) == \
        (0, {"argv": ["ok", "a"], "call": 1})
    assert host.commands == 1
    assert readings.answer(host, sys.executable, str(tool), ["ok", "c"], together) == \
        (0, {"argv": ["ok", "c"], "call": 1})
    assert host.commands == 2
