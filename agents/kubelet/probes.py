"""Probe state machines: liveness, readiness, startup, driven by a clock.

Rules (the kubelet's prober):
1. No probe runs before initialDelaySeconds after the container started; then one every
   periodSeconds.
2. A result flips to failure after failureThreshold consecutive failures and to success
   after successThreshold consecutive successes (liveness and startup: threshold 1).
3. Before any result: liveness counts as success, readiness as failure, startup as not
   yet started; while a startup probe has not succeeded, liveness and readiness do not run.
4. A failed liveness or startup probe kills the container (then the restart policy
   decides); a failed readiness probe only marks it not ready.
`ProbeSpec.from_k8s` reads a container's probe; `ProbeTracker` is the per-container,
per-kind state. Running a probe (exec/http/tcp) is in prober.py.
"""

from __future__ import annotations

from dataclasses import dataclass

LIVENESS, READINESS, STARTUP = "liveness", "readiness", "startup"


@dataclass(frozen=True)
class ProbeSpec:
    kind: str                    # liveness | readiness | startup
    handler: str                 # exec | httpGet | tcpSocket
    params: dict                 # the handler's own fields
    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3

    @classmethod
    def from_k8s(cls, kind: str, probe: dict | None) -> ProbeSpec | None:
        if not probe:
            return None
        for handler in ("exec", "httpGet", "tcpSocket"):
            if probe.get(handler) is not None:
                break
        else:
            return None  # grpc probes are not supported: treated as absent
        success = int(probe.get("successThreshold") or 1)
        return cls(kind, handler, dict(probe[handler]),
                   float(probe.get("initialDelaySeconds") or 0),
                   float(probe.get("periodSeconds") or 10),
                   float(probe.get("timeoutSeconds") or 1),
                   1 if kind != READINESS else success,
                   int(probe.get("failureThreshold") or 3))


class ProbeTracker:
    """One probe of one container (started at `started_at`, wall seconds)."""

    def __init__(self, spec: ProbeSpec, started_at: float):
        self.spec, self.started_at = spec, started_at
        self.result: bool | None = None     # None: no verdict yet
        self._successes = self._failures = 0
        self.last_run: float | None = None
        self.last_message = ""

    @property
    def effective(self) -> bool:
        """The result as the rules read it before any verdict (rule 3)."""
        if self.result is None:
            return self.spec.kind == LIVENESS
        return self.result

    def due_at(self) -> float:
        first = self.started_at + self.spec.initial_delay
        if self.last_run is None:
            return first
        return max(first, self.last_run + self.spec.period)

    def is_due(self, now: float) -> bool:
        return now >= self.due_at()

    def record(self, ok: bool, now: float, message: str = "") -> bool:
        """Feed one probe outcome; True when the verdict changed."""
        self.last_run, self.last_message = now, message
        if ok:
            self._successes, self._failures = self._successes + 1, 0
            flip = self._successes >= self.spec.success_threshold
            new = True if flip else self.result
        else:
            self._failures, self._successes = self._failures + 1, 0
            flip = self._failures >= self.spec.failure_threshold
            new = False if flip else self.result
        changed = new != self.result
        self.result = new
        return changed
