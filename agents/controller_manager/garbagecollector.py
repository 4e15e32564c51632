"""The garbage collector: ownerReferences drive deletion.

- Background (the default): an object all of whose owners are gone is deleted; one that
  still has some owner only loses the references to the gone ones. "Gone" is checked
  with a GET of the owner before acting (the caches may lag: an owner created a moment
  ago may not be in them yet), and a namesake with another uid counts as gone.
- Foreground: an owner marked for deletion with the `foregroundDeletion` finalizer has
  its dependents deleted; once none is left, the finalizer is removed and the API server
  deletes the owner.
- Orphan: an owner marked for deletion with the `orphan` finalizer has its reference
  removed from every dependent, then the finalizer removed.
(The API server adds those finalizers for DELETE with propagationPolicy Foreground or
Orphan.)

The graph is the informers' caches: a uid → (resource, key) map kept by handlers, and
each informer's "owner" index (owner uid → dependents)."""

from __future__ import annotations

import contextlib
import logging

from agents.kube.errors import Conflict, NotFound
from agents.kube.resources import meta_namespace_key, resource

from .base import QueueController

log = logging.getLogger(__name__)

FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"


class GarbageCollector(QueueController):
    name = "garbage-collector"

    def __init__(self, api, informers: dict, events=None):
        """`informers`: resource name → Informer; those with an "owner" index can hold
        dependents."""
        super().__init__(api, events)
        self.informers = informers
        self.uids: dict[str, tuple[str, str]] = {}
        for name, inf in informers.items():
            inf.add_handler(self._seen(name), lambda _o, n, r=name: self._seen(r)(n),
                            self._gone(name))

    def _seen(self, res: str):
        def handler(obj: dict) -> None:
            meta = obj["metadata"]
            key = meta_namespace_key(obj)
            if meta.get("uid"):
                self.uids[meta["uid"]] = (res, key)
            if meta.get("ownerReferences") or (
                    meta.get("deletionTimestamp") and
                    {FOREGROUND, ORPHAN} & set(meta.get("finalizers") or ())):
                self.queue.add((res, key))
        return handler

    def _gone(self, res: str):
        def handler(obj: dict) -> None:
            uid = obj["metadata"].get("uid")
            self.uids.pop(uid, None)
            for dep_res, dep_key in self.dependents(uid):
                self.queue.add((dep_res, dep_key))
            # An owner deleting in the foreground waits for this one to be gone.
            for ref in obj["metadata"].get("ownerReferences") or []:
                if ref.get("uid") in self.uids:
                    self.queue.add(self.uids[ref["uid"]])
        return handler

    def dependents(self, uid: str | None) -> list[tuple[str, str]]:
        found = []
        if not uid:
            return found
        for name, inf in self.informers.items():
            if "owner" in inf.store.indexers:
                found += [(name, k) for k in inf.store.index_keys("owner", uid)]
        return found

    async def sync(self, item: tuple[str, str]) -> None:
        res, key = item
        obj = self.informers[res].store.get(key)
        if obj is None:
            return
        meta = obj["metadata"]
        finalizers = meta.get("finalizers") or []
        if meta.get("deletionTimestamp") and ORPHAN in finalizers:
            await self._orphan_dependents(res, obj)
        elif meta.get("deletionTimestamp") and FOREGROUND in finalizers:
            await self._delete_dependents_first(res, obj)
        if meta.get("ownerReferences"):
            await self._check_owners(res, obj)

    async def _owner_exists(self, obj: dict, ref: dict) -> bool:
        if ref.get("uid") in self.uids:
            return True
        try:
            owner_res = resource(ref.get("kind", ""))
        except KeyError:
            return True  # a kind we do not know: never delete on a guess
        ns = obj["metadata"].get("namespace") if owner_res.namespaced else None
        try:
            owner = await self.api.get(owner_res.name, ref["name"], ns)
        except NotFound:
            return False
        return owner["metadata"].get("uid") == ref.get("uid")

    async def _check_owners(self, res: str, obj: dict) -> None:
        meta = obj["metadata"]
        refs = meta["ownerReferences"]
        alive = [ref for ref in refs if await self._owner_exists(obj, ref)]
        if len(alive) == len(refs):
            return
        with contextlib.suppress(NotFound):
            if not alive:
                log.info("garbage collector: deleting %s %s (its owners are gone)", res,
                         meta_namespace_key(obj))
                await self.api.delete(res, meta["name"], meta.get("namespace"),
                                      propagation_policy="Background",
                                      preconditions={"uid": meta["uid"]})
            else:
                await self._set_refs(res, obj, alive)

    async def _set_refs(self, res: str, obj: dict, refs: list[dict]) -> None:
        meta = obj["metadata"]
        await self.api.patch(res, meta["name"], {"metadata": {
            "ownerReferences": refs or None, "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"]}}, meta.get("namespace"))

    async def _remove_finalizer(self, res: str, obj: dict, finalizer: str) -> None:
        meta = obj["metadata"]
        rest = [f for f in meta.get("finalizers") or [] if f != finalizer]
        with contextlib.suppress(NotFound):
            await self.api.patch(res, meta["name"], {"metadata": {
                "finalizers": rest or None, "resourceVersion": meta["resourceVersion"]}},
                meta.get("namespace"))

    async def _orphan_dependents(self, res: str, owner: dict) -> None:
        uid = owner["metadata"]["uid"]
        for dep_res, dep_key in self.dependents(uid):
            dep = self.informers[dep_res].store.get(dep_key)
            if dep is None:
                continue
            with contextlib.suppress(NotFound):
                await self._set_refs(dep_res, dep, [r for r in dep["metadata"].get(
                    "ownerReferences") or [] if r.get("uid") != uid])
        await self._remove_finalizer(res, owner, ORPHAN)

    async def _delete_dependents_first(self, res: str, owner: dict) -> None:
        remaining = 0
        for dep_res, dep_key in self.dependents(owner["metadata"]["uid"]):
            dep = self.informers[dep_res].store.get(dep_key)
            if dep is None:
                continue
            remaining += 1
            if not dep["metadata"].get("deletionTimestamp"):
                with contextlib.suppress(NotFound, Conflict):
                    await self.api.delete(dep_res, dep["metadata"]["name"],
                                          dep["metadata"].get("namespace"),
                                          propagation_policy="Foreground")
        if remaining == 0:
            await self._remove_finalizer(res, owner, FOREGROUND)
        # else: each dependent's DELETED event re-queues this owner (see _gone → owner)
