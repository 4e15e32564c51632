"""The Namespace controller: a deleted namespace's content is deleted, then the namespace.

Deleting a Namespace only marks it (deletionTimestamp, phase Terminating; the API server
refuses new objects in it) while its `spec.finalizers` holds `kubernetes`. This
controller then, for every namespaced resource the API server serves (found by
discovery, so nothing is missed when the server grows new kinds), deletes the whole
collection; while objects remain (pods in graceful termination, objects with finalizers
of their own) it looks again after `recheck` seconds. Once nothing is left it removes
`kubernetes` from `spec.finalizers` through the `finalize` subresource, and the API
server deletes the Namespace when no finalizer is left.

Talking to collections of kinds the client's fixed resource table may not know goes
through `RestContent` (plain REST paths); tests give the controller a fake of its three
methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from agents.kube.errors import Conflict, NotFound
from agents.kube.resources import Resource, path

from .base import QueueController
from .objects import now_rfc3339

log = logging.getLogger(__name__)

FINALIZER = "kubernetes"


def namespaced_resources(resource_lists: list[dict]) -> list[Resource]:
    """Namespaced, deletable top-level resources from legacy discovery documents (one
    APIResourceList per group-version: /api/v1, /apis/<group>/<version>). Subresources
    ("pods/status") are skipped; a resource served in two groups counts once per group."""
    found: dict[tuple[str, str], Resource] = {}
    for doc in resource_lists:
        group, _, version = doc.get("groupVersion", "").rpartition("/")
        for entry in doc.get("resources") or []:
            name, verbs = entry.get("name", ""), set(entry.get("verbs") or [])
            if "/" in name or not entry.get("namespaced"):
                continue
            if not ("deletecollection" in verbs or {"list", "delete"} <= verbs):
                continue
            found.setdefault((group, name), Resource(name, entry.get("kind", ""), group,
                                                     version, True))
    return list(found.values())


def remaining_condition(left: dict[Resource, int], stamp: str) -> dict:
    """The NamespaceContentRemaining condition Kubernetes' namespace controller writes
    while objects are left (`kubectl describe namespace` shows it)."""
    def group_resource(res: Resource) -> str:
        return f"{res.name}.{res.group}" if res.group else res.name
    counts = sorted((group_resource(res), n) for res, n in left.items())
    return {"type": "NamespaceContentRemaining", "status": "True",
            "reason": "SomeResourcesRemain", "lastTransitionTime": stamp,
            "message": "Some resources are remaining: " + ", ".join(
                f"{name} has {n} resource instances" for name, n in counts)}


def with_condition(namespace: dict, condition: dict) -> dict | None:
    """The namespace with `condition` in status.conditions (replacing one of its type),
    or None when it is already there with the same status and message."""
    status = dict(namespace.get("status") or {})
    others = []
    for cond in status.get("conditions") or []:
        if cond.get("type") != condition["type"]:
            others.append(cond)
        elif (cond.get("status"), cond.get("message")) == (condition["status"],
                                                           condition["message"]):
            return None
    status["conditions"] = [*others, condition]
    return {**namespace, "status": status}


def finalized(namespace: dict) -> dict:
    """The namespace with `kubernetes` taken out of spec.finalizers (the finalize body)."""
    spec = dict(namespace.get("spec") or {})
    spec["finalizers"] = [f for f in spec.get("finalizers") or [] if f != FINALIZER]
    return {**namespace, "spec": spec}


def is_ours_to_finalize(namespace: dict | None) -> bool:
    return bool(namespace and (namespace.get("metadata") or {}).get("deletionTimestamp")
                and FINALIZER in ((namespace.get("spec") or {}).get("finalizers") or []))


class RestContent:
    """Discovery and collection deletes over the API server's REST paths."""

    def __init__(self, api):
        self.api = api

    async def resources(self) -> list[Resource]:
        groups = await self.api.request("GET", "/apis")
        paths = ["/api/v1"] + [f"/apis/{g['preferredVersion']['groupVersion']}"
                               for g in groups.get("groups") or [] if g.get("preferredVersion")]
        lists = await asyncio.gather(*(self.api.request("GET", p) for p in paths))
        return namespaced_resources(list(lists))

    async def delete_all(self, res: Resource, namespace: str) -> None:
        with contextlib.suppress(NotFound):  # the kind went away since discovery
            await self.api.request("DELETE", path(res, namespace), body={
                "kind": "DeleteOptions", "apiVersion": "v1",
                "propagationPolicy": "Background"})

    async def remaining(self, res: Resource, namespace: str) -> int:
        try:
            found = await self.api.request("GET", path(res, namespace))
        except NotFound:
            return 0
        return len(found.get("items") or [])


class NamespaceController(QueueController):
    name = "namespace-controller"

    def __init__(self, api, namespaces, content=None, events=None, recheck: float = 1.0):
        super().__init__(api, events)
        self.namespaces, self.recheck = namespaces, recheck
        self.content = content or RestContent(api)
        namespaces.add_handler(self._enqueue, lambda _old, new: self._enqueue(new))

    def _enqueue(self, namespace: dict) -> None:
        if is_ours_to_finalize(namespace):
            self.queue.add(namespace["metadata"]["name"])

    async def sync(self, name: str) -> None:
        namespace = self.namespaces.store.get(name)
        if not is_ours_to_finalize(namespace):
            return
        kinds = await self.content.resources()
        await asyncio.gather(*(self.content.delete_all(res, name) for res in kinds))
        counts = await asyncio.gather(*(self.content.remaining(res, name) for res in kinds))
        left = {res: n for res, n in zip(kinds, counts, strict=True) if n}
        if left:
            condition = remaining_condition(left, now_rfc3339())
            log.info("namespace %s: %s", name, condition["message"])
            self.queue.add_after(name, self.recheck)
            updated = with_condition(namespace, condition)
            if updated is not None:
                with contextlib.suppress(Conflict, NotFound):  # only a report: next time
                    await self.api.update_status("namespaces", updated)
            return
        try:
            await self.api.update("namespaces", finalized(namespace), subresource="finalize")
        except NotFound:
            return  # someone else finished it (a Conflict propagates: retried afresh)
        log.info("namespace %s: content deleted, finalizer %s removed", name, FINALIZER)
