"""A tiny informer over the watch cache: list once, then follow changes, keeping a map
of name → object in memory. The registry uses one for namespaces so a create does not
need an etcd read to learn its namespace exists."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from .watchcache import WatchCache

log = logging.getLogger("apiserver.informer")


class Informer:
    def __init__(self, storage, cache: WatchCache, prefix: str):
        self.storage = storage
        self.cache = cache
        self.prefix = prefix
        self.objects: dict[str, dict] = {}  # etcd key → decoded object
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                items, revision, _ = await self.storage.list(self.prefix)
                self.objects = {i.key: json.loads(i.value) for i in items}
                sub = await self.cache.subscribe(revision, self.prefix)
                try:
                    while True:
                        batch = await sub.next()
                        if isinstance(batch, int):
                            continue
                        for ev in batch:
                            if ev.type == "DELETE":
                                self.objects.pop(ev.key, None)
                            else:
                                self.objects[ev.key] = ev.obj
                finally:
                    sub.close()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # relist on any trouble (e.g. compaction)
                self.objects = {}
                log.warning("informer %s: %s; relisting", self.prefix, exc)
                await asyncio.sleep(0.5)

    def get(self, key: str) -> dict | None:
        return self.objects.get(key)
