"""``deploy()``: apply a site's plays to an inventory's hosts.

Plays run in order; within a play, hosts run in parallel (``forks`` threads), each
through its own long-lived module runner (one SSH exec per host per run). A host
that fails or is unreachable leaves the rest of the run; the others go on.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from labctl.engine.executor import HostPlay, PlayOptions
from labctl.engine.loader import load_site
from labctl.engine.model import Play, Site
from labctl.engine.output import Failure, Reporter
from labctl.engine.templating import Deferred
from labctl.engine.transport import HostUnreachable, LocalProcess, RunnerSession, runner_command
from labctl.engine.variables import HostState, HostVars, inventory_vars_of, magic_vars
from labctl.errors import LabError
from labctl.images.containers import ensure_container_images
from labctl.pki_for_lab import ensure_lab_pki
from labctl.wheelhouse import ensure_wheelhouse


@dataclass
class DeployOptions:
    limit: str | None = None
    tags: tuple[str, ...] = ()
    skip_tags: tuple[str, ...] = ()
    check: bool = False
    diff: bool = False
    forks: int = 10
    as_json: bool = False
    roles_path: tuple[Path, ...] = ()
    out: TextIO | None = None
    verbose: bool = False


@dataclass
class RunResult:
    ok: bool
    stats: dict[str, dict[str, int]]
    failures: list[Failure] = field(default_factory=list)
    plays: list[dict[str, Any]] = field(default_factory=list)
    round_trips: int = 0

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 2 if any(s["unreachable"] for s in self.stats.values()) else 1

    @property
    def changed(self) -> int:
        return sum(s["changed"] for s in self.stats.values())


# process_for(host_name) -> a process speaking to the host (Connection.open_process(...))
ProcessFactory = Callable[[str], Any]


def pool_process_factory(pool: Any, inventory: Any) -> ProcessFactory:
    """Runner processes over the pool's SSH connections (local for ansible_connection=local)."""

    def open_for(host: str) -> Any:
        ivars = inventory_vars_of(inventory, host)
        if ivars.get("ansible_connection") == "local":
            return LocalProcess.runner()
        python = str(ivars.get("ansible_python_interpreter") or "python3")
        return pool.get(host).open_process(runner_command(python))

    return open_for


class Sessions:
    """One runner session per host for the whole run, opened on first use."""

    def __init__(self, open_process: ProcessFactory) -> None:
        self._open = open_process
        self._sessions: dict[str, RunnerSession] = {}
        self._lock = threading.Lock()

    def get(self, host: str) -> RunnerSession:
        with self._lock:
            session = self._sessions.get(host)
        if session is None:
            try:
                process = self._open(host)
            except HostUnreachable:
                raise
            except Exception as exc:  # any connect error means the host is unreachable
                raise HostUnreachable(f"{host}: {type(exc).__name__}: {exc}") from None
            session = RunnerSession.start(host, process)
            with self._lock:
                self._sessions[host] = session
        return session

    def caller(self, host: str) -> Callable[..., dict[str, Any]]:
        def call(module: str, args: dict[str, Any] | None = None, *, check: bool = False,
                 diff: bool = False) -> dict[str, Any]:
            return self.get(host).call(module, args, check=check, diff=diff)

        return call

    @property
    def round_trips(self) -> int:
        return sum(s.round_trips for s in self._sessions.values())

    def close(self) -> None:
        for s in self._sessions.values():
            s.close()
        self._sessions.clear()


def play_steps(play: Play) -> list[tuple[str, str]]:
    steps = [("TASK", "Gathering Facts")]
    steps += [("TASK", t.display_name) for t in play.tasks]
    steps += [("RUNNING HANDLER", h.display_name) for h in play.handlers]
    return steps


def select_hosts(inventory: Any, pattern: str, limit: str | None) -> list[str]:
    hosts = _match(inventory, pattern)
    if limit:
        allowed = set(_match(inventory, limit))
        hosts = [h for h in hosts if h in allowed]
    return hosts


def _match(inventory: Any, pattern: str) -> list[str]:
    return [getattr(h, "name", h) for h in inventory.hosts_matching(pattern)]


def deploy(inventory: Any, pool: Any, site_path: Path | str,
           options: DeployOptions | None = None, *,
           process_factory: ProcessFactory | None = None,
           site: Site | None = None) -> RunResult:
    """Apply ``site_path`` to ``inventory``'s hosts through ``pool``'s connections."""
    options = options or DeployOptions()
    site = site or load_site(site_path, options.roles_path)
    extra_vars: Mapping[str, Any] = dict(getattr(inventory, "extra_vars", {}) or {})
    reporter = Reporter(options.out or sys.stdout, as_json=options.as_json, diff=options.diff,
                        verbose=options.verbose)
    sessions = Sessions(process_factory or pool_process_factory(pool, inventory))
    states = {name: HostState(name, inventory_vars_of(inventory, name)) for name in inventory.hosts}
    hostvars = HostVars(states, extra_vars)
    dead: set[str] = set()
    gathered: set[str] = set()
    play_options = PlayOptions(options.check, options.diff, tuple(options.tags),
                               tuple(options.skip_tags))
    any_host = False
    # lowest-precedence run defaults; the wheelhouse is built only if a role uses it
    # (and the lab's PKI likewise: only if a role pushes certificates)
    base_vars = {
        "lab_wheelhouse_dir": Deferred(lambda: str(ensure_wheelhouse())),
        "lab_pki_dir": Deferred(lambda: str(ensure_lab_pki(inventory).dir)),
        # the pod images (lab/busybox, lab/python, ...): built once, minutes on a cold cache
        "lab_container_images_dir": Deferred(lambda: str(ensure_container_images(
            progress=lambda line: print(f"container images: {line}", file=sys.stderr,
                                        flush=True)))),
    }
    try:
        for play in site.plays:
            hosts = [h for h in select_hosts(inventory, play.hosts, options.limit) if h not in dead]
            if not hosts:
                continue
            any_host = True
            reporter.begin_play(play.name, hosts, play_steps(play))

            def run_host(host: str, play: Play = play, hosts: list[str] = hosts) -> None:
                call = sessions.caller(host)
                gather = None
                if play.gather_facts and host not in gathered:
                    def gather(call=call, host=host) -> dict[str, Any]:
                        facts = call("_facts").get("ansible_facts", {})
                        gathered.add(host)
                        return facts
                magic = magic_vars(inventory, host, hosts, hostvars, options.check, options.diff,
                                   str(site.path.parent))
                runner = HostPlay(play, host, states[host], call, magic, extra_vars, play_options,
                                  reporter.report, site.path.parent, gather,
                                  base_vars=base_vars)
                if gather is None:
                    reporter.report(host, 0, None)
                try:
                    if not runner.run():
                        dead.add(host)
                finally:
                    reporter.host_done(host)

            with ThreadPoolExecutor(max_workers=max(1, options.forks)) as executor:
                for future in [executor.submit(run_host, h) for h in hosts]:
                    future.result()
            reporter.end_play()
    finally:
        round_trips = sessions.round_trips
        sessions.close()
    if not any_host and options.limit:
        raise LabError(f"--limit {options.limit!r} matches no host of any play")
    reporter.recap()
    return RunResult(ok=not reporter.failures, stats=reporter.stats.per_host,
                     failures=reporter.failures, plays=reporter.plays, round_trips=round_trips)
