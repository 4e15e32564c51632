"""The pytest plugin a verification session runs with.

It gives the roles' testinfra modules their fixtures, parametrizes every check that
uses ``host`` over the hosts its role was applied to, and turns pytest's reports into
``CheckResult``s (one per check and host), handing each role's results over as soon
as the role's last check has finished.

Fixtures: ``host`` (a testinfra ``Host`` over the lab's pooled connection),
``hostvars`` (the variables the role saw on that host), ``lab`` (a ``LabView``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from labctl.verify.discovery import SuiteRun
from labctl.verify.labview import LabView, ResolvedVars
from labctl.verify.results import ERROR, FAILED, NO_HOST, PASSED, SKIPPED, CheckResult

HOST_PARAM = "_labctl_host"
UNKNOWN_ROLE = "(unknown role)"

HostFactory = Callable[[str], Any]  # host name -> testinfra Host (raises if unreachable)
VarsFactory = Callable[[SuiteRun, str], ResolvedVars]  # (role's run, host) -> hostvars
RoleDone = Callable[[str, list[CheckResult]], None]

# "labctl.connection.UnreachableError: host ..." reads better as "UnreachableError: host ..."
_QUALIFIED_EXCEPTION = re.compile(r"^(?:[A-Za-z_][\w]*\.)+(?=[A-Za-z_]\w*: )")


def clean_message(message: str) -> str:
    message = message.strip()
    if message.startswith("AssertionError: "):
        message = message[len("AssertionError: "):]
    elif message == "AssertionError":
        message = "assertion failed"
    return _QUALIFIED_EXCEPTION.sub("", message, count=1)


def check_name(nodeid: str, host: str) -> str:
    """``role/verify/test_x.py::TestA::test_b[h1-foo]`` -> ``test_x.py::TestA::test_b[foo]``."""
    path, _, rest = nodeid.partition("::")
    name = f"{Path(path).name}::{rest}" if rest else Path(path).name
    if host == NO_HOST or not name.endswith("]") or "[" not in name:
        return name
    base, _, ids = name[:-1].partition("[")
    if ids == host:
        return base
    if ids.startswith(host + "-"):
        ids = ids[len(host) + 1:]
    elif ids.endswith("-" + host):
        ids = ids[: -len(host) - 1]
    else:
        ids = ids.replace(f"-{host}-", "-", 1)
    return f"{base}[{ids}]"


class _Outcome:
    """A check's outcome as its setup/call/teardown reports come in."""

    def __init__(self) -> None:
        self.outcome: str | None = None
        self.seconds = 0.0
        self.message = ""
        self.location = ""
        self.details = ""

    def fail(self, outcome: str, message: str, location: str, details: str) -> None:
        self.outcome, self.message, self.location, self.details = (
            outcome, message, location, details)


class VerifyPlugin:
    def __init__(
        self,
        runs: list[SuiteRun],
        hosts: HostFactory,
        lab: LabView,
        variables: VarsFactory,
        on_role_done: RoleDone | None = None,
        *,
        relative_to: Path | None = None,
    ) -> None:
        self.runs = runs
        self._hosts = hosts
        self._lab = lab
        self._variables = variables
        self._on_role_done = on_role_done
        self._relative_to = relative_to
        self.results: list[CheckResult] = []
        self._items: dict[str, tuple[str, str, str]] = {}  # nodeid -> (role, host, check)
        self._rootpath: Path | None = None
        self._item_runs: dict[str, SuiteRun] = {}
        self._outcomes: dict[str, _Outcome] = {}
        self._pending: dict[str, int] = {run.role: 0 for run in runs}
        self._reported: set[str] = set()
        self._verify_dirs = [(run.suite.verify_dir, run) for run in runs]
        self._forward: Callable[[Any], None] | None = None

    # -- running in a forked check process (labctl.verify.parallel) ----------------

    def group_of(self, item: pytest.Item) -> tuple[str, str]:
        """(role, host) of a collected check: the checks that run in one process."""
        role, host, _ = self._items.get(item.nodeid, (UNKNOWN_ROLE, NO_HOST, ""))
        return role, host

    def in_check_process(self, hosts: HostFactory, forward: Callable[[Any], None]) -> None:
        """Checks now use ``hosts``; their reports, and each finished check's nodeid,
        go to ``forward`` (the parent replays them) instead of becoming results here."""
        self._hosts = hosts
        self._forward = forward

    # -- which role a file belongs to ---------------------------------------------

    def pytest_configure(self, config: pytest.Config) -> None:
        self._rootpath = config.rootpath

    def run_for(self, path: Path | str) -> SuiteRun | None:
        """The suite run a file belongs to (relative paths are pytest's, from its rootdir)."""
        path = Path(path)
        if not path.is_absolute() and self._rootpath is not None:
            path = self._rootpath / path
        path = path.resolve()
        for verify_dir, run in self._verify_dirs:
            if path.is_relative_to(verify_dir):
                return run
        return None

    def _role_of(self, path: Path | str) -> str:
        run = self.run_for(path)
        return run.role if run else UNKNOWN_ROLE

    # -- fixtures ------------------------------------------------------------------

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if HOST_PARAM in metafunc.fixturenames:
            run = self.run_for(metafunc.definition.path)
            hosts = list(run.hosts) if run else []
            metafunc.parametrize(HOST_PARAM, hosts, indirect=True, ids=hosts)

    @pytest.fixture
    def _labctl_host(self, request: pytest.FixtureRequest) -> str:
        return request.param

    @pytest.fixture
    def host(self, _labctl_host: str) -> Any:
        """A testinfra Host for the lab host this check runs on (pooled SSH connection)."""
        return self._hosts(_labctl_host)

    @pytest.fixture
    def hostvars(self, request: pytest.FixtureRequest, _labctl_host: str) -> ResolvedVars:
        """The variables the role saw on this host (defaults, inventory, -e), templated."""
        run = self.run_for(request.node.path)
        if run is None:
            raise LookupError(f"{request.node.path} is not part of a role's verify suite")
        return self._variables(run, _labctl_host)

    @pytest.fixture(scope="session")
    def lab(self) -> LabView:
        """The lab's inventory: hosts, groups, addresses and each host's vars."""
        return self._lab

    # -- collecting outcomes -------------------------------------------------------

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            callspec = getattr(item, "callspec", None)
            host = callspec.params.get(HOST_PARAM, NO_HOST) if callspec else NO_HOST
            run = self.run_for(item.path)
            role = run.role if run else UNKNOWN_ROLE
            if run is not None:
                self._item_runs[item.nodeid] = run
            self._items[item.nodeid] = (role, host, check_name(item.nodeid, host))
            self._pending[role] = self._pending.get(role, 0) + 1

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if not report.failed:
            return
        path = Path(report.fspath) if report.fspath else Path(report.nodeid)
        role = self._role_of(path)
        text = str(report.longrepr)
        errors = [line[1:].strip() for line in text.splitlines() if line.startswith("E ")]
        message = "\n".join(errors) or text.strip().splitlines()[-1]
        self.results.append(CheckResult(
            role, NO_HOST, f"{path.name} (collecting)", ERROR,
            message=f"cannot load the check module: {clean_message(message)}",
            location=self._relative(path), details=text,
        ))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if self._forward is not None:
            self._forward(report)
            return
        state = self._outcomes.setdefault(report.nodeid, _Outcome())
        state.seconds += report.duration
        if report.when == "call":
            if report.passed:
                state.outcome = PASSED
            elif report.skipped:
                state.fail(SKIPPED, self._skip_reason(report), "", "")
            else:
                state.fail(FAILED, *self._failure(report))
        elif report.failed:  # setup or teardown raised
            if state.outcome in (None, PASSED):
                message, location, details = self._failure(report)
                if report.when == "teardown":
                    message = f"while tearing down: {message}"
                state.fail(ERROR, message, location, details)
        elif report.skipped and report.when == "setup":
            state.fail(SKIPPED, self._skip_reason(report), "", "")

    def pytest_runtest_logfinish(self, nodeid: str) -> None:
        if self._forward is not None:
            self._forward(nodeid)
            return
        role, host, check = self._items.get(nodeid, (UNKNOWN_ROLE, NO_HOST, nodeid))
        state = self._outcomes.pop(nodeid, _Outcome())
        self.results.append(CheckResult(
            role, host, check, state.outcome or ERROR, state.seconds,
            state.message if state.outcome else "the check did not run", state.location,
            state.details,
        ))
        self._pending[role] = self._pending.get(role, 1) - 1
        if self._pending[role] <= 0:
            self._role_done(role)

    def pytest_sessionfinish(self) -> None:
        for role in list(self._pending):
            self._role_done(role)

    def _role_done(self, role: str) -> None:
        if role in self._reported:
            return
        self._reported.add(role)
        if self._on_role_done is not None:
            self._on_role_done(role, [r for r in self.results if r.role == role])

    # -- reading reports -----------------------------------------------------------

    def _relative(self, path: Path | str) -> str:
        path = Path(path)
        if self._relative_to is not None and path.is_absolute():
            try:
                return str(path.relative_to(self._relative_to))
            except ValueError:
                pass
        return str(path)

    @staticmethod
    def _skip_reason(report: pytest.TestReport) -> str:
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        return reason.removeprefix("Skipped: ")

    def _failure(self, report: pytest.TestReport) -> tuple[str, str, str]:
        """(message, location in the check module, full report text)."""
        longrepr = report.longrepr
        crash = getattr(longrepr, "reprcrash", None)
        message = clean_message(crash.message) if crash else str(longrepr).strip()
        location = ""
        run = self._item_runs.get(report.nodeid)
        entries = getattr(getattr(longrepr, "reprtraceback", None), "reprentries", [])
        for entry in entries:  # the innermost frame inside the role's suite
            where = getattr(entry, "reprfileloc", None)
            if where is None or run is None:
                continue
            path = Path(where.path).resolve()  # pytest writes it relative to the cwd
            if path.is_relative_to(run.suite.verify_dir):
                location = f"{self._relative(path)}:{where.lineno}"
        return message, location, report.longreprtext
