"""Checks that several roles' verification suites make; import them from ``verify/``.

Each takes a testinfra ``host`` and fails with an assertion message that says what is
wrong on that host.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest


def run_json(host, argv: list[str]):
    """Run ``argv`` (quoted as arguments) on ``host``: (exit code, its JSON output).

    Fails the check, with the output, when the command printed no JSON."""
    out = host.run(" ".join(["%s"] * len(argv)), *argv)
    try:
        return out.rc, json.loads(out.stdout)
    except ValueError:
        pytest.fail(f"{' '.join(argv)} printed no JSON (exit {out.rc}): "
                    f"{out.stdout.strip()} {out.stderr.strip()}")


def assert_service_running_and_enabled(host, name: str) -> None:
    service = host.service(name)
    assert service.is_running, f"{service.name} is not running"
    assert service.is_enabled, f"{service.name} is not enabled"


def assert_unit_restarts_on_failure(host, name: str) -> None:
    unit = f"/etc/systemd/system/{name}.service"
    assert "Restart=on-failure" in host.file(unit).content_string.splitlines(), (
        f"{unit} has no Restart=on-failure")


def once_per_host(cache: dict[str, Any], host, read: Callable[[], Any]) -> Any:
    """``read()`` for this host the first time, its answer from ``cache`` afterwards:
    several checks judge one reading (one Python start on the host instead of one per
    check; on TCG VMs each costs about half a second)."""
    name = host.backend.get_hostname()
    if name not in cache:
        cache[name] = read()
    return cache[name]


def assert_readable_only_by_root(host, paths) -> None:
    """Each of ``paths`` is a file with mode 600 (private keys, kubeconfigs)."""
    for path in paths:
        f = host.file(path)
        assert f.is_file, f"{path} is missing"
        assert f.mode == 0o600, f"{path} has mode {f.mode:o}, not 600"


def assert_healthz_answers(host, python: str, check_code: str, url: str) -> None:
    """``python -c check_code url`` (the role's healthz one-liner) exits 0."""
    out = host.run("%s -c %s %s", python, check_code, url)
    assert out.rc == 0, f"GET {url} failed: {out.stderr.strip()[-300:]}"


def assert_lease_held_by_a_control_plane(host, *, python: str, probe_tool: str, server: str,
                                         pki_dir: str, client: str, user: str, lease: str,
                                         component: str, control_planes: list[str]) -> None:
    """The leader-election Lease ``lease`` (an API path), read through the apiserver role's
    probe tool as ``user`` (client certificate ``pki_dir/client.crt``), is held by one of
    ``control_planes`` (identities are ``<hostname>_<uuid>``, as Kubernetes' own)."""
    rc, answer = run_json(host, [
        python, probe_tool, "--server", server, "--cacert", f"{pki_dir}/ca.crt",
        "--cert", f"{pki_dir}/{client}.crt", "--key", f"{pki_dir}/{client}.key", lease])
    assert rc == 0, f"GET {lease} as {user} failed: {answer}"
    holder = (answer["body"].get("spec") or {}).get("holderIdentity") or ""
    assert holder.split("_")[0] in control_planes, (
        f"the {component} Lease is held by {holder!r}, not by one of {control_planes}")


# Run by a role's python with a tool script and a JSON list of argv lists: loads the
# tool once and calls its main(argv) for each, printing [[exit code, stdout, stderr], ...].
# One interpreter start (and one import of grpc and the like) instead of one per call.
_TOOL_RUNS = r"""
import contextlib, io, json, runpy, sys, traceback
main = runpy.run_path(sys.argv[1], run_name="lab_tool")["main"]
results = []
for argv in json.loads(sys.argv[2]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except Exception:
            traceback.print_exc()
            rc = 1
    results.append([rc or 0, out.getvalue(), err.getvalue()])
print(json.dumps(results))
"""


@dataclass(frozen=True)
class ToolRun:
    """One call of a tool run by ``tool_runs``."""

    argv: tuple[str, ...]  # the tool's path and its arguments
    rc: int
    stdout: str
    stderr: str

    def answer(self):
        """(exit code, its JSON output), as ``run_json`` gives; fails the check without JSON."""
        try:
            return self.rc, json.loads(self.stdout)
        except ValueError:
            pytest.fail(f"{' '.join(self.argv)} printed no JSON (exit {self.rc}): "
                        f"{self.stdout.strip()} {self.stderr.strip()}")


def tool_runs(host, python: str, tool: str, argvs: list[list[str]]) -> list[ToolRun]:
    """Run the Python tool script ``tool`` (which has a ``main(argv)``) once per argv in
    ``argvs``, all in one run of ``python`` on ``host``."""
    out = host.run("%s -c %s %s %s", python, _TOOL_RUNS, tool, json.dumps(argvs))
    try:
        results = json.loads(out.stdout)
    except ValueError:
        pytest.fail(f"{python} could not run {tool} (exit {out.rc}): "
                    f"{out.stdout.strip()[-500:]} {out.stderr.strip()[-1000:]}")
    return [ToolRun((tool, *argv), rc, stdout, stderr)
            for argv, (rc, stdout, stderr) in zip(argvs, results, strict=True)]


class ToolReadings:
    """A suite's read-only tool calls on each host, all made in one run the first time
    any of them is asked for (``together``: the same list from every check); a call
    not in the list runs on its own."""

    def __init__(self) -> None:
        self._cache: dict[str, dict[tuple[str, ...], ToolRun]] = {}

    def answer(self, host, python: str, tool: str, argv: list[str],
               together: list[list[str]]):
        """(exit code, JSON output) of ``tool argv`` on ``host``."""
        def read():
            return {run.argv[1:]: run for run in tool_runs(host, python, tool, together)}
        run = once_per_host(self._cache, host, read).get(tuple(argv))
        if run is None:
            run = tool_runs(host, python, tool, [argv])[0]
        return run.answer()
