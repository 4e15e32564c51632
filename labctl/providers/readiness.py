"""When is a freshly created host ready? A pure state machine plus a polling driver.

Rules of the machine (one ``HostReadiness`` per host):

- A host passes through these steps, in order: created -> running -> ssh banner ->
  logged in -> booted. "created" is where every host starts (the provider returned);
  the machine then waits for "running".
- Each step has its own timeout, counted from the moment the previous step passed.
- Events: ``Passed(step)`` moves to the next step (after "booted" the host is ready);
  ``Failed(step, reason)`` is one unsuccessful attempt (remembered as the last reason);
  ``Tick`` just lets time pass. Any event past the current step's deadline ends in
  ``TimedOut``, unless it is the ``Passed`` of that step.
- An event for another step than the current one is a programming error (ValueError).
- Once ready or timed out the machine accepts no more events.

The core keeps no clock: every event carries its time. The driver (``wait_ready``)
probes each host's current step with bounded attempts, feeds the results in, polls
again until the deadline, runs all hosts in parallel and prints progress lines like
``[12.3s] node-1: ssh banner``.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from labctl.errors import LabError

CREATED = "created"
RUNNING = "running"
SSH_BANNER = "ssh banner"
LOGGED_IN = "logged in"
BOOTED = "booted"
STEPS = (CREATED, RUNNING, SSH_BANNER, LOGGED_IN, BOOTED)
WAITED_STEPS = STEPS[1:]


@dataclass(frozen=True)
class StepTimeouts:
    """Seconds allowed for each step (from the end of the previous one)."""

    running: float = 60.0
    ssh_banner: float = 240.0
    logged_in: float = 60.0
    booted: float = 180.0

    def for_step(self, step: str) -> float:
        return getattr(self, step.replace(" ", "_"))

    def with_overrides(self, overrides: dict[str, float]) -> StepTimeouts:
        fields = {}
        for step, seconds in overrides.items():
            key = step.replace(" ", "_").replace("-", "_")
            if key not in ("running", "ssh_banner", "logged_in", "booted"):
                raise LabError(
                    f"unknown readiness step {step!r}: use one of running, ssh-banner, "
                    "logged-in, booted"
                )
            if seconds <= 0:
                raise LabError(f"readiness timeout for {step} must be positive, not {seconds}")
            fields[key] = float(seconds)
        return replace(self, **fields)


# -- events


@dataclass(frozen=True)
class Passed:
    step: str
    at: float
    detail: str = ""


@dataclass(frozen=True)
class Failed:
    step: str
    at: float
    reason: str


@dataclass(frozen=True)
class Tick:
    at: float


Event = Passed | Failed | Tick

# -- outcomes


@dataclass(frozen=True)
class Waiting:
    step: str
    deadline: float


@dataclass(frozen=True)
class Ready:
    at: float
    details: dict[str, str] = field(default_factory=dict)  # step -> detail (e.g. degraded units)


@dataclass(frozen=True)
class TimedOut:
    step: str
    waited: float
    last_reason: str


Status = Waiting | Ready | TimedOut


class HostReadiness:
    """The readiness of one host, driven by events (see the module rules)."""

    def __init__(self, host: str, timeouts: StepTimeouts, started_at: float):
        self.host = host
        self.timeouts = timeouts
        self.passed: dict[str, float] = {CREATED: started_at}
        self.details: dict[str, str] = {}
        self._step_index = 1
        self._step_started = started_at
        self._last_reason = "no attempt finished yet"
        self.status: Status = self._waiting()

    @property
    def step(self) -> str:
        return WAITED_STEPS[self._step_index - 1] if self._step_index <= len(WAITED_STEPS) else BOOTED

    @property
    def done(self) -> bool:
        return not isinstance(self.status, Waiting)

    def _waiting(self) -> Waiting:
        return Waiting(self.step, self._step_started + self.timeouts.for_step(self.step))

    def handle(self, event: Event) -> Status:
        if self.done:
            raise ValueError(f"{self.host}: readiness already finished ({self.status})")
        if not isinstance(event, Tick) and event.step != self.step:
            raise ValueError(f"{self.host}: event for step {event.step!r} while at {self.step!r}")
        current = self.status
        assert isinstance(current, Waiting)
        if isinstance(event, Passed):
            self.passed[event.step] = event.at
            if event.detail:
                self.details[event.step] = event.detail
            if event.step == BOOTED:
                self.status = Ready(event.at, dict(self.details))
            else:
                self._step_index += 1
                self._step_started = event.at
                self._last_reason = "no attempt finished yet"
                self.status = self._waiting()
            return self.status
        if isinstance(event, Failed):
            self._last_reason = event.reason
        if event.at >= current.deadline:
            self.status = TimedOut(self.step, event.at - self._step_started, self._last_reason)
        return self.status


# -- the driver


@dataclass
class Target:
    """A host to wait for, with what the probes and the error message need."""

    name: str
    address: str
    console_log: Path | None = None
    context: dict[str, Any] = field(default_factory=dict)  # probes keep state here


# A probe tries a step once within ``budget_s`` and returns a detail string, or raises
# (any exception) with the reason it is not there yet.
Probe = Callable[[Target, float], str]


class ReadinessError(LabError):
    def __init__(self, failures: dict[str, TimedOut], message: str):
        super().__init__(message)
        self.failures = failures


_ANSI = re.compile(r"\x1b(\[[0-9;?]*[A-Za-z]|[A-Za-z])")  # colours, cursor moves
_SPINNER = re.compile(r"^\[[ *]*\] (\(\d+ of \d+\) )?Job ")  # systemd's "a start job is running"


def console_lines(text: str) -> list[str]:
    """Console output as plain lines: no colour codes, no blank lines, and of systemd's
    once-a-second "Job ... running" spinner only the last line of each run."""
    lines: list[str] = []
    for raw in text.replace("\r", "\n").splitlines():
        line = _ANSI.sub("", raw).rstrip()
        if not line.strip():
            continue
        if lines and _SPINNER.match(line) and _SPINNER.match(lines[-1]):
            lines[-1] = line
        else:
            lines.append(line)
    return lines


def tail_lines(path: Path | None, count: int = 20) -> list[str]:
    if path is None:
        return []
    try:
        data = path.read_bytes()[-64 * 1024 :]
    except OSError:
        return []
    return console_lines(data.decode("utf-8", "replace"))[-count:]


def timeout_message(target: Target, outcome: TimedOut, console_lines: int = 20) -> str:
    lines = [
        f"host {target.name} ({target.address}): not ready: step '{outcome.step}' timed out "
        f"after {outcome.waited:.1f}s; last attempt: {outcome.last_reason}"
    ]
    tail = tail_lines(target.console_log, console_lines)
    if tail:
        lines.append(f"  last {len(tail)} lines of {target.console_log}:")
        lines.extend(f"    | {line}" for line in tail)
    elif target.console_log is not None:
        lines.append(f"  (console log {target.console_log} is empty or missing)")
    return "\n".join(lines)


POLL_INTERVAL_S = 0.1
MAX_POLL_INTERVAL_S = 0.25  # bounds how late a step is noticed (targets are seconds)
MAX_ATTEMPT_S = 30.0


def drive_host(
    target: Target,
    probes: dict[str, Probe],
    timeouts: StepTimeouts,
    *,
    clock: Callable[[], float] = time.monotonic,
    started_at: float | None = None,
    on_step: Callable[[Target, str, float, str], None] | None = None,
    cancel: threading.Event | None = None,
) -> Status:
    """Probe ``target`` step by step until it is ready or a step times out."""
    cancel = cancel or threading.Event()
    machine = HostReadiness(target.name, timeouts, clock() if started_at is None else started_at)
    interval = POLL_INTERVAL_S
    while not machine.done:
        if cancel.is_set():
            raise KeyboardInterrupt
        waiting = machine.status
        assert isinstance(waiting, Waiting)
        budget = max(0.05, min(MAX_ATTEMPT_S, waiting.deadline - clock()))
        step = waiting.step
        try:
            detail = probes[step](target, budget)
        except Exception as exc:  # the reason is reported if the step times out
            status = machine.handle(Failed(step, clock(), _reason(exc)))
            if isinstance(status, Waiting):
                cancel.wait(min(interval, max(0.0, status.deadline - clock())))
                interval = min(interval * 1.5, MAX_POLL_INTERVAL_S)
            continue
        now = clock()
        machine.handle(Passed(step, now, detail or ""))
        interval = POLL_INTERVAL_S
        if on_step is not None:
            on_step(target, step, now, detail or "")
    return machine.status


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def wait_ready(
    targets: Iterable[Target],
    probes: dict[str, Probe],
    timeouts: StepTimeouts,
    *,
    progress: Callable[[str], None] | None = print,
    clock: Callable[[], float] = time.monotonic,
    origin: float | None = None,
    timeline: dict[str, dict[str, float]] | None = None,
) -> dict[str, float]:
    """Wait for every target in parallel; return seconds-from-origin when each was ready.

    ``timeline``, when given, receives host -> step -> seconds-from-origin of each step.

    Raises ``ReadinessError`` naming every host that timed out, its step, and the tail
    of its console log. Ctrl-C stops all probing promptly.
    """
    targets = list(targets)
    origin = clock() if origin is None else origin
    cancel = threading.Event()
    lock = threading.Lock()

    def on_step(target: Target, step: str, now: float, detail: str) -> None:
        if timeline is not None:
            with lock:
                timeline.setdefault(target.name, {})[step] = round(now - origin, 3)
        if progress is not None:
            suffix = f" ({detail})" if detail else ""
            with lock:
                progress(f"[{now - origin:5.1f}s] {target.name}: {step}{suffix}")

    results: dict[str, Status] = {}
    if not targets:
        return {}
    with ThreadPoolExecutor(max_workers=min(32, len(targets))) as pool:
        futures = {
            pool.submit(
                drive_host, t, probes, timeouts, clock=clock, on_step=on_step, cancel=cancel
            ): t
            for t in targets
        }
        try:
            for future, target in futures.items():
                results[target.name] = future.result()
        except BaseException:
            cancel.set()
            raise
    failures = {name: s for name, s in results.items() if isinstance(s, TimedOut)}
    if failures:
        by_name = {t.name: t for t in targets}
        message = "\n".join(timeout_message(by_name[n], s) for n, s in sorted(failures.items()))
        raise ReadinessError(failures, message)
    return {name: s.at - origin for name, s in results.items() if isinstance(s, Ready)}


# -- probes over the network (used by the lifecycle)


def read_ssh_banner(address: str, port: int, budget_s: float) -> str:
    """Connect and read the server's identification line ("SSH-2.0-...")."""
    deadline = time.monotonic() + budget_s
    connect_timeout = min(budget_s, 3.0)
    try:
        s = socket.create_connection((address, port), timeout=connect_timeout)
    except TimeoutError as exc:
        raise TimeoutError(f"no answer to a TCP connect to port {port} within {connect_timeout:.0f}s") from exc
    with s:
        data = b""
        while b"\n" not in data:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"port {port} accepted the connection but sent no SSH banner in time")
            s.settimeout(remaining)
            try:
                chunk = s.recv(256)
            except TimeoutError as exc:
                raise TimeoutError(
                    f"port {port} accepted the connection but sent no SSH banner within {budget_s:.0f}s"
                ) from exc
            if not chunk:
                raise ConnectionError("closed before sending a banner")
            data += chunk
    line = data.split(b"\n", 1)[0].strip()
    if not line.startswith(b"SSH-"):
        raise ConnectionError(f"not an SSH server: {line[:40]!r}")
    return ""


def interpret_system_state(rc: int, stdout: str) -> tuple[bool, str]:
    """``systemctl is-system-running --wait``: running or degraded means booted."""
    state = stdout.strip().splitlines()[-1].strip() if stdout.strip() else ""
    if state in ("running", "degraded"):
        return True, state
    return False, state or f"no answer (rc {rc})"
