"""Shared test plumbing.

A test that needs something the machine lacks (root, a binary) calls ``need(...)``:
on a developer's machine it skips with the reason; under CI
(``LABCTL_REQUIRE_ALL_TIERS=1``) it fails, so a tier can never pass by not running.
"""

from __future__ import annotations

import os
import shutil

import pytest


def need(condition: bool, reason: str) -> None:
    if condition:
        return
    if os.environ.get("LABCTL_REQUIRE_ALL_TIERS") == "1":
        pytest.fail(f"required for this tier but missing: {reason}")
    pytest.skip(reason)


def need_root() -> None:
    need(os.geteuid() == 0, "needs root")


def need_tool(name: str) -> str:
    path = shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None)
    need(path is not None, f"needs the `{name}` program")
    return path  # type: ignore[return-value]
