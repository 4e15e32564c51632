"""Progress of an image build: phases and debootstrap's own lines, with elapsed time.

A build takes minutes, so the user sees what it is doing. ``DebootstrapProgress`` is
pure: it turns debootstrap's ``I: Retrieving foo`` lines into occasional summaries
(each new step, then at most one line per ``every`` items or ``interval`` seconds).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

Sink = Callable[[str], None]


def stderr_sink(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Progress:
    def __init__(self, sink: Sink | None = None, clock: Callable[[], float] = time.monotonic):
        self._sink = sink or stderr_sink
        self._clock = clock
        self._start = clock()

    @property
    def elapsed(self) -> float:
        return self._clock() - self._start

    def __call__(self, message: str) -> None:
        self._sink(f"[{self.elapsed:6.1f}s] {message}")


class DebootstrapProgress:
    """Summarises debootstrap's ``I: <Step> <item>...`` lines.

    Steps interleave (Retrieving, Validating, Retrieving, ...), so each step keeps its
    own count: a step's first line is shown, then every ``every``-th, and any line
    when nothing was shown for ``interval`` seconds.
    """

    def __init__(self, every: int = 50, interval: float = 10.0):
        self.every = every
        self.interval = interval
        self.counts: dict[str, int] = {}
        self.step: str | None = None
        self._last_report = float("-inf")

    def feed(self, line: str, now: float) -> str | None:
        """The summary to show for this line, or None to stay quiet."""
        if not line.startswith("I: "):
            return line.strip() if line.startswith(("E: ", "W: ")) else None
        step, _, item = line[3:].strip().partition(" ")
        item = item.rstrip(".")
        count = self.counts[step] = self.counts.get(step, 0) + 1
        self.step = step
        if count == 1 or count % self.every == 0 or now - self._last_report >= self.interval:
            self._last_report = now
            suffix = f" {item}" if item else ""
            return f"debootstrap: {step.lower()} ({count}){suffix}"
        return None

    def idle(self, now: float) -> str | None:
        """A heartbeat when debootstrap has been silent for ``interval`` seconds
        (configuring the base system prints nothing for minutes on a busy machine)."""
        if self.step is None or now - self._last_report < self.interval:
            return None
        self._last_report = now
        return f"debootstrap: still {self.step.lower()} (after {self.counts[self.step]})"
