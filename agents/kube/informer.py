"""Informers: keep a read-only local cache of one resource in step with the API server.

The loop (client-go's Reflector): LIST (paged), replace the cache with the result, then
WATCH from the list's resourceVersion and apply each event; BOOKMARK events only advance
the resourceVersion. When a watch ends normally (server timeout) it is reopened from the
last resourceVersion seen; when the server says 410 Gone it lists again. Any other error
backs off and lists again.

Handlers get (add / update / delete) callbacks and must only enqueue keys: they run
inside the informer's loop and see the cache as it is right after the change. Callers
must never modify objects they get from the cache.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .errors import Gone
from .resources import meta_namespace_key

log = logging.getLogger(__name__)

IndexFunc = Callable[[dict], Iterable[str]]


def pods_by_node(pod: dict) -> list[str]:
    """Index function: the node a pod is bound to (unbound pods are not indexed)."""
    node = (pod.get("spec") or {}).get("nodeName")
    return [node] if node else []


def by_namespace(obj: dict) -> list[str]:
    ns = (obj.get("metadata") or {}).get("namespace")
    return [ns] if ns else []


def by_owner_uid(obj: dict) -> list[str]:
    return [ref["uid"] for ref in (obj.get("metadata") or {}).get("ownerReferences") or []
            if ref.get("uid")]


class Store:
    """Objects keyed `namespace/name`, plus named indexes (value → keys)."""

    def __init__(self, indexers: dict[str, IndexFunc] | None = None,
                 key_func: Callable[[dict], str] = meta_namespace_key):
        self.key_func = key_func
        self.indexers = dict(indexers or {})
        self._items: dict[str, dict] = {}
        self._indices: dict[str, dict[str, set[str]]] = {n: {} for n in self.indexers}

    def _unindex(self, key: str, obj: dict) -> None:
        for name, func in self.indexers.items():
            index = self._indices[name]
            for value in func(obj):
                keys = index.get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del index[value]

    def _index(self, key: str, obj: dict) -> None:
        for name, func in self.indexers.items():
            for value in func(obj):
                self._indices[name].setdefault(value, set()).add(key)

    def upsert(self, obj: dict) -> dict | None:
        """Add or replace; returns the previous object (None if new)."""
        key = self.key_func(obj)
        old = self._items.get(key)
        if old is not None:
            self._unindex(key, old)
        self._items[key] = obj
        self._index(key, obj)
        return old

    def delete(self, obj_or_key: dict | str) -> dict | None:
        key = obj_or_key if isinstance(obj_or_key, str) else self.key_func(obj_or_key)
        old = self._items.pop(key, None)
        if old is not None:
            self._unindex(key, old)
        return old

    def get(self, key: str) -> dict | None:
        return self._items.get(key)

    def get_by_name(self, namespace: str | None, name: str) -> dict | None:
        return self._items.get(f"{namespace}/{name}" if namespace else name)

    def list_keys(self) -> list[str]:
        return list(self._items)

    def list(self) -> list[dict]:
        return list(self._items.values())

    def by_index(self, index: str, value: str) -> list[dict]:
        if index not in self._indices:
            raise KeyError(f"no index named {index!r} (have: {', '.join(self._indices)})")
        return [self._items[k] for k in sorted(self._indices[index].get(value, ()))]

    def index_keys(self, index: str, value: str) -> list[str]:
        return sorted(self._indices[index].get(value, ()))

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: str) -> bool:
        return key in self._items


@dataclass
class Handler:
    on_add: Callable[[dict], None] | None = None
    on_update: Callable[[dict, dict], None] | None = None
    on_delete: Callable[[dict], None] | None = None


def _rv(obj: dict) -> str:
    return (obj.get("metadata") or {}).get("resourceVersion", "")


class Informer:
    """Keeps `store` in step with one resource; `run()` until cancelled.

    `api` is anything with the KubeClient `list` / `watch` signatures (the real client or
    `agents.kube.testing.FakeApi`)."""

    def __init__(self, api, resource: str, namespace: str | None = None, *,
                 label_selector: str | None = None, field_selector: str | None = None,
                 indexers: dict[str, IndexFunc] | None = None, page_size: int = 500,
                 watch_timeout: int = 300, retry_delay: float = 1.0):
        self.api, self.resource, self.namespace = api, resource, namespace
        self.label_selector, self.field_selector = label_selector, field_selector
        self.store = Store(indexers)
        self.page_size, self.watch_timeout, self.retry_delay = page_size, watch_timeout, \
            retry_delay
        self.handlers: list[Handler] = []
        self.resource_version: str | None = None
        self.lists = 0  # how many times we listed (tests and metrics look at it)
        self._synced = asyncio.Event()

    def add_handler(self, on_add=None, on_update=None, on_delete=None) -> None:
        """Register callbacks; objects already in the cache are replayed as adds."""
        handler = Handler(on_add, on_update, on_delete)
        self.handlers.append(handler)
        if handler.on_add:
            for obj in self.store.list():
                handler.on_add(obj)

    def has_synced(self) -> bool:
        return self._synced.is_set()

    async def wait_for_sync(self) -> None:
        await self._synced.wait()

    # -- notifications -----------------------------------------------------------------

    def _added(self, obj: dict) -> None:
        for h in self.handlers:
            if h.on_add:
                h.on_add(obj)

    def _updated(self, old: dict, new: dict) -> None:
        for h in self.handlers:
            if h.on_update:
                h.on_update(old, new)

    def _deleted(self, obj: dict) -> None:
        for h in self.handlers:
            if h.on_delete:
                h.on_delete(obj)

    # -- applying changes --------------------------------------------------------------

    def replace(self, objects: list[dict], resource_version: str) -> None:
        """Make the cache equal to a fresh list, notifying the differences."""
        fresh = {self.store.key_func(o): o for o in objects}
        for key in self.store.list_keys():
            if key not in fresh:
                self._deleted(self.store.delete(key))
        for obj in objects:
            old = self.store.upsert(obj)
            if old is None:
                self._added(obj)
            else:
                self._updated(old, obj)
        self.resource_version = resource_version
        self._synced.set()

    def apply(self, event_type: str, obj: dict) -> None:
        rv = _rv(obj)
        if event_type == "BOOKMARK":
            self.resource_version = rv or self.resource_version
            return
        if event_type in ("ADDED", "MODIFIED"):
            old = self.store.upsert(obj)
            if old is None:
                self._added(obj)
            else:
                self._updated(old, obj)
        elif event_type == "DELETED":
            self.store.delete(obj)
            self._deleted(obj)  # the object's final state, as the event carried it
        if rv:
            self.resource_version = rv

    # -- the loop ----------------------------------------------------------------------

    async def list_all(self) -> tuple[list[dict], str]:
        items: list[dict] = []
        token = None
        while True:
            try:
                page = await self.api.list(self.resource, self.namespace,
                                           label_selector=self.label_selector,
                                           field_selector=self.field_selector,
                                           limit=self.page_size, continue_token=token)
            except Gone:
                if token is None:
                    raise
                # The continue token expired mid-way: start over without paging.
                items, token = [], None
                page = await self.api.list(self.resource, self.namespace,
                                           label_selector=self.label_selector,
                                           field_selector=self.field_selector)
            items.extend(page.get("items") or [])
            meta = page.get("metadata") or {}
            token = meta.get("continue")
            if not token:
                return items, meta.get("resourceVersion", "")

    async def list_and_replace(self) -> None:
        items, rv = await self.list_all()
        self.lists += 1
        self.replace(items, rv)

    async def watch_once(self) -> None:
        """One watch from the current resourceVersion until the stream ends."""
        async for event_type, obj in self.api.watch(
                self.resource, self.namespace, resource_version=self.resource_version,
                allow_bookmarks=True, timeout_seconds=self.watch_timeout,
                label_selector=self.label_selector, field_selector=self.field_selector):
            self.apply(event_type, obj)

    async def run(self) -> None:
        need_list = True
        while True:
            try:
                if need_list:
                    await self.list_and_replace()
                    need_list = False
                await self.watch_once()
            except asyncio.CancelledError:
                raise
            except Gone:
                log.info("informer %s: resourceVersion %s expired, listing again",
                         self.resource, self.resource_version)
                need_list = True
            except Exception as exc:  # noqa: BLE001 - keep the cache alive across errors
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise asyncio.CancelledError from exc  # cleanup failed while cancelled
                log.warning("informer %s: %s; listing again in %.1fs", self.resource, exc,
                            self.retry_delay)
                need_list = True
                await asyncio.sleep(self.retry_delay)
