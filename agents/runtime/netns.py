"""Network namespaces of sandboxes, named ``lab-<sandbox id prefix>`` under /run/netns
(``ip netns`` style: a bind mount of the namespace file keeps it alive with no process
in it — the sandbox is the namespace, there is no pause process)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from agents.runtime.model import RuntimeError_

NETNS_DIR = Path("/run/netns")


def netns_name(sandbox_id: str) -> str:
    return f"lab-{sandbox_id[:16]}"


def netns_path(name: str) -> str:
    return str(NETNS_DIR / name)


def _ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True)


def create(name: str, loopback_up: bool = True) -> str:
    """``loopback_up`` False: the caller's network plugin brings ``lo`` up (one program
    less per pod)."""
    added = _ip("netns", "add", name)
    if added.returncode != 0:
        raise RuntimeError_(f"cannot create network namespace {name}: {added.stderr.strip()}")
    if not loopback_up:
        return netns_path(name)
    up = _ip("-n", name, "link", "set", "lo", "up")
    if up.returncode != 0:
        delete(name)
        raise RuntimeError_(f"cannot bring up lo in network namespace {name}: {up.stderr.strip()}")
    return netns_path(name)


def delete(name: str) -> None:
    """Idempotent."""
    if Path(netns_path(name)).exists():
        gone = _ip("netns", "delete", name)
        if gone.returncode != 0 and Path(netns_path(name)).exists():
            raise RuntimeError_(f"cannot delete network namespace {name}: {gone.stderr.strip()}")
