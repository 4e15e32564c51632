"""Ending every container of the node when the node shuts down.

A container's first process is the init of its PID namespace, and the kernel drops a
SIGTERM it has no handler for (`sleep`, `python3 -m http.server`...). The shims outlive
the kubelet (its unit kills only its main process), so at poweroff systemd's final kill
would wait out its stop timeout (90 s) for such containers. The runtime role's
`lab-containers-stop` unit runs ``python -m agents.runtime shutdown`` when it stops,
after the kubelet: SIGTERM to every process of every container, SIGKILL to those left
after the grace period — what the kubelet does to one container, done to all.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from .cgroups import CGROUP_ROOT


def container_cgroups(parent: str, root: str | os.PathLike = CGROUP_ROOT) -> list[Path]:
    """Each container's cgroup under ``parent``, in every hierarchy: cgroup v2
    (root/parent/ID) and each v1 controller (root/CONTROLLER/parent/ID)."""
    base = Path(root)
    rel = parent.strip("/")
    found = [d for d in (base / rel).glob("*") if d.is_dir()]
    for hierarchy in base.iterdir():
        found += [d for d in (hierarchy / rel).glob("*") if d.is_dir()]
    return found


def parse_procs(text: str) -> set[int]:
    return {int(word) for word in text.split()}


def pids_in(cgroups: Iterable[Path]) -> set[int]:
    pids: set[int] = set()
    for cgroup in cgroups:
        try:
            pids |= parse_procs((cgroup / "cgroup.procs").read_text())
        except OSError:
            continue  # removed meanwhile, or a hierarchy without that file
    return pids


def _signal_all(pids: Iterable[int], sig: int, kill: Callable[[int, int], None]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):  # ended meanwhile
            kill(pid, sig)


def _wait_until_empty(cgroups: list[Path], seconds: float, poll: float) -> set[int]:
    """Poll until the cgroups hold no process or ``seconds`` pass; the pids left."""
    deadline = time.monotonic() + seconds
    left = pids_in(cgroups)
    while left and time.monotonic() < deadline:
        time.sleep(poll)
        left = pids_in(cgroups)
    return left


def end_all(parent: str, grace: float, root: str | os.PathLike = CGROUP_ROOT,
            kill: Callable[[int, int], None] = os.kill, poll: float = 0.05) -> dict[str, int]:
    """SIGTERM every container process under ``parent``; SIGKILL what is left after
    ``grace`` seconds. How many processes there were and how many needed SIGKILL."""
    cgroups = container_cgroups(parent, root)
    first = pids_in(cgroups)
    _signal_all(first, signal.SIGTERM, kill)
    stubborn = _wait_until_empty(cgroups, grace, poll)
    _signal_all(stubborn, signal.SIGKILL, kill)
    left = _wait_until_empty(cgroups, 5.0, poll)  # SIGKILL acts at once; reaping may lag
    return {"processes": len(first), "killed": len(stubborn), "left": len(left)}
