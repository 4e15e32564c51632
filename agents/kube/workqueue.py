"""A rate-limited work queue of keys, client-go style.

Rules (they are what makes level-triggered controllers correct):
1. A key added many times while it waits in the queue is handed out once (de-duplication).
2. A key is never handed to two workers at once: a key added while a worker holds it is
   remembered ("dirty") and queued again only when that worker calls `done(key)`.
3. `add_rate_limited(key)` re-adds after a per-key exponential back-off
   (base * 2**failures, capped); `forget(key)` resets the key's failure count.
4. `add_after(key, delay)` adds later; of several pending delays for one key the
   earliest wins.
5. After `shutdown()` adds are ignored; `get` drains what is queued, then reports None.

`QueueCore` is the pure logic with an injectable clock (no sleeping, no asyncio) so the
rules are unit-tested directly; `WorkQueue` is the asyncio front end workers await on.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections import deque
from collections.abc import Callable, Hashable

Clock = Callable[[], float]


class ExponentialBackoff:
    """Per-key failure counter: delay = base * 2**failures, capped at `cap` seconds."""

    def __init__(self, base: float = 0.005, cap: float = 1000.0):
        self.base, self.cap = base, cap
        self._failures: dict[Hashable, int] = {}

    def when(self, key: Hashable) -> float:
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        # Past 2**60 the float would overflow long before anything useful happens.
        return min(self.base * (2 ** min(failures, 60)), self.cap)

    def forget(self, key: Hashable) -> None:
        self._failures.pop(key, None)

    def failures(self, key: Hashable) -> int:
        return self._failures.get(key, 0)


class QueueCore:
    """The work queue's state machine. Not thread-safe; not asyncio-aware."""

    def __init__(self, clock: Clock = time.monotonic,
                 backoff: ExponentialBackoff | None = None):
        self.clock = clock
        self.backoff = backoff or ExponentialBackoff()
        self._queue: deque[Hashable] = deque()
        self._dirty: set[Hashable] = set()       # keys that need processing
        self._processing: set[Hashable] = set()  # keys a worker holds right now
        self._waiting: list[tuple[float, int, Hashable]] = []  # heap of delayed adds
        self._waiting_at: dict[Hashable, float] = {}  # earliest pending time per key
        self._seq = itertools.count()
        self.shutting_down = False

    # -- adding ------------------------------------------------------------------------

    def add(self, key: Hashable) -> None:
        if self.shutting_down or key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._processing:
            self._queue.append(key)

    def add_after(self, key: Hashable, delay: float) -> None:
        if self.shutting_down:
            return
        if delay <= 0:
            self.add(key)
            return
        ready_at = self.clock() + delay
        current = self._waiting_at.get(key)
        if current is not None and current <= ready_at:
            return
        self._waiting_at[key] = ready_at
        heapq.heappush(self._waiting, (ready_at, next(self._seq), key))

    def add_rate_limited(self, key: Hashable) -> None:
        self.add_after(key, self.backoff.when(key))

    def forget(self, key: Hashable) -> None:
        self.backoff.forget(key)

    def num_requeues(self, key: Hashable) -> int:
        return self.backoff.failures(key)

    # -- taking ------------------------------------------------------------------------

    def promote_due(self) -> None:
        """Move delayed keys whose time has come into the queue."""
        now = self.clock()
        while self._waiting and self._waiting[0][0] <= now:
            ready_at, _, key = heapq.heappop(self._waiting)
            if self._waiting_at.get(key) != ready_at:
                continue  # superseded by an earlier add_after for the same key
            del self._waiting_at[key]
            self.add(key)

    def next_due_in(self) -> float | None:
        """Seconds until the earliest delayed key is due (None: nothing delayed)."""
        if not self._waiting:
            return None
        return max(0.0, self._waiting[0][0] - self.clock())

    def get(self) -> Hashable | None:
        """The next key to process (now held by the caller), or None if none is ready."""
        self.promote_due()
        if not self._queue:
            return None
        key = self._queue.popleft()
        self._processing.add(key)
        self._dirty.discard(key)
        return key

    def done(self, key: Hashable) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.append(key)

    def shutdown(self) -> None:
        self.shutting_down = True
        self._waiting.clear()
        self._waiting_at.clear()

    @property
    def drained(self) -> bool:
        """Shut down with nothing left to hand out."""
        return self.shutting_down and not self._queue

    def __len__(self) -> int:
        return len(self._queue)

    def is_processing(self, key: Hashable) -> bool:
        return key in self._processing


class WorkQueue:
    """asyncio front end: `await get()` blocks until a key is ready or the queue is drained
    after shutdown (then it returns None and the worker should exit)."""

    def __init__(self, name: str = "", clock: Clock = time.monotonic,
                 backoff: ExponentialBackoff | None = None):
        self.name = name
        self.core = QueueCore(clock, backoff)
        self._changed = asyncio.Event()

    def _notify(self) -> None:
        self._changed.set()

    def add(self, key: Hashable) -> None:
        self.core.add(key)
        self._notify()

    def add_after(self, key: Hashable, delay: float) -> None:
        self.core.add_after(key, delay)
        self._notify()

    def add_rate_limited(self, key: Hashable) -> None:
        self.core.add_rate_limited(key)
        self._notify()

    def forget(self, key: Hashable) -> None:
        self.core.forget(key)

    def num_requeues(self, key: Hashable) -> int:
        return self.core.num_requeues(key)

    def done(self, key: Hashable) -> None:
        self.core.done(key)
        self._notify()

    def shutdown(self) -> None:
        self.core.shutdown()
        self._notify()

    def __len__(self) -> int:
        return len(self.core)

    async def get(self) -> Hashable | None:
        while True:
            key = self.core.get()
            if key is not None:
                if len(self.core):
                    self._notify()  # let another waiting worker take the next key
                return key
            if self.core.drained:
                self._notify()  # wake the other workers so they exit too
                return None
            self._changed.clear()
            timeout = self.core.next_due_in()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout)
