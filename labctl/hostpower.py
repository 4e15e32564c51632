"""Stop and start single hosts of a running lab (`labctl stop|start -i INV HOST...`).

This is how experiments break a lab on purpose (stop the etcd leader, a worker, a
control plane) and how the cluster smoke test proves that a lab survives it. A stopped
host keeps its disk (overlay or qcow2 overlay) and record; `start` boots it again and
waits until it is reachable over SSH, like `up` does.
"""

from __future__ import annotations

import contextlib
import time

from labctl import hostrecords, lifecycle
from labctl.errors import LabError
from labctl.lifecycle import (
    Progress,
    Providers,
    _close_connections,
    _parallel,
    _raise_failures,
    lab_lock,
    print_progress,
)
from labctl.providers import get_provider
from labctl.providers.readiness import StepTimeouts, Target, wait_ready
from labctl.state import LabState


def _records(state: LabState, lab_name: str, names: list[str]):
    records = hostrecords.load_all(state.hosts_dir)
    unknown = [n for n in names if n not in records]
    if unknown:
        known = ", ".join(sorted(records)) or "none"
        raise LabError(
            f"lab {lab_name} has no host {', '.join(map(repr, unknown))} (hosts: {known}); "
            "run `labctl up` first or check the name with `labctl status`")
    if not names:
        raise LabError("name at least one host to stop or start")
    return records


def _maybe_locked(state: LabState, already_locked: bool):
    return contextlib.nullcontext() if already_locked else lab_lock(state)


def stop_hosts(lab_name: str, names: list[str], *, progress: Progress | None = print_progress,
               provider_factory=get_provider, already_locked: bool = False) -> dict[str, float]:
    """Stop ``names`` in parallel; the seconds each took."""
    progress = progress or (lambda _line: None)
    state = LabState.for_lab(lab_name)
    providers = Providers(state, provider_factory)
    taken: dict[str, float] = {}
    try:
        with _maybe_locked(state, already_locked):  # `up` holds the lock while verifying
            records = _records(state, lab_name, names)

            def stop(name: str) -> None:
                t0 = time.monotonic()
                providers(records[name].provider).stop(records[name])
                taken[name] = time.monotonic() - t0
                progress(f"{name}: stopped in {taken[name]:.1f}s")

            _raise_failures("stopping hosts", _parallel(stop, names))
    finally:
        providers.close()
    return taken


def start_hosts(lab_name: str, names: list[str], *, progress: Progress | None = print_progress,
                timeouts: StepTimeouts | None = None, provider_factory=get_provider,
                already_locked: bool = False) -> dict[str, float]:
    """Start ``names`` and wait until each is ready; seconds from the call to ready."""
    progress = progress or (lambda _line: None)
    state = LabState.for_lab(lab_name)
    providers = Providers(state, provider_factory)
    t0 = time.monotonic()
    try:
        with _maybe_locked(state, already_locked):  # `up` holds the lock while verifying
            records = _records(state, lab_name, names)
            started = _parallel(lambda n: providers(records[n].provider).start(records[n]), names)
            _raise_failures("starting hosts", started)
            for name in names:
                hostrecords.save(state.hosts_dir, started[name])
            records = hostrecords.load_all(state.hosts_dir)
            targets = [Target(n, records[n].address,
                              providers(records[n].provider).console_log(records[n]))
                       for n in names]
            try:
                probes = lifecycle.readiness_probes(providers, state, records)
                return wait_ready(targets, probes, timeouts or StepTimeouts(), progress=progress,
                                  origin=t0, timeline={})
            finally:
                _close_connections(targets)
    finally:
        providers.close()
