"""What every controller here shares: a work queue, workers running `sync(key)`, and an
event recorder that writes Events in the background (best effort, off the sync path)."""

from __future__ import annotations

import asyncio
import logging

from agents.kube.controller import process_next
from agents.kube.errors import ApiError
from agents.kube.workqueue import WorkQueue

from .objects import event

log = logging.getLogger(__name__)


class EventRecorder:
    def __init__(self, api, component: str, concurrency: int = 4):
        self.api, self.component = api, component
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task] = set()

    def record(self, obj: dict, reason: str, message: str, kind: str = "Normal") -> None:
        body = event(obj, reason, message, self.component, kind)

        async def send():
            async with self._slots:
                try:
                    await self.api.create("events", body, body["metadata"]["namespace"])
                except ApiError as exc:
                    log.debug("event %s not recorded: %s", reason, exc)
        task = asyncio.create_task(send())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def flush(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def cancel(self) -> None:
        for task in list(self._tasks):
            task.cancel()


class QueueController:
    """Subclasses implement `sync(key)` and enqueue keys from informer handlers."""

    name = "controller"

    def __init__(self, api, events: EventRecorder | None = None):
        self.api = api
        self.queue = WorkQueue(self.name)
        self.events = events or EventRecorder(api, self.name)

    async def sync(self, key: str) -> None:
        raise NotImplementedError

    async def run(self, workers: int = 2) -> None:
        async def worker():
            while await process_next(self.queue, self.sync, name=self.name):
                pass
        tasks = [asyncio.create_task(worker()) for _ in range(workers)]
        try:
            await asyncio.gather(*tasks)
        finally:
            self.queue.shutdown()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.events.cancel()
