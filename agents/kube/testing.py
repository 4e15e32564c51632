"""A fake API server in memory for controller tests, in the sample-controller style.

    api = FakeApi()
    api.seed("deployments", deployment)        # objects that exist before the test
    await controller.sync("default/web")       # run one level-triggered sync
    assert api.actions == [Action("create", "replicasets", "default", "web-5d4f", ...)]

`FakeApi` has the same async methods as `KubeClient` (get, list, create, update,
update_status, patch, delete, bind, evict, scale, watch), so informers and controllers run
against it unchanged. Every mutating call is recorded in `actions` (reads too with
`record_reads=True`). `fail_next(verb, resource, error)` makes a call fail, like
client-go's reactors. resourceVersions come from one counter as in etcd; watches replay
history from a resourceVersion, and `compact()` makes older ones answer 410 Gone.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from . import resources
from .errors import AlreadyExists, ApiError, Conflict, Gone, Invalid, NotFound


@dataclass
class Action:
    verb: str                 # get list create update patch delete bind evict watch
    resource: str
    namespace: str | None
    name: str | None
    subresource: str | None = None
    object: Any = field(default=None, compare=False)  # the body sent (object or patch)

    def __repr__(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        sub = f"/{self.subresource}" if self.subresource else ""
        return f"Action({self.verb} {self.resource}{sub} {where})"


def _status(code: int, reason: str, message: str) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
            "reason": reason, "message": message}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (null deletes a key; lists are replaced whole)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _get_path(obj: dict, dotted: str) -> Any:
    cur: Any = obj
    for part in dotted.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def match_labels(selector: str | None, labels: dict) -> bool:
    """Equality-based label selectors: `a=b`, `a==b`, `a!=b`, `a`, `!a`, `a in (x,y)`,
    `a notin (x,y)`."""
    if not selector:
        return True
    for term in _split_terms(selector):
        term = term.strip()
        if " notin " in term or " in " in term:
            neg = " notin " in term
            key, _, values = term.partition(" notin " if neg else " in ")
            allowed = {v.strip() for v in values.strip().strip("()").split(",")}
            present = labels.get(key.strip())
            if neg and present in allowed:
                return False
            if not neg and present not in allowed:
                return False
        elif "!=" in term:
            key, _, value = term.partition("!=")
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, _, value = term.replace("==", "=").partition("=")
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term and term not in labels:
            return False
    return True


def _split_terms(selector: str) -> list[str]:
    terms, depth, cur = [], 0, ""
    for ch in selector:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            terms.append(cur)
            cur = ""
        else:
            cur += ch
    return [*terms, cur]


def match_fields(selector: str | None, obj: dict) -> bool:
    if not selector:
        return True
    for term in selector.split(","):
        neg = "!=" in term
        key, _, value = term.replace("==", "=").partition("!=" if neg else "=")
        actual = _get_path(obj, key.strip())
        actual = "" if actual is None else str(actual)
        if (actual == value.strip()) == neg:
            return False
    return True


class FakeApi:
    def __init__(self, record_reads: bool = False, namespace: str = "default"):
        self.namespace = namespace
        self.record_reads = record_reads
        self.actions: list[Action] = []
        self._objects: dict[tuple[str, str, str], dict] = {}
        self._rv = itertools.count(1)
        self.revision = 0
        self._history: list[tuple[int, str, str, dict]] = []  # (rv, resource, type, obj)
        self._compacted = 0
        self._watchers: list[tuple[str, asyncio.Queue]] = []
        self._failures: list[tuple[str, str, ApiError, list[int]]] = []
        self.deliver_events = True  # False: open watches miss changes (a partition)

    # -- test controls -----------------------------------------------------------------

    def seed(self, resource: str, *objects: dict) -> None:
        """Put objects in place without recording actions (they 'already existed')."""
        for obj in objects:
            self._store(resource, copy.deepcopy(obj), "ADDED", fill_meta=True)

    def fail_next(self, verb: str, resource: str, error: ApiError, times: int = 1) -> None:
        self._failures.append((verb, resource, error, [times]))

    def clear_actions(self) -> None:
        self.actions.clear()

    def mutations(self) -> list[Action]:
        return [a for a in self.actions if a.verb not in ("get", "list", "watch")]

    def objects(self, resource: str, namespace: str | None = None) -> list[dict]:
        res = resources.resource(resource).name
        return [copy.deepcopy(o) for (r, ns, _), o in sorted(self._objects.items())
                if r == res and (namespace is None or ns == namespace)]

    def compact(self) -> None:
        """Forget history: watches from an older resourceVersion now get 410 Gone."""
        self._compacted = self.revision
        self._history.clear()

    def end_watches(self) -> None:
        """End every open watch stream (as a server timeout would)."""
        for _, queue in self._watchers:
            queue.put_nowait(None)

    def expire_watches(self) -> None:
        """Send every open watch an ERROR 410 event."""
        for _, queue in self._watchers:
            queue.put_nowait(("ERROR", _status(410, "Expired", "too old resource version")))

    # -- plumbing ----------------------------------------------------------------------

    def _record(self, verb, resource, namespace, name, subresource=None, obj=None) -> None:
        if verb in ("get", "list", "watch") and not self.record_reads:
            pass
        else:
            self.actions.append(Action(verb, resource, namespace, name, subresource,
                                       copy.deepcopy(obj)))
        for verb_, res_, error, left in self._failures:
            if verb_ in (verb, "*") and res_ in (resource, "*") and left[0] > 0:
                left[0] -= 1
                raise error

    def _key(self, res: resources.Resource, namespace: str | None, name: str):
        return (res.name, namespace if res.namespaced else "", name)

    def _ns(self, res: resources.Resource, namespace: str | None, obj: dict | None = None):
        if not res.namespaced:
            return None
        return namespace or ((obj or {}).get("metadata") or {}).get("namespace") \
            or self.namespace

    def _store(self, resource: str, obj: dict, event: str, fill_meta: bool = False) -> dict:
        res = resources.resource(resource)
        meta = obj.setdefault("metadata", {})
        if fill_meta:
            if res.namespaced:
                meta.setdefault("namespace", self.namespace)
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp",
                            datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
            obj.setdefault("apiVersion", res.api_version)
            obj.setdefault("kind", res.kind)
        rv = next(self._rv)
        self.revision = rv
        meta["resourceVersion"] = str(rv)
        key = self._key(res, meta.get("namespace"), meta["name"])
        if event == "DELETED":
            self._objects.pop(key, None)
        else:
            self._objects[key] = obj
        snapshot = copy.deepcopy(obj)
        self._history.append((rv, res.name, event, snapshot))
        for watched, queue in self._watchers:
            if watched == res.name and self.deliver_events:
                queue.put_nowait((event, copy.deepcopy(snapshot)))
        return copy.deepcopy(obj)

    def _existing(self, res, namespace, name) -> dict:
        obj = self._objects.get(self._key(res, namespace, name))
        if obj is None:
            raise NotFound(404, _status(404, "NotFound", f'{res.name} "{name}" not found'))
        return obj

    # -- the KubeClient interface ------------------------------------------------------

    async def get(self, resource: str, name: str, namespace: str | None = None,
                  subresource: str | None = None) -> dict:
        res = resources.resource(resource)
        ns = self._ns(res, namespace)
        self._record("get", res.name, ns, name, subresource)
        return copy.deepcopy(self._existing(res, ns, name))

    async def list(self, resource: str, namespace: str | None = None, *,
                   label_selector: str | None = None, field_selector: str | None = None,
                   resource_version: str | None = None, limit: int | None = None,
                   continue_token: str | None = None) -> dict:
        res = resources.resource(resource)
        ns = namespace if res.namespaced else None
        self._record("list", res.name, ns, None)
        items = [o for o in self.objects(res.name, ns)
                 if match_labels(label_selector, (o["metadata"].get("labels") or {}))
                 and match_fields(field_selector, o)]
        start = int(continue_token) if continue_token else 0
        end = start + limit if limit else len(items)
        meta: dict[str, Any] = {"resourceVersion": str(self.revision)}
        if end < len(items):
            meta["continue"] = str(end)
        return {"kind": f"{res.kind}List", "apiVersion": res.api_version, "metadata": meta,
                "items": items[start:end]}

    async def create(self, resource: str, obj: dict, namespace: str | None = None,
                     subresource: str | None = None, name: str | None = None) -> dict:
        res = resources.resource(resource)
        ns = self._ns(res, namespace, obj)
        if subresource == "binding":
            return await self.bind(ns, name, obj["target"]["name"])
        if subresource == "eviction":
            return await self.evict(ns, name)
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        self._record("create", res.name, ns, meta.get("name"), subresource, obj)
        if not meta.get("name"):
            raise Invalid(422, _status(422, "Invalid", "metadata.name: Required value"))
        if self._key(res, ns, meta["name"]) in self._objects:
            raise AlreadyExists(409, _status(409, "AlreadyExists",
                                             f'{res.name} "{meta["name"]}" already exists'))
        if ns:
            meta["namespace"] = ns
        meta.pop("resourceVersion", None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        meta.setdefault("generation", 1)
        obj.setdefault("apiVersion", res.api_version)
        obj.setdefault("kind", res.kind)
        return self._store(res.name, obj, "ADDED")

    def _check_rv(self, res, current: dict, sent_rv: str | None, name: str) -> None:
        if sent_rv and sent_rv != current["metadata"]["resourceVersion"]:
            raise Conflict(409, _status(
                409, "Conflict", f'Operation cannot be fulfilled on {res.name} "{name}": '
                "the object has been modified; please apply your changes to the latest "
                "version and try again"))

    async def update(self, resource: str, obj: dict, subresource: str | None = None,
                     namespace: str | None = None) -> dict:
        res = resources.resource(resource)
        ns = self._ns(res, namespace, obj)
        name = obj["metadata"]["name"]
        self._record("update", res.name, ns, name, subresource, obj)
        current = self._existing(res, ns, name)
        self._check_rv(res, current, obj["metadata"].get("resourceVersion"), name)
        new = copy.deepcopy(obj)
        # The status subresource changes only status; the main resource keeps status.
        if subresource == "status":
            new = {**copy.deepcopy(current), "status": new.get("status")}
        elif "status" in current:
            new["status"] = copy.deepcopy(current["status"])
        new["metadata"] = {**new["metadata"],
                           "uid": current["metadata"]["uid"],
                           "creationTimestamp": current["metadata"].get("creationTimestamp")}
        if subresource != "status" and new.get("spec") != current.get("spec"):
            new["metadata"]["generation"] = current["metadata"].get("generation", 1) + 1
        return self._finish_write(res, new)

    async def update_status(self, resource: str, obj: dict) -> dict:
        return await self.update(resource, obj, subresource="status")

    def _finish_write(self, res, obj: dict) -> dict:
        meta = obj["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            return self._store(res.name, obj, "DELETED")
        return self._store(res.name, obj, "MODIFIED")

    async def patch(self, resource: str, name: str, patch: Any,
                    namespace: str | None = None, *, patch_type: str = "merge",
                    subresource: str | None = None) -> dict:
        """Merge patches (a strategic merge patch is applied as a merge patch: lists are
        replaced whole)."""
        res = resources.resource(resource)
        ns = self._ns(res, namespace)
        self._record("patch", res.name, ns, name, subresource, patch)
        if patch_type not in ("merge", "strategic"):
            raise ApiError(415, _status(415, "UnsupportedMediaType",
                                        f"FakeApi does not do {patch_type} patches"))
        current = self._existing(res, ns, name)
        if subresource == "scale":
            patch = {"spec": {"replicas": patch["spec"]["replicas"]}}
        sent_rv = ((patch.get("metadata") or {}).get("resourceVersion")
                   if isinstance(patch, dict) else None)
        self._check_rv(res, current, sent_rv, name)
        new = merge_patch(current, patch)
        if new.get("spec") != current.get("spec"):
            new["metadata"]["generation"] = current["metadata"].get("generation", 1) + 1
        return self._finish_write(res, new)

    async def delete(self, resource: str, name: str, namespace: str | None = None, *,
                     propagation_policy: str | None = None,
                     grace_period_seconds: int | None = None,
                     preconditions: dict | None = None) -> dict:
        res = resources.resource(resource)
        ns = self._ns(res, namespace)
        options = {k: v for k, v in (("propagationPolicy", propagation_policy),
                                     ("gracePeriodSeconds", grace_period_seconds)) if v is not None}
        self._record("delete", res.name, ns, name, None, options or None)
        current = self._existing(res, ns, name)
        if preconditions:
            want_uid = preconditions.get("uid")
            if want_uid and want_uid != current["metadata"]["uid"]:
                raise Conflict(409, _status(409, "Conflict", "Precondition failed: UID"))
            self._check_rv(res, current, preconditions.get("resourceVersion"), name)
        new = copy.deepcopy(current)
        if new["metadata"].get("finalizers"):
            new["metadata"].setdefault("deletionTimestamp",
                                       datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
            return self._store(res.name, new, "MODIFIED")
        return self._store(res.name, new, "DELETED")

    async def bind(self, namespace: str, pod: str, node: str, uid: str | None = None) -> dict:
        self._record("create", "pods", namespace, pod, "binding", {"target": node})
        current = self._existing(resources.resource("pods"), namespace, pod)
        if (current.get("spec") or {}).get("nodeName"):
            raise Conflict(409, _status(409, "Conflict", f"pod {pod} is already assigned "
                                        f"to node \"{current['spec']['nodeName']}\""))
        new = copy.deepcopy(current)
        new.setdefault("spec", {})["nodeName"] = node
        self._store("pods", new, "MODIFIED")
        return {"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 201}

    async def evict(self, namespace: str, pod: str) -> dict:
        self._record("create", "pods", namespace, pod, "eviction")
        current = self._existing(resources.resource("pods"), namespace, pod)
        self._store("pods", copy.deepcopy(current), "DELETED")
        return {"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 201}

    async def get_scale(self, resource: str, name: str, namespace: str | None = None) -> dict:
        obj = await self.get(resource, name, namespace)
        return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {"name": name, "namespace": obj["metadata"].get("namespace")},
                "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 0)},
                "status": {"replicas": (obj.get("status") or {}).get("replicas", 0)}}

    async def scale(self, resource: str, name: str, replicas: int,
                    namespace: str | None = None) -> dict:
        return await self.patch(resource, name, {"spec": {"replicas": replicas}}, namespace,
                                subresource="scale")

    async def watch(self, resource: str, namespace: str | None = None, *,
                    resource_version: str | None = None, allow_bookmarks: bool = True,
                    timeout_seconds: int | None = None, label_selector: str | None = None,
                    field_selector: str | None = None) -> AsyncIterator[tuple[str, dict]]:
        res = resources.resource(resource)
        self._record("watch", res.name, namespace, None)
        since = int(resource_version) if resource_version else self.revision
        if since < self._compacted:
            raise Gone(410, _status(410, "Expired", f"too old resource version: {since} "
                                    f"({self._compacted})"))
        queue: asyncio.Queue = asyncio.Queue()
        for rv, r, event, obj in self._history:
            if r == res.name and rv > since:
                queue.put_nowait((event, copy.deepcopy(obj)))
        entry = (res.name, queue)
        self._watchers.append(entry)
        try:
            while True:
                item = await queue.get()
                if item is None:
                    return
                event, obj = item
                if event == "ERROR":
                    raise Gone(410, obj)
                if namespace and res.namespaced and \
                        obj["metadata"].get("namespace") != namespace:
                    continue
                if not (match_labels(label_selector, obj["metadata"].get("labels") or {})
                        and match_fields(field_selector, obj)):
                    continue
                yield event, obj
        finally:
            if entry in self._watchers:
                self._watchers.remove(entry)

    def watch_count(self, resource: str | None = None) -> int:
        """How many watch streams are open (for tests that wait for a watcher)."""
        return sum(1 for r, _ in self._watchers if resource in (None, r))
