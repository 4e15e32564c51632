"""``verify()``: run the verify suites of the roles a site applies, on the lab's hosts.

    from labctl.verify import verify, VerifyOptions
    result = verify(inventory, pool, "site.yml", VerifyOptions(limit="workers"))
    result.ok, result.results

All suites run in one pytest session (one session start, not one per role) with our
plugin providing ``host``/``hostvars``/``lab``; after collection the checks of each
role on each host run in a forked process of their own, several at once
(``VerifyOptions.workers``, labctl.verify.parallel), and are reported in collection
order as if run one after another. Every command still runs here over ``pool``'s
connections, so after a deploy no host is logged in to again. The cluster smoke test
starts alongside the suites and stops hosts only after them. The session is walled
off from whatever project it sits in: no ini file (``-c /dev/null``), no conftest.py
above the roles (``--confcutdir``), no cache, no testinfra plugin, no PYTEST_ADDOPTS,
and the check modules are forgotten afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import pytest

from labctl.errors import LabError
from labctl.verify.backend import DEFAULT_COMMAND_TIMEOUT, PooledHosts
from labctl.verify.cluster import KUBELET_ROLE, SmokeAlongside
from labctl.verify.discovery import SUITE_DIR, SUITE_GLOB, SuiteRun, discover, plan_runs
from labctl.verify.labview import RoleVars, lab_view
from labctl.verify.parallel import ParallelChecks
from labctl.verify.plugin import VerifyPlugin
from labctl.verify.results import CheckResult, VerifyResult, format_role, format_summary
from labctl.verify.smoke import ROLE as CLUSTER_ROLE

# Plugins a verification session does without: no cache dir written into the roles,
# no testinfra --hosts parametrization (ours does it), our own output instead of
# pytest's, and no process-wide faulthandler changes.
BLOCKED_PLUGINS = ("cacheprovider", "pytest11.testinfra", "terminal", "faulthandler")


@dataclass
class VerifyOptions:
    limit: str | None = None  # Ansible host pattern
    roles: tuple[str, ...] = ()  # only these roles' suites
    keyword: str | None = None  # pytest -k expression over check names
    as_json: bool = False
    roles_path: tuple[Path, ...] = ()  # as for deploy: more directories holding roles
    out: TextIO | None = None  # default: sys.stdout at call time
    command_timeout: float | None = DEFAULT_COMMAND_TIMEOUT  # per command a check runs
    parallel_logins: int = 16
    # Groups of checks (a role's on one host) run at once, each in a forked process
    # whose commands use this process's connections (labctl.verify.parallel); 1 runs
    # every check here, one after another. Output and results are the same either way.
    # None: default_workers(the lab's provider).
    workers: int | None = None
    # The cluster smoke test (labctl.verify.smoke) after the roles' suites: None runs it
    # when the site applies the kubelet role and no filter (limit/roles/-k) is given.
    smoke: bool | None = None
    disrupt: bool = True  # let the smoke test stop a worker / control plane and start it again
    host_power: tuple[Callable[[str], None], Callable[[str], None]] | None = None  # (stop, start)


def pytest_args(runs: list[SuiteRun], keyword: str | None = None) -> list[str]:
    """The arguments of the walled-off pytest session for ``runs`` (pure)."""
    role_dirs = [str(run.suite.path) for run in runs]
    base = os.path.commonpath(role_dirs) if len(role_dirs) > 1 else str(runs[0].suite.path.parent)
    args = ["-c", os.devnull, "--rootdir", base, "--confcutdir", base]
    for name in BLOCKED_PLUGINS:
        args += ["-p", f"no:{name}"]
    args += [
        "--import-mode=importlib",  # same-named check modules of two roles never clash
        "--capture=sys",
        "--continue-on-collection-errors",  # one broken suite must not hide the others
        "-o", f"python_files={SUITE_GLOB}",
    ]
    if keyword:
        args += ["-k", keyword]
    # resolved like the roles' directories (rootdir): a check module reached through a
    # symlinked roles/ must get a node id under the rootdir, or same-named checks of two
    # roles would share one
    args += [str(Path(test).resolve()) for run in runs for test in run.suite.tests]
    return args


@contextlib.contextmanager
def walled_off(roots: list[Path]) -> Iterator[None]:
    """No PYTEST_ADDOPTS, no bytecode written into the roles, check modules forgotten."""
    addopts = os.environ.pop("PYTEST_ADDOPTS", None)
    dont_write = sys.dont_write_bytecode
    sys.dont_write_bytecode = True
    before = set(sys.modules)
    try:
        yield
    finally:
        sys.dont_write_bytecode = dont_write
        if addopts is not None:
            os.environ["PYTEST_ADDOPTS"] = addopts
        # children first: a namespace package's __path__ needs its parent to be importable
        for name in sorted(set(sys.modules) - before, key=lambda n: n.count("."), reverse=True):
            if _loaded_from(sys.modules.get(name), roots):
                del sys.modules[name]


def _loaded_from(module: Any, roots: list[Path]) -> bool:
    try:
        paths = [getattr(module, "__file__", None), *list(getattr(module, "__path__", None) or [])]
    except (KeyError, ImportError):  # a namespace package whose parent is gone already
        return False
    return any(path and any(Path(path).resolve().is_relative_to(root) for root in roots)
               for path in paths)


def default_workers(provider: str) -> int:
    """Concurrent check groups for a lab. On libvirt (TCG VMs, where every Python start
    takes seconds) concurrent checks on one VM time out each other's TLS handshakes, so
    checks run one after another there, and the smoke test after the suites."""
    return 1 if provider == "libvirt" else 8


def wants_smoke(options: VerifyOptions, applied_roles: list[str]) -> bool:
    """Whether the cluster smoke test runs after the roles' suites (pure)."""
    if options.smoke is not None:
        return options.smoke
    filtered = options.limit or options.roles or options.keyword
    return KUBELET_ROLE in applied_roles and not filtered


def _smoke(inventory: Any, pool: Any, options: VerifyOptions,
           before_disrupting: Callable[[], None]) -> list[CheckResult]:
    from labctl import hostpower
    from labctl.verify.cluster import run_cluster_smoke
    from labctl.verify.smoke import SmokeOptions

    stop, start = options.host_power or (
        lambda host: hostpower.stop_hosts(inventory.lab_name, [host], progress=None),
        lambda host: hostpower.start_hosts(inventory.lab_name, [host], progress=None))
    return run_cluster_smoke(inventory, pool, SmokeOptions(disrupt=options.disrupt), stop, start,
                             before_disrupting)


def verify(inventory: Any, pool: Any, site_path: Path | str,
           options: VerifyOptions | None = None) -> VerifyResult:
    """Run the verify suites of the roles ``site_path`` applies to ``inventory``'s hosts."""
    options = options or VerifyOptions()
    out = options.out or sys.stdout
    started = time.monotonic()
    found = discover(site_path, options.roles_path)
    runs = plan_runs(found, inventory.hosts_matching, list(inventory.hosts),
                     limit=options.limit, roles=options.roles)
    targets = [h for h in inventory.hosts if any(h in run.hosts for run in runs)]
    result = VerifyResult(roles=[run.role for run in runs], hosts=targets)
    if not runs:
        if not options.as_json:
            print(f"verify: no role that {site_path} applies has a verify suite "
                  f"(roles/<role>/{SUITE_DIR}/{SUITE_GLOB})", file=out, flush=True)
        else:
            print(json.dumps(result.to_dict(), indent=2), file=out, flush=True)
        return result

    hosts = PooledHosts(pool, timeout=options.command_timeout)
    result.unreachable = hosts.connect_all(targets, options.parallel_logins)
    role_vars = RoleVars(inventory, found.plays, Path(site_path).parent)
    run_of = {run.role: run for run in runs}

    def variables(run: SuiteRun, host: str):
        return role_vars.for_host(run.role, run.suite.path, run.play_of[host], host)

    def role_done(role: str, results: list[CheckResult]) -> None:
        if options.as_json:
            return
        hosts_of = list(run_of[role].hosts) if role in run_of else []
        for line in format_role(role, results, hosts_of, result.unreachable):
            print(line, file=out)
        out.flush()

    plugin = VerifyPlugin(runs, hosts, lab_view(inventory), variables, role_done,
                          relative_to=Path(site_path).resolve().parent)
    # The smoke test runs alongside the suites (from when their checks start); it stops
    # hosts only after them.
    smoke = (SmokeAlongside(lambda before_disrupting: _smoke(inventory, pool, options,
                                                            before_disrupting))
             if wants_smoke(options, found.applied) and not result.unreachable else None)
    workers = options.workers if options.workers is not None else default_workers(
        getattr(inventory, "provider", ""))
    # alongside the suites only when they run concurrently: a sequential run is the slow
    # (VM) case, where the smoke test's load would slow every check down further
    parallel = ParallelChecks(
        plugin.group_of,
        lambda relay, forward: plugin.in_check_process(hosts.relayed(relay), forward),
        pool, workers, on_running=smoke.start if smoke and workers > 1 else lambda: None)
    roots = [run.suite.path for run in runs]
    try:
        with walled_off(roots):
            code = pytest.main(pytest_args(runs, options.keyword), plugins=[plugin, parallel])
        if code == pytest.ExitCode.INTERRUPTED:
            raise KeyboardInterrupt
        if code in (pytest.ExitCode.INTERNAL_ERROR, pytest.ExitCode.USAGE_ERROR):
            hint = f" (is -k {options.keyword!r} a valid expression?)" if options.keyword else ""
            raise LabError(f"pytest could not run the verify suites (exit code {int(code)}){hint}; "
                           "see the messages above")
    except BaseException:
        if smoke is not None:
            smoke.abandon()
        raise
    result.results = plugin.results
    if smoke is not None:
        result.results += smoke.finish()
        result.roles.append(CLUSTER_ROLE)
        role_done(CLUSTER_ROLE, [r for r in result.results if r.role == CLUSTER_ROLE])
    result.seconds = time.monotonic() - started
    if options.as_json:
        print(json.dumps(result.to_dict(), indent=2), file=out, flush=True)
    else:
        print(format_summary(result), file=out, flush=True)
    return result
