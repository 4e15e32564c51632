"""The watch cache: ONE etcd watch per resource prefix, fanned out to every client watch.

Each cache also remembers the latest value it saw of every key that changed since it
started (`latest`): writes use it instead of an etcd read, their compare-and-swap
catches a stale one.

Each cache keeps a window of recent changes (decoded once, shared read-only by all
subscribers), so a client watching from resourceVersion N inside the window replays
from memory. A client asking for an N older than the window gets its own etcd watch
(etcd answers 410-worthy `Compacted` if N is gone). Bookmarks come from etcd progress
notifications, which the cache requests periodically while anyone wants them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging

from agents.etcdapi import rpc_pb2

from .storage import Compacted, EtcdStorage, Item, StorageError, event_from_proto, prefix_end
from .stored import splice_rv

log = logging.getLogger("apiserver.watchcache")


class CachedEvent:
    """One change, shared read-only by every subscriber. The objects are decoded on first
    use, so changes nobody watches cost no JSON decoding; an unfiltered watcher gets
    `raw_line()`, spliced from the stored bytes, and needs no decoding at all."""

    __slots__ = ("type", "key", "revision", "_obj", "_prev", "_raw", "_decoded", "_lines",
                 "_raw_line")

    def __init__(self, type_: str, key: str, obj: dict | None, prev: dict | None,
                 revision: int, raw: tuple[bytes, bytes | None] | None = None):
        self.type = type_  # "PUT" or "DELETE"
        self.key = key
        self.revision = revision
        self._obj, self._prev, self._raw = obj, prev, raw
        self._decoded = raw is None
        self._lines: dict | None = None
        self._raw_line: bytes | None = None

    def line(self, event_type: str, obj: dict) -> bytes:
        """The JSON watch line for (event_type, obj), encoded once for all watchers."""
        key = (event_type, obj is self._prev)
        if self._lines is None:
            self._lines = {}
        text = self._lines.get(key)
        if text is None:
            text = self._lines[key] = (json.dumps({"type": event_type, "object": obj},
                                                  separators=(",", ":")) + "\n").encode()
        return text

    def raw_line(self) -> bytes | None:
        """The watch line an unfiltered watcher gets (ADDED / MODIFIED / DELETED), built
        once from the stored bytes; None if there is nothing to send (a DELETE without
        the previous value)."""
        if self._raw_line is None:
            if self._raw is None:  # built from objects (tests): encode them
                ev = ("MODIFIED" if self._prev is not None else "ADDED", self._obj) \
                    if self.type == "PUT" else ("DELETED", self._prev)
                if ev[1] is None:
                    return None
                self._raw_line = self.line(*ev)
                return self._raw_line
            value, prev_value = self._raw
            if self.type == "PUT":
                kind, raw = (b"MODIFIED" if prev_value is not None else b"ADDED"), value
            elif prev_value is not None:
                kind, raw = b"DELETED", prev_value
            else:
                return None
            self._raw_line = b'{"type":"%s","object":%s}\n' % (kind,
                                                                splice_rv(raw, self.revision))
        return self._raw_line

    def _decode(self) -> None:
        value, prev_value = self._raw
        self._decoded = True
        self._obj = decode_object(value, self.revision) if self.type == "PUT" else None
        self._prev = decode_object(prev_value, self.revision) if prev_value else None

    @property
    def obj(self) -> dict | None:
        """The object after the change (None for DELETE)."""
        if not self._decoded:
            self._decode()
        return self._obj

    @property
    def prev(self) -> dict | None:
        """The object before the change, if there was one."""
        if not self._decoded:
            self._decode()
        return self._prev

    def __repr__(self) -> str:
        return f"CachedEvent({self.type} {self.key} @{self.revision})"


def decode_object(value: bytes, revision: int) -> dict:
    obj = json.loads(value)
    obj.setdefault("metadata", {})["resourceVersion"] = str(revision)
    return obj


def to_cached(e) -> CachedEvent:
    return CachedEvent(e.type, e.key, None, None, e.revision, (e.value, e.prev_value))


MAX_BACKLOG = 10000


class SlowWatcher(Exception):
    pass


class Subscription:
    """What a client watch reads: lists of CachedEvent, ints (progress: every change up
    to that revision was delivered), or an exception that ends the watch."""

    def __init__(self, from_revision: int, prefix: str, wants_progress: bool):
        self.from_revision = from_revision
        self.prefix = prefix
        self.wants_progress = wants_progress
        self.queue: asyncio.Queue = asyncio.Queue()
        self._task: asyncio.Task | None = None
        self._cache: WatchCache | None = None

    def offer(self, events: list[CachedEvent]) -> None:
        mine = [e for e in events if e.revision > self.from_revision
                and e.key.startswith(self.prefix)]
        if not mine:
            return
        if self.queue.qsize() >= MAX_BACKLOG:
            # A client this far behind would hold memory without bound: end its watch
            # (it relists and watches again, like Kubernetes does with slow watchers).
            self.close()
            self.queue.put_nowait(SlowWatcher(f"watcher fell {MAX_BACKLOG} batches behind"))
            return
        self.queue.put_nowait(mine)

    async def next(self):
        item = await self.queue.get()
        if isinstance(item, Exception):
            raise item
        return item

    def close(self) -> None:
        if self._cache is not None:
            self._cache.subscribers.discard(self)
        if self._task is not None:
            self._task.cancel()


class WatchCache:
    def __init__(self, storage: EtcdStorage, prefix: str, capacity: int = 4096,
                 progress_interval: float = 1.0):
        self.storage = storage
        self.prefix = prefix
        self.capacity = capacity
        self.progress_interval = progress_interval
        self.history: collections.deque[CachedEvent] = collections.deque()
        self._latest: dict[str, Item] = {}  # key → the newest value seen (no deletes)
        self.subscribers: set[Subscription] = set()
        self.start_revision = 0  # every change after this revision is in history
        self.last_revision = 0  # every change up to this revision has been seen
        self.ready = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._call = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"watchcache {self.prefix}")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            try:
                if not self.ready.is_set():
                    rev = await self.storage.revision()
                    self.start_revision = self.last_revision = rev
                await self._stream()
            except asyncio.CancelledError:
                raise
            except Compacted as exc:
                # Our window is gone: every subscriber must relist.
                log.warning("watch cache %s: %s; resetting", self.prefix, exc)
                self._reset(exc)
            except (StorageError, Exception) as exc:  # reconnect, keep the window
                log.warning("watch cache %s: %s; reconnecting", self.prefix, exc)
                # any member serves the same watch: try the next one (harmless when
                # the broken stream's member is fine)
                fail_over = getattr(self.storage, "fail_over", None)
                if fail_over is not None:
                    fail_over()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            backoff = 0.1

    def _reset(self, exc: Exception) -> None:
        for sub in list(self.subscribers):
            sub.queue.put_nowait(Compacted(str(exc)))
        self.subscribers.clear()
        self.history.clear()
        self._latest.clear()  # changes were missed: forget them all
        self.ready.clear()

    async def _stream(self) -> None:
        p = self.prefix.encode()
        call = self.storage.watch_call()
        self._call = call
        pinger = asyncio.create_task(self._ask_progress(call))
        try:
            await call.write(rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(
                key=p, range_end=prefix_end(p), start_revision=self.last_revision + 1,
                prev_kv=True)))
            async for resp in call:
                if resp.compact_revision:
                    raise Compacted(f"revision {self.last_revision + 1} compacted")
                if resp.canceled:
                    raise StorageError(f"etcd canceled the watch: {resp.cancel_reason}")
                if resp.created:
                    self.ready.set()
                    continue
                if resp.events:
                    self._publish([to_cached(event_from_proto(e)) for e in resp.events])
                else:
                    self.last_revision = max(self.last_revision, resp.header.revision)
                    for sub in self.subscribers:
                        if sub.wants_progress:
                            sub.queue.put_nowait(self.last_revision)
        finally:
            pinger.cancel()
            call.cancel()
            self._call = None

    async def _ask_progress(self, call) -> None:
        while True:
            await asyncio.sleep(self.progress_interval)
            if any(s.wants_progress for s in self.subscribers):
                with contextlib.suppress(Exception):
                    await call.write(rpc_pb2.WatchRequest(
                        progress_request=rpc_pb2.WatchProgressRequest()))

    def latest(self, key: str) -> Item | None:
        """The newest value of key this cache has seen (None: not seen, or deleted). A
        hint for writes: it can lag behind etcd by the watch's delay."""
        return self._latest.get(key)

    def _publish(self, events: list[CachedEvent]) -> None:
        for e in events:
            self.history.append(e)
            self.last_revision = max(self.last_revision, e.revision)
            if e.type == "PUT" and e._raw is not None:
                self._latest[e.key] = Item(e.key, e._raw[0], e.revision, 0)
            else:
                self._latest.pop(e.key, None)
        while len(self.history) > self.capacity:
            self.start_revision = self.history.popleft().revision
        for sub in list(self.subscribers):
            sub.offer(events)

    async def subscribe(self, from_revision: int, prefix: str,
                        wants_progress: bool = False) -> Subscription:
        """Changes under prefix (within this cache's prefix) after from_revision."""
        sub = Subscription(from_revision, prefix, wants_progress)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.ready.wait(), 5.0)
        if self.ready.is_set() and from_revision >= self.start_revision:
            sub.offer(list(self.history))
            sub._cache = self
            self.subscribers.add(sub)
        else:
            sub._task = asyncio.create_task(self._direct(sub))
        return sub

    async def _direct(self, sub: Subscription) -> None:
        """A private etcd watch for a subscriber older than the window."""
        try:
            async for batch in self.storage.watch(sub.prefix, sub.from_revision + 1):
                if isinstance(batch, int):
                    continue
                sub.offer([to_cached(e) for e in batch])
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # Compacted → the handler answers 410
            sub.queue.put_nowait(exc)
