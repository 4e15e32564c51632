"""The controller loop: informers feed a work queue of keys; N workers call a
level-triggered `sync(key)`.

`sync(key)` reads the desired and actual state from the informers' caches (never from the
event that enqueued the key) and makes one step towards convergence. If it raises, the key
is re-queued with per-key exponential back-off; after `max_retries` failures it is dropped
(the next change of the object enqueues it again). On success the key's back-off is reset.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from .errors import Conflict
from .informer import Informer
from .resources import meta_namespace_key
from .workqueue import WorkQueue

log = logging.getLogger(__name__)

SyncFunc = Callable[[str], Awaitable[None]]


def enqueue_handlers(queue: WorkQueue, key_func: Callable[[dict], str] = meta_namespace_key):
    """(on_add, on_update, on_delete) callbacks that only enqueue the object's key."""
    def on_add(obj):
        queue.add(key_func(obj))

    def on_update(old, new):
        queue.add(key_func(new))

    def on_delete(obj):
        queue.add(key_func(obj))
    return {"on_add": on_add, "on_update": on_update, "on_delete": on_delete}


async def process_next(queue: WorkQueue, sync: SyncFunc, max_retries: int = 15,
                       name: str = "") -> bool:
    """Take one key, sync it, handle the outcome. False once the queue is shut down."""
    key = await queue.get()
    if key is None:
        return False
    try:
        await sync(key)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - one bad key must not stop the controller
        if queue.num_requeues(key) < max_retries:
            # A conflict is optimistic concurrency working (our cache was a step behind):
            # routine, so not a warning.
            level = logging.INFO if isinstance(exc, Conflict) else logging.WARNING
            log.log(level, "%s: sync %s failed (%s); retrying with back-off", name, key, exc)
            queue.add_rate_limited(key)
        else:
            log.error("%s: dropping %s after %d retries: %s", name, key, max_retries, exc)
            queue.forget(key)
    else:
        queue.forget(key)
    finally:
        queue.done(key)
    return True


class Controller:
    """Runs informers, waits for their caches, then `workers` workers over one queue."""

    def __init__(self, name: str, sync: SyncFunc, informers: list[Informer],
                 workers: int = 2, queue: WorkQueue | None = None, max_retries: int = 15):
        self.name, self.sync, self.informers = name, sync, informers
        self.workers, self.max_retries = workers, max_retries
        self.queue = queue or WorkQueue(name)

    def watch(self, informer: Informer,
              key_func: Callable[[dict], str] = meta_namespace_key) -> None:
        """Enqueue the key of every object of this informer that changes."""
        informer.add_handler(**enqueue_handlers(self.queue, key_func))

    async def _worker(self) -> None:
        while await process_next(self.queue, self.sync, self.max_retries, self.name):
            pass

    async def run(self) -> None:
        """Run until cancelled; on cancellation the queue is shut down and every task this
        started is cancelled."""
        tasks = [asyncio.create_task(inf.run(), name=f"{self.name}-informer-{inf.resource}")
                 for inf in self.informers]
        try:
            await asyncio.gather(*(inf.wait_for_sync() for inf in self.informers))
            log.info("%s: caches synced, starting %d workers", self.name, self.workers)
            tasks += [asyncio.create_task(self._worker(), name=f"{self.name}-worker-{i}")
                      for i in range(self.workers)]
            await asyncio.gather(*tasks)
        finally:
            self.queue.shutdown()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
