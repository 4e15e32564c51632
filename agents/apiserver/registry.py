"""The object registry: create / get / list / update / patch / delete of API objects on
top of the etcd storage, with Kubernetes' semantics (uids, timestamps, generation,
status subresources, optimistic concurrency, graceful pod deletion, finalizers)."""

from __future__ import annotations

import base64
import copy
import json
import random
import string
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from . import defaults, managedfields
from .allocator import Allocator
from .errors import ApiError, already_exists, conflict, expired, invalid, not_found
from .resources import RESOURCES, ResourceType, by_kind
from .selectors import fields_match, labels_match, single_name
from .storage import Compacted, EtcdStorage, FutureRevision, Item
from .stored import splice_rv
from .validation import validate

# Kinds whose status is written only through the /status subresource.
STATUS_SUBRESOURCE = {"Pod", "Node", "Service", "Namespace", "Deployment", "ReplicaSet",
                      "DaemonSet"}
# Kinds whose status a create starts afresh (controllers own it).
RESET_STATUS_ON_CREATE = {"Deployment", "ReplicaSet", "DaemonSet"}
# Kinds where a PUT of a missing object creates it.
CREATE_ON_UPDATE = {"Endpoints", "Lease", "Event"}
# Kinds that track spec changes in metadata.generation.
GENERATION = {"Deployment", "ReplicaSet", "DaemonSet", "Pod", "Service", "Namespace", "Node"}

CAS_RETRIES = 8
PROTECTED_NAMESPACES = {"default", "kube-system", "kube-public"}


def now_rfc3339(at: datetime | None = None) -> str:
    return (at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


def decode(item: Item) -> dict:
    obj = json.loads(item.value)
    obj.setdefault("metadata", {})["resourceVersion"] = str(item.mod_revision)
    return obj


def encode(obj: dict) -> bytes:
    """Stored form: JSON with metadata first and no resourceVersion (etcd's mod_revision
    is the resourceVersion), so a list can splice it in without decoding (raw_with_rv)."""
    meta = dict(obj.get("metadata") or {})
    meta.pop("resourceVersion", None)
    meta.pop("selfLink", None)
    stored = {"metadata": meta, **{k: v for k, v in obj.items() if k != "metadata"}}
    return json.dumps(stored, separators=(",", ":")).encode()


def raw_with_rv(item: Item) -> bytes:
    """The item's JSON with its resourceVersion, decoding it only if it is not in the
    metadata-first stored form."""
    return splice_rv(item.value, item.mod_revision)


def copy_json(obj):
    """A private deep copy of a JSON document (a C round trip: ~2x faster than deepcopy)."""
    return json.loads(json.dumps(obj))


_SAME_SKIP = ("resourceVersion", "managedFields")


def _same(a: dict, b: dict) -> bool:
    """Equal ignoring resourceVersion and managedFields timestamps (compared in place: a
    write path runs this on every update)."""
    if a.keys() != b.keys() or any(a[k] != b[k] for k in a if k != "metadata"):
        return False
    ma, mb = a.get("metadata"), b.get("metadata")
    if not (isinstance(ma, dict) and isinstance(mb, dict)):
        return ma == mb
    if {k: v for k, v in ma.items() if k not in _SAME_SKIP} != \
            {k: v for k, v in mb.items() if k not in _SAME_SKIP}:
        return False
    fa, fb = ma.get("managedFields") or [], mb.get("managedFields") or []
    if len(fa) != len(fb):
        return False
    return all(_untimed(x) == _untimed(y) for x, y in zip(fa, fb, strict=True))


def _untimed(entry):
    return {k: v for k, v in entry.items() if k != "time"} if isinstance(entry, dict) else entry


class Registry:
    def __init__(self, storage: EtcdStorage, service_cidr: str = "10.96.0.0/12",
                 node_port_range: tuple[int, int] = (30000, 32767)):
        self.storage = storage
        self.ips = Allocator.for_cidr(storage, service_cidr)
        self.node_ports = Allocator.for_range(storage, *node_port_range)
        self.namespaces = None  # an Informer over namespaces, once started
        # plural → WatchCache: their latest-seen items spare writes an etcd read
        self.watch_caches: dict = {}

    # ------------------------------------------------------------ reads

    async def _read(self, rt: ResourceType, ns: str | None, name: str) -> Item:
        item = await self.storage.get(rt.key(ns, name))
        if item is None:
            raise not_found(rt, name)
        return item

    async def _read_for_write(self, rt: ResourceType, ns: str | None, name: str
                              ) -> tuple[Item, bool]:
        """(item, whether it came from the watch cache). A cached item may be stale: the
        compare-and-swap write catches that, and _modify re-decides any other outcome
        on a fresh read (see _fresher)."""
        cache = self.watch_caches.get(rt.plural)
        item = cache.latest(rt.key(ns, name)) if cache is not None else None
        if item is not None:
            return item, True
        return await self._read(rt, ns, name), False

    async def _fresher(self, rt: ResourceType, ns: str | None, name: str,
                       item: Item) -> Item | None:
        """etcd's item if it is newer than the (cached) item, else None; 404 if gone."""
        fresh = await self._read(rt, ns, name)
        return None if fresh.mod_revision == item.mod_revision else fresh

    async def get(self, rt: ResourceType, ns: str | None, name: str) -> dict:
        return decode(await self._read(rt, ns, name))

    async def list(self, rt: ResourceType, ns: str | None, label_reqs=(), field_reqs=(),
                   limit: int = 0, continue_token: str = "", resource_version: str = ""
                   ) -> tuple[list[dict], str, str]:
        """(items, list resourceVersion, continue token)."""
        items, rv, token = await self.list_items(rt, ns, field_reqs, limit, continue_token,
                                                 resource_version)
        objs = [decode(i) for i in items]
        objs = [o for o in objs if labels_match(label_reqs, o["metadata"].get("labels"))
                and fields_match(field_reqs, o)]
        return objs, rv, token

    async def list_items(self, rt: ResourceType, ns: str | None, field_reqs=(),
                         limit: int = 0, continue_token: str = "", resource_version: str = ""
                         ) -> tuple[list[Item], str, str]:
        """The stored items of a list, unfiltered except by a pinned metadata.name."""
        prefix = rt.prefix(ns)
        revision, start_key = 0, None
        if continue_token:
            try:
                token = json.loads(base64.b64decode(continue_token))
                revision, start_key = int(token["rv"]), token["start"]
            except Exception as exc:
                raise ApiError(400, "invalid continue token") from exc
            if not start_key.startswith(prefix):
                raise ApiError(400, "continue token does not match this list")
        name = single_name(field_reqs)
        if name and rt.namespaced and not ns:
            name = None  # a name alone does not pin one key across namespaces
        try:
            if name:
                item = await self.storage.get(rt.key(ns, name))
                items, store_rev, more = ([item] if item else []), await self.storage.revision(), False
            else:
                items, store_rev, more = await self.storage.list(
                    prefix, revision=revision, limit=(limit + 1) if limit else 0,
                    start_key=start_key)
        except Compacted as exc:
            raise expired("The provided continue parameter is too old to display a consistent "
                          "list result. You can start a new list without the continue "
                          "parameter.") from exc
        except FutureRevision as exc:
            raise ApiError(504, f"Too large resource version: {resource_version}",
                           "Timeout") from exc
        next_token = ""
        if limit and len(items) > limit:
            last = items[limit]
            items = items[:limit]
            next_token = base64.b64encode(json.dumps(
                {"rv": revision or store_rev, "start": last.key}).encode()).decode()
        return items, str(revision or store_rev), next_token

    # ------------------------------------------------------------ create

    async def namespace_must_exist(self, ns: str) -> None:
        ns_type = RESOURCES[0]
        known = self.namespaces.get(ns_type.key(None, ns)) if self.namespaces else None
        if known is not None:
            obj = known
        else:  # not seen by the informer (yet): ask etcd
            item = await self.storage.get(ns_type.key(None, ns))
            if item is None:
                raise not_found(ns_type, ns)
            obj = json.loads(item.value)
        if (obj.get("status") or {}).get("phase") == "Terminating":
            raise ApiError(403, f"unable to create new content in namespace {ns} because it "
                                "is being terminated", "Forbidden")

    def prepare_create(self, rt: ResourceType, ns: str | None, obj: dict,
                       manager: str = "", operation: str = "Update") -> dict:
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise invalid(rt, None, [("metadata", "must be an object")])
        if rt.namespaced:
            if meta.get("namespace") and meta["namespace"] != ns:
                raise ApiError(400, "the namespace of the provided object does not match "
                                    "the namespace sent on the request")
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + "".join(
                random.choices(string.ascii_lowercase + string.digits, k=5))
        for k in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds",
                  "selfLink"):
            meta.pop(k, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        if rt.kind in GENERATION:
            meta["generation"] = 1
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        requested = managedfields.fields_v1(_without_status(obj)) if manager else None
        if rt.kind in RESET_STATUS_ON_CREATE:
            obj["status"] = {}
        if rt.kind == "Pod":
            obj.pop("status", None)
        defaults.apply_defaults(rt.kind, obj)
        causes = validate(rt.kind, obj)
        if causes:
            raise invalid(rt, meta.get("name"), causes)
        if manager:
            managedfields.record(meta, manager, operation, rt.api_version, requested,
                                 now_rfc3339())
        return obj

    async def create(self, rt: ResourceType, ns: str | None, obj: dict, manager: str = "",
                     dry_run: bool = False, operation: str = "Update") -> dict:
        if rt.namespaced:
            await self.namespace_must_exist(ns)
        obj = self.prepare_create(rt, ns, obj, manager, operation)
        name = obj["metadata"]["name"]
        if dry_run:
            return obj
        allocated = await self._allocate_service(rt, obj, None) if rt.kind == "Service" else []
        rev = await self.storage.create(rt.key(ns, name), encode(obj))
        if rev is None:
            await self._release(allocated)
            raise already_exists(rt, name)
        obj["metadata"]["resourceVersion"] = str(rev)
        return obj

    # ------------------------------------------------------------ services

    async def _allocate_service(self, rt, obj: dict, old: dict | None) -> list[str]:
        spec = obj.setdefault("spec", {})
        old_spec = (old or {}).get("spec") or {}
        keys: list[str] = []
        try:
            if spec.get("type") != "ExternalName":
                if old_spec.get("clusterIP") and not spec.get("clusterIP"):
                    spec["clusterIP"] = old_spec["clusterIP"]
                if old and spec.get("clusterIP") != old_spec.get("clusterIP"):
                    raise invalid(rt, obj["metadata"]["name"], [
                        ("spec.clusterIP", "Invalid value: field is immutable")])
                if not spec.get("clusterIP"):
                    ip, key = await self.ips.allocate()
                    keys.append(key)
                    spec["clusterIP"] = ip
                elif spec["clusterIP"] != "None" and not old:
                    key = await self.ips.claim(spec["clusterIP"])
                    if key is None:
                        raise invalid(rt, obj["metadata"]["name"], [(
                            "spec.clusterIPs", f"Invalid value: {spec['clusterIP']!r}: "
                            "provided IP is already allocated or outside the service range")])
                    keys.append(key)
                spec["clusterIPs"] = [spec["clusterIP"]]
            if spec.get("type") in ("NodePort", "LoadBalancer"):
                old_ports = {p.get("port"): p.get("nodePort") for p in old_spec.get("ports") or []}
                for p in spec.get("ports") or []:
                    if not p.get("nodePort") and old_ports.get(p.get("port")):
                        p["nodePort"] = old_ports[p["port"]]
                    elif not p.get("nodePort"):
                        port, key = await self.node_ports.allocate()
                        keys.append(key)
                        p["nodePort"] = int(port)
                    elif p["nodePort"] not in old_ports.values():
                        key = await self.node_ports.claim(str(p["nodePort"]))
                        if key is None:
                            raise invalid(rt, obj["metadata"]["name"], [(
                                "spec.ports.nodePort", f"Invalid value: {p['nodePort']}: "
                                "provided port is already allocated")])
                        keys.append(key)
        except BaseException:
            await self._release(keys)
            raise
        return keys

    async def _release(self, keys: list[str]) -> None:
        for key in keys:
            item = await self.storage.get(key)
            if item:
                await self.storage.delete(key, item.mod_revision)

    async def _release_service(self, obj: dict) -> None:
        spec = obj.get("spec") or {}
        keys = []
        if spec.get("clusterIP") and spec["clusterIP"] != "None":
            keys.append(self.ips.key(spec["clusterIP"]))
        keys.extend(self.node_ports.key(str(p["nodePort"])) for p in spec.get("ports") or []
                    if p.get("nodePort"))
        await self._release(keys)

    # ------------------------------------------------------------ update / patch

    def _merge_for_write(self, rt: ResourceType, current: dict, new: dict,
                         subresource: str) -> dict:
        """What an update of `subresource` ("" = main) of current with new writes.

        `new` is the caller's private copy (it is changed in place); the result may share
        parts with `current`, which nobody changes afterwards."""
        if subresource == "finalize":
            # A namespace's finalize subresource changes spec.finalizers and nothing else.
            merged = copy.deepcopy(current)
            merged.setdefault("spec", {})["finalizers"] = list(
                (new.get("spec") or {}).get("finalizers") or [])
            return merged
        if subresource == "binding":
            return new  # built by the server itself (Registry.bind) from a private copy
        if subresource == "status":
            merged = {**current, "metadata": dict(current["metadata"])}
            merged["status"] = new.get("status", {})
            # Status writers may also maintain labels/annotations (the kubelet does).
            return merged
        cur_meta, meta = current["metadata"], new.setdefault("metadata", {})
        for k in ("uid", "creationTimestamp", "deletionTimestamp",
                  "deletionGracePeriodSeconds", "namespace", "name"):
            if k in cur_meta:
                meta[k] = cur_meta[k]
            else:
                meta.pop(k, None)
        meta.setdefault("managedFields", cur_meta.get("managedFields", []))
        new["apiVersion"], new["kind"] = rt.api_version, rt.kind
        if rt.kind in STATUS_SUBRESOURCE:
            if "status" in current:
                new["status"] = current["status"]
            else:
                new.pop("status", None)
        defaults.apply_defaults(rt.kind, new)
        if rt.kind in GENERATION:
            gen = cur_meta.get("generation", 1)
            if _spec_of(new) != _spec_of(current):
                gen += 1
            meta["generation"] = gen
        return new

    async def update(self, rt: ResourceType, ns: str | None, name: str, body: dict,
                     subresource: str = "", manager: str = "", dry_run: bool = False) -> dict:
        meta = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
        if meta.get("name") and meta["name"] != name:
            raise ApiError(400, f"the name of the object ({meta['name']}) does not match the "
                                f"name on the URL ({name})")
        if rt.namespaced and meta.get("namespace") and meta["namespace"] != ns:
            raise ApiError(400, "the namespace of the provided object does not match the "
                                "namespace sent on the request")
        want_rv = meta.get("resourceVersion")
        try:
            item, cached = await self._read_for_write(rt, ns, name)
            return await self._modify(rt, ns, name, lambda cur: copy_json(body), subresource,
                                      manager, dry_run, item, precondition_rv=want_rv,
                                      cached=cached and not dry_run)
        except ApiError as exc:  # gone (also: deleted behind a cached copy) → create it
            if exc.code == 404 and rt.kind in CREATE_ON_UPDATE and not subresource:
                body.setdefault("metadata", {})["name"] = name
                return await self.create(rt, ns, body, manager, dry_run)
            raise

    async def patch(self, rt: ResourceType, ns: str | None, name: str,
                    mutate: Callable[[dict], dict], subresource: str = "", manager: str = "",
                    dry_run: bool = False, operation: str = "Update") -> dict:
        item, cached = await self._read_for_write(rt, ns, name)
        return await self._modify(rt, ns, name, mutate, subresource, manager, dry_run, item,
                                  operation=operation, patching=True,
                                  cached=cached and not dry_run)

    async def bind(self, rt: ResourceType, ns: str, name: str, node: str,
                   uid: str | None = None) -> dict:
        """pods/binding: spec.nodeName and the PodScheduled condition in ONE compare-and-
        swap write, as Kubernetes' assignPod does (and, like it, no managedFields entry)."""
        def assign(pod: dict) -> dict:
            meta, spec = pod["metadata"], pod.setdefault("spec", {})
            if uid and uid != meta.get("uid"):
                raise ApiError(409, f"Precondition failed: UID in precondition: {uid}, "
                                    f"UID in object meta: {meta.get('uid')}", "Conflict")
            if spec.get("nodeName"):
                raise ApiError(409, f'pod {name} is already assigned to node '
                                    f'"{spec["nodeName"]}"', "Conflict")
            if meta.get("deletionTimestamp"):
                raise ApiError(409, f"pod {name} is being deleted, cannot be assigned to "
                                    "a host", "Conflict")
            spec["nodeName"] = node
            status = pod.setdefault("status", {})
            status["conditions"] = [
                *(c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"),
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now_rfc3339(),
                 "lastProbeTime": None}]
            return pod

        item, cached = await self._read_for_write(rt, ns, name)
        return await self._modify(rt, ns, name, assign, "binding", "", False, item,
                                  cached=cached)

    async def _modify(self, rt, ns, name, mutate, subresource, manager, dry_run, item,
                      precondition_rv=None, operation="Update", patching=False,
                      cached=False) -> dict:
        """Read-modify-write with compare-and-swap. `cached`: item came from the watch
        cache; only a successful write is final then, any other outcome (an error, a
        no-op) is decided again on etcd's item unless that is the same revision."""
        for _ in range(CAS_RETRIES):
            current = decode(item)
            try:
                if precondition_rv and precondition_rv != str(item.mod_revision):
                    raise conflict(rt, name)
                proposed = mutate(decode(item))  # a second private copy (cheaper than deepcopy)
                if not isinstance(proposed, dict):
                    raise ApiError(422, "the patched object is not a JSON object")
                if patching:
                    prv = (proposed.get("metadata") or {}).get("resourceVersion")
                    if prv and prv != str(item.mod_revision):
                        raise conflict(rt, name)
                new = self._merge_for_write(rt, current, proposed, subresource)
                causes = validate(rt.kind, new)
                if causes:
                    raise invalid(rt, name, causes)
            except ApiError:
                if cached:
                    cached, fresh = False, await self._fresher(rt, ns, name, item)
                    if fresh is not None:
                        item = fresh
                        continue
                raise
            if manager and operation == "Update":
                managedfields.record_update(new["metadata"], manager, rt.api_version,
                                            _owned_view(current), _owned_view(new),
                                            now_rfc3339(), subresource)
            if _same(new, current):
                if cached:
                    cached, fresh = False, await self._fresher(rt, ns, name, item)
                    if fresh is not None:
                        item = fresh
                        continue
                return current  # a no-op update writes nothing
            if dry_run:
                return new
            allocated = []
            if rt.kind == "Service" and not subresource:
                allocated = await self._allocate_service(rt, new, current)
            meta = new["metadata"]
            if meta.get("deletionTimestamp") and not meta.get("finalizers") and \
                    rt.kind != "Pod" and not _namespace_finalizers(new):
                ok, rev, now_item = await self.storage.delete(rt.key(ns, name), item.mod_revision)
                if ok:
                    if rt.kind == "Namespace":
                        await self._delete_namespace_contents(name)
                    return new
            else:
                ok, rev, now_item = await self.storage.update(rt.key(ns, name), encode(new),
                                                              item.mod_revision)
                if ok:
                    new["metadata"]["resourceVersion"] = str(rev)
                    return new
            await self._release(allocated)
            if now_item is None:
                raise not_found(rt, name)
            if precondition_rv and not cached:
                raise conflict(rt, name)
            item, cached = now_item, False
        raise conflict(rt, name)

    # ------------------------------------------------------------ delete

    async def delete(self, rt: ResourceType, ns: str | None, name: str,
                     options: dict | None = None, dry_run: bool = False) -> tuple[dict, bool]:
        """(the object, whether it is gone now) — graceful pods and objects with
        finalizers stay, marked with a deletionTimestamp."""
        options = options or {}
        pre = options.get("preconditions") or {}
        if rt.kind == "Namespace" and name in PROTECTED_NAMESPACES:
            raise ApiError(403, f'namespaces "{name}" is forbidden: this namespace may not be '
                                "deleted", "Forbidden")
        for _ in range(CAS_RETRIES):
            item = await self._read(rt, ns, name)
            obj = decode(item)
            meta = obj["metadata"]
            if pre.get("uid") and pre["uid"] != meta.get("uid"):
                raise ApiError(409, f"Precondition failed: UID in precondition: {pre['uid']}, "
                                    f"UID in object meta: {meta.get('uid')}", "Conflict")
            if pre.get("resourceVersion") and pre["resourceVersion"] != meta["resourceVersion"]:
                raise conflict(rt, name)
            grace = options.get("gracePeriodSeconds")
            graceful = None
            if rt.kind == "Pod":
                graceful = self._pod_grace(obj, grace)
            if meta.get("finalizers") or graceful or _namespace_finalizers(obj):
                if meta.get("deletionTimestamp") and not graceful:
                    return obj, False
                marked = copy.deepcopy(obj)
                at = datetime.now(UTC) + timedelta(seconds=graceful or 0)
                if not (meta.get("deletionTimestamp") and graceful
                        and graceful >= meta.get("deletionGracePeriodSeconds", 0)):
                    marked["metadata"]["deletionTimestamp"] = now_rfc3339(at)
                    marked["metadata"]["deletionGracePeriodSeconds"] = graceful or 0
                if rt.kind == "Namespace":
                    marked.setdefault("status", {})["phase"] = "Terminating"
                if _same(marked, obj) or dry_run:
                    return marked, False
                ok, rev, _ = await self.storage.update(rt.key(ns, name), encode(marked),
                                                       item.mod_revision)
                if ok:
                    marked["metadata"]["resourceVersion"] = str(rev)
                    return marked, False
                continue
            if dry_run:
                return obj, True
            ok, rev, _ = await self.storage.delete(rt.key(ns, name), item.mod_revision)
            if ok:
                if rt.kind == "Service":
                    await self._release_service(obj)
                if rt.kind == "Namespace":
                    await self._delete_namespace_contents(name)
                meta["resourceVersion"] = str(rev)
                return obj, True
        raise conflict(rt, name)

    @staticmethod
    def _pod_grace(pod: dict, requested) -> int:
        """Seconds of graceful termination a pod delete gets (0 = delete now)."""
        if not (pod.get("spec") or {}).get("nodeName"):
            return 0  # never ran anywhere: nothing to stop
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed"):
            return 0
        if requested is not None:
            grace = int(requested)
        else:
            grace = int((pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))
        current = pod["metadata"].get("deletionGracePeriodSeconds")
        if current is not None and pod["metadata"].get("deletionTimestamp"):
            grace = min(grace, current)
        return max(grace, 0)

    async def _delete_namespace_contents(self, ns: str) -> None:
        for rt in RESOURCES:
            if not rt.namespaced:
                continue
            items, _, _ = await self.storage.list(rt.prefix(ns))
            for item in items:
                await self.storage.delete(item.key, item.mod_revision)
                if rt.kind == "Service":
                    await self._release_service(json.loads(item.value))

    # ------------------------------------------------------------ bootstrap

    async def ensure(self, api_version: str, kind: str, obj: dict) -> None:
        rt = by_kind(api_version, kind)
        ns = obj.get("metadata", {}).get("namespace")
        if await self.storage.get(rt.key(ns, obj["metadata"]["name"])) is None:
            try:
                await self.create(rt, ns, copy.deepcopy(obj))
            except ApiError as exc:
                if exc.code != 409:
                    raise


def _namespace_finalizers(obj: dict) -> list:
    """A Namespace's spec.finalizers: while any is left, a deleted namespace stays
    Terminating (the namespace controller empties it, then finalizes)."""
    if obj.get("kind") != "Namespace":
        return []
    return (obj.get("spec") or {}).get("finalizers") or []


def _spec_of(obj: dict) -> dict:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def _owned_view(obj: dict) -> dict:
    """The parts of an object field managers own (not the server-set metadata)."""
    meta = {k: v for k, v in (obj.get("metadata") or {}).items()
            if k in ("labels", "annotations", "finalizers", "ownerReferences")}
    out = {k: v for k, v in obj.items() if k not in ("metadata", "apiVersion", "kind")}
    if meta:
        out["metadata"] = meta
    return out


def _without_status(obj: dict) -> dict:
    out = {k: v for k, v in obj.items() if k != "status"}
    meta = {k: v for k, v in (out.get("metadata") or {}).items()
            if k in ("labels", "annotations", "finalizers", "ownerReferences")}
    if meta:
        out["metadata"] = meta
    else:
        out.pop("metadata", None)
    return out
