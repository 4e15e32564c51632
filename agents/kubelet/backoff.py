"""Crash-loop and image-pull back-off, as pure functions of counts and times.

Rules (the kubelet's):
1. A container that exits is restarted at once the first time; after that each restart
   waits initial * 2**(restarts - 1), capped at `cap` (10 s, 20 s, 40 s … 5 min).
2. A container that ran at least 2 * cap before exiting starts the count over.
3. While waiting, the container's state is `waiting` with reason CrashLoopBackOff.
4. An image missing from the store: the attempt says ErrImagePull; the next try waits
   the same way. ErrImagePull is shown for the first half of that wait, ImagePullBackOff
   for the second.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    initial: float = 10.0
    cap: float = 300.0

    def delay(self, failures: int) -> float:
        """Wait before retry number `failures` (0 = the first retry is immediate)."""
        if failures <= 0:
            return 0.0
        return min(self.cap, self.initial * 2 ** min(failures - 1, 40))

    def restart_at(self, restarts: int, started_at: float | None,
                   finished_at: float | None) -> float:
        """When a container that exited may start again (monotonic-free wall seconds).

        restarts: how many times it was restarted already (its restartCount)."""
        finished = finished_at or 0.0
        if started_at is not None and finished_at is not None and \
                finished_at - started_at >= 2 * self.cap:
            return finished  # it ran long enough: a fresh start, no waiting
        return finished + self.delay(restarts)


@dataclass
class PullState:
    """Failed pulls of one container's image: count and when the last one failed."""
    failures: int = 0
    last_failure: float = 0.0

    def retry_at(self, backoff: Backoff) -> float:
        return self.last_failure + backoff.delay(self.failures)
