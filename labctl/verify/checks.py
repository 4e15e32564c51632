"""Checks that several roles' verification suites make; import them from ``verify/``.

Each takes a testinfra ``host`` and fails with an assertion message that says what is
wrong on that host.
"""

from __future__ import annotations

import json

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
