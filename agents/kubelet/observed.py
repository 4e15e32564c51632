"""What the runtime says about one pod, reduced to the plain values the pure sync
decision and status computation read (`Observed`), built from the runtime's
sandbox/container statuses whatever their exact classes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from .cri import INIT_CONTAINER, labels_of


def to_epoch(value) -> float | None:
    """Runtime timestamps (epoch seconds, datetime or RFC 3339 text) → epoch seconds."""
    if value is None or value == "" or value == 0:
        return None
    if isinstance(value, int | float):
        return float(value) if value < 1e12 else value / 1e9  # seconds, or nanoseconds
    if isinstance(value, datetime):
        return value.timestamp()
    text = str(value).replace("Z", "+00:00")
    if "." in text:  # trim nanoseconds to what fromisoformat takes
        head, _, tail = text.partition(".")
        digits = "".join(ch for ch in tail if ch.isdigit())
        rest = tail[len(digits):]
        text = f"{head}.{digits[:6]}{rest}"
    return datetime.fromisoformat(text).timestamp()


@dataclass(frozen=True)
class CState:
    id: str
    name: str
    attempt: int
    state: str                 # created | running | exited
    exit_code: int | None = None
    reason: str = ""
    message: str = ""
    created_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    image: str = ""
    image_id: str = ""
    init: bool = False
    log_path: str = ""
    sandbox_id: str = ""

    @classmethod
    def from_runtime(cls, status) -> CState:
        labels = labels_of(status)
        return cls(id=status.id, name=status.name, attempt=int(status.attempt or 0),
                   state=status.state, exit_code=getattr(status, "exit_code", None),
                   reason=getattr(status, "reason", "") or "",
                   message=getattr(status, "message", "") or "",
                   created_at=to_epoch(getattr(status, "created_at", None)),
                   started_at=to_epoch(getattr(status, "started_at", None)),
                   finished_at=to_epoch(getattr(status, "finished_at", None)),
                   image=getattr(status, "image", "") or "",
                   image_id=getattr(status, "image_id", "") or "",
                   init=labels.get(INIT_CONTAINER) == "true",
                   log_path=getattr(status, "log_path", "") or "",
                   sandbox_id=getattr(status, "sandbox_id", "") or "")


@dataclass(frozen=True)
class SandboxView:
    id: str
    ready: bool
    ip: str = ""
    created_at: float | None = None


@dataclass
class Observed:
    sandbox: SandboxView | None = None             # the newest sandbox of the pod
    stale_sandboxes: list[str] = field(default_factory=list)  # older ones (stopped)
    containers: dict[str, list[CState]] = field(default_factory=dict)  # name → by attempt

    def latest(self, name: str) -> CState | None:
        attempts = self.containers.get(name)
        return attempts[-1] if attempts else None

    def previous(self, name: str) -> CState | None:
        attempts = self.containers.get(name) or []
        return attempts[-2] if len(attempts) > 1 else None

    def all(self) -> list[CState]:
        return [c for attempts in self.containers.values() for c in attempts]

    def kept(self) -> set[str]:
        """Ids of the attempts worth keeping: the last two of each container (restart
        counts, lastState and `logs --previous` read them)."""
        return {c.id for attempts in self.containers.values() for c in attempts[-2:]}


def observe(sandboxes: list, containers: list) -> Observed:
    """sandboxes/containers: the runtime statuses belonging to ONE pod (any order)."""
    views = sorted((SandboxView(s.id, s.state == "ready", getattr(s, "ip", "") or "",
                                to_epoch(getattr(s, "created_at", None)))
                    for s in sandboxes), key=lambda v: (v.created_at or 0, v.id))
    obs = Observed()
    if views:
        obs.sandbox = views[-1]
        obs.stale_sandboxes = [v.id for v in views[:-1]]
    by_name: dict[str, list[CState]] = {}
    for status in containers:
        # Containers of a replaced sandbox still count for restarts and last state.
        c = CState.from_runtime(status)
        by_name.setdefault(c.name, []).append(c)
    for name, items in by_name.items():
        items.sort(key=lambda c: (c.attempt, c.created_at or 0))
        obs.containers[name] = items
    return obs
