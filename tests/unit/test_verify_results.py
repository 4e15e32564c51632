"""How verification outcomes read: check names, messages, role blocks, summary, JSON;
and the arguments that wall the in-process pytest session off from this project."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from labctl.verify.discovery import PlayTarget, RoleSuite, SuiteRun
from labctl.verify.plugin import check_name, clean_message
from labctl.verify.results import (
    ERROR,
    FAILED,
    NO_HOST,
    PASSED,
    SKIPPED,
    CheckResult,
    VerifyResult,
    format_role,
    format_summary,
)
from labctl.verify.runner import pytest_args

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("nodeid", "host", "expected"), [
    ("toy/verify/test_toy.py::test_a[h1]", "h1", "test_toy.py::test_a"),
    ("toy/verify/test_toy.py::TestA::test_b[web-1]", "web-1", "test_toy.py::TestA::test_b"),
    ("toy/verify/test_toy.py::test_c[h1-nginx]", "h1", "test_toy.py::test_c[nginx]"),
    ("toy/verify/test_toy.py::test_c[nginx-h1]", "h1", "test_toy.py::test_c[nginx]"),
    ("toy/verify/test_toy.py::test_c[a-h1-b]", "h1", "test_toy.py::test_c[a-b]"),
    ("toy/verify/test_toy.py::test_d", NO_HOST, "test_toy.py::test_d"),
    ("toy/verify/test_toy.py::test_e[x]", NO_HOST, "test_toy.py::test_e[x]"),
])
def test_check_name_drops_the_host_parameter(nodeid, host, expected):
    assert check_name(nodeid, host) == expected


@pytest.mark.parametrize(("raw", "expected"), [
    ("AssertionError: /srv/x is missing\nassert False", "/srv/x is missing\nassert False"),
    ("AssertionError", "assertion failed"),
    ("labctl.connection.UnreachableError: host h1 (10.0.0.2) is unreachable: refused",
     "UnreachableError: host h1 (10.0.0.2) is unreachable: refused"),
    ("assert 1 == 2", "assert 1 == 2"),
    ("RuntimeError: Unexpected output a.b: c", "RuntimeError: Unexpected output a.b: c"),
])
def test_clean_message(raw, expected):
    assert clean_message(raw) == expected


def results() -> list[CheckResult]:
    return [
        CheckResult("toy", "h1", "test_toy.py::test_a", PASSED, 0.01),
        CheckResult("toy", "h1", "test_toy.py::test_b", FAILED, 0.02,
                    "/srv/toy/greeting is missing\nassert False",
                    "roles/toy/verify/test_toy.py:12"),
        CheckResult("toy", "h2", "test_toy.py::test_a", PASSED, 0.01),
        CheckResult("toy", "h2", "test_toy.py::test_b", SKIPPED, 0.0, "not a web host"),
        CheckResult("toy", NO_HOST, "test_toy.py::test_lab", PASSED, 0.0),
    ]


def test_role_block_lists_hosts_and_each_failure_with_its_message():
    lines = format_role("toy", results(), ["h1", "h2"], {})
    assert lines[0] == "toy: 3 checks on 2 hosts"
    assert lines[1].split()[:2] == ["FAILED", "h1"] and "1 passed, 1 failed" in lines[1]
    assert lines[2].strip() == "FAILED test_toy.py::test_b  [roles/toy/verify/test_toy.py:12]"
    assert [line.strip() for line in lines[3:5]] == ["/srv/toy/greeting is missing", "assert False"]
    assert lines[5].split()[:2] == ["ok", "h2"] and "1 passed, 1 skipped" in lines[5]
    assert lines[6].split()[:3] == ["ok", "(no", "host)"]
    assert len(lines) == 7


def test_unreachable_host_is_one_line_with_the_reason():
    errors = [CheckResult("toy", "h2", f"test_toy.py::test_{c}", ERROR, 0.0, "unreachable")
              for c in "ab"]
    lines = format_role("toy", errors, ["h2"], {"h2": "host h2 (10.0.0.3) is unreachable: refused"})
    assert lines == ["toy: 2 checks on 1 host",
                     "  UNREACHABLE  h2  host h2 (10.0.0.3) is unreachable: refused"]


def test_result_verdict_exit_code_and_summary():
    ok = VerifyResult([r for r in results() if r.outcome != FAILED], ["toy"], ["h1", "h2"],
                      seconds=0.5)
    assert ok.ok and ok.exit_code == 0
    assert format_summary(ok) == "verify ok: 3 passed, 1 skipped (1 role, 2 hosts) in 0.50 s"
    failed = VerifyResult(results(), ["toy"], ["h1", "h2"], seconds=1.25)
    assert not failed.ok and failed.exit_code == 1
    assert [r.check for r in failed.failures()] == ["test_toy.py::test_b"]
    assert format_summary(failed).startswith("verify FAILED: 3 passed, 1 failed, 1 skipped")
    unreachable = VerifyResult(results(), ["toy"], ["h1", "h2"], {"h2": "gone"})
    assert unreachable.exit_code == 2 and format_summary(unreachable).endswith("unreachable: h2")
    assert VerifyResult().ok  # nothing to verify is not a failure


def test_json_document_counts_per_role_and_host():
    doc = json.loads(json.dumps(VerifyResult(results(), ["toy"], ["h1", "h2"]).to_dict()))
    assert doc["ok"] is False
    assert doc["summary"] == {"passed": 3, "failed": 1, "error": 0, "skipped": 1}
    assert doc["roles"]["toy"]["h1"] == {"passed": 1, "failed": 1, "error": 0, "skipped": 0}
    assert doc["roles"]["toy"][NO_HOST]["passed"] == 1
    failed = [r for r in doc["results"] if r["outcome"] == "failed"]
    assert failed[0]["location"] == "roles/toy/verify/test_toy.py:12"
    assert set(doc["results"][0]) >= {"role", "host", "check", "outcome", "seconds", "message"}


def _run(path: Path) -> SuiteRun:
    suite = RoleSuite(path.name, path, (path / "verify" / "test_x.py",), (PlayTarget(0, "all"),))
    return SuiteRun(suite, ("h1",))


def test_pytest_session_is_walled_off_from_the_project():
    runs = [_run(Path("/site/roles/a")), _run(Path("/site/roles/b"))]
    args = pytest_args(runs, keyword="not slow")
    assert args[:6] == ["-c", os.devnull, "--rootdir", "/site/roles", "--confcutdir", "/site/roles"]
    blocked = [args[i + 1] for i, a in enumerate(args) if a == "-p"]
    assert {"no:cacheprovider", "no:pytest11.testinfra", "no:terminal"} <= set(blocked)
    assert "--import-mode=importlib" in args and "--continue-on-collection-errors" in args
    assert args[args.index("-k") + 1] == "not slow"
    assert args[-2:] == ["/site/roles/a/verify/test_x.py", "/site/roles/b/verify/test_x.py"]
    # one role: walled at its roles directory, so a conftest.py above it is never read
    assert pytest_args(runs[:1])[2:6] == ["--rootdir", "/site/roles", "--confcutdir", "/site/roles"]
