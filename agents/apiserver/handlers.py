"""HTTP handlers for resource paths: CRUD, list, watch, patch and subresources.

Paths (after /api/v1 or /apis/<group>/<version>):
  <plural>                                   collection (all namespaces) / cluster-scoped
  <plural>/<name>[/<sub>]                    cluster-scoped object
  namespaces/<ns>/<plural>                   namespaced collection
  namespaces/<ns>/<plural>/<name>[/<sub>]    namespaced object
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import yaml
from aiohttp import web

from . import auth, managedfields, pbdecode, resources, tables
from .errors import ApiError, bad_request, conflict, expired
from .patch import PATCH_TYPES, apply_patch, strategic_merge
from .registry import Registry, now_rfc3339, raw_with_rv
from .resources import ResourceType
from .selectors import (
    parse_field_selector,
    parse_label_selector,
)
from .storage import Compacted, StorageError
from .validation import check_unknown_fields
from .watchcache import SlowWatcher, WatchCache
from .watchstream import WatchWriter, convert_event

JSON = "application/json"
PROTOBUF = "application/vnd.kubernetes.protobuf"
DEFAULT_WATCH_TIMEOUT = 1800
BOOKMARK_EVERY = 5.0


def dumps(obj) -> str:
    return json.dumps(obj, separators=(",", ":"))


def respond(obj, status: int = 200, warnings: list[str] = ()) -> web.Response:
    headers = {}
    if warnings:
        headers["Warning"] = ", ".join(f'299 - "{w}"' for w in warnings)
    return web.Response(text=dumps(obj), status=status, content_type=JSON, headers=headers)


def truthy(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1", "yes")


@dataclass(frozen=True)
class Target:
    rt: ResourceType
    namespace: str | None
    name: str | None
    subresource: str


def parse_target(group: str, version: str, rest: str) -> Target:
    parts = [p for p in rest.split("/") if p]
    ns = None
    if len(parts) >= 3 and parts[0] == "namespaces" and parts[2] not in ("status", "finalize"):
        ns, parts = parts[1], parts[2:]
    if not parts or len(parts) > 3:
        raise ApiError(404, f"the server could not find the requested resource ({rest})",
                       "NotFound")
    rt = resources.find(group, version, parts[0])
    if rt is None:
        raise ApiError(404, f"the server could not find the requested resource "
                            f"({parts[0]})", "NotFound")
    if ns is not None and not rt.namespaced:
        raise ApiError(404, f"{rt.plural} is not namespaced", "NotFound")
    name = parts[1] if len(parts) > 1 else None
    sub = parts[2] if len(parts) > 2 else ""
    if sub and sub not in rt.subresources:
        raise ApiError(404, f"the server could not find the requested resource "
                            f"({rt.plural}/{sub})", "NotFound")
    return Target(rt, ns, name, sub)


def verb_for(method: str, t: Target, query) -> str:
    if method == "GET":
        if t.name:
            return "get"
        return "watch" if truthy(query.get("watch")) else "list"
    if method == "POST":
        return "create"
    if method == "PUT":
        return "update"
    if method == "PATCH":
        return "patch"
    if method == "DELETE":
        return "delete" if t.name else "deletecollection"
    raise ApiError(405, f"method {method} is not allowed")


def _content_type(request: web.Request) -> str:
    return (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()


async def read_body(request: web.Request) -> bytes:
    return await request.read()  # raises 413 past client_max_size


def decode_object(body: bytes, content_type: str) -> dict:
    if content_type == PROTOBUF:
        return pbdecode.decode(body)
    if content_type in ("", JSON, "*/*"):
        try:
            obj = json.loads(body)
        except ValueError as exc:
            raise bad_request(f"couldn't get version/kind; json parse error: {exc}") from exc
    elif content_type in ("application/yaml", "application/x-yaml", "text/yaml"):
        try:
            obj = yaml.safe_load(body)
        except yaml.YAMLError as exc:
            raise bad_request(f"couldn't parse YAML body: {exc}") from exc
    else:
        raise ApiError(415, f'the body of the request was in an unknown format - accepted '
                            f'media types include: application/json, application/yaml, '
                            f'application/vnd.kubernetes.protobuf (got "{content_type}")',
                       "UnsupportedMediaType")
    if not isinstance(obj, dict):
        raise bad_request("the request body must be a JSON object")
    return obj


def check_kind(rt: ResourceType, obj: dict, kind: str | None = None,
               api_version: str | None = None) -> None:
    kind, api_version = kind or rt.kind, api_version or rt.api_version
    if obj.get("kind") and obj["kind"] != kind:
        raise bad_request(f"the kind in the data ({obj['kind']}) does not match the expected "
                          f"kind ({kind})")
    if obj.get("apiVersion") and obj["apiVersion"] != api_version:
        raise bad_request(f"the API version in the data ({obj['apiVersion']}) does not match "
                          f"the expected API version ({api_version})")


def field_validation(query) -> str:
    mode = query.get("fieldValidation", "Warn")
    if mode not in ("Strict", "Warn", "Ignore"):
        raise bad_request(f'fieldValidation must be one of "Ignore", "Warn" or "Strict", '
                          f'not "{mode}"')
    return mode


def manager_of(request: web.Request) -> str:
    manager = request.query.get("fieldManager")
    if manager:
        return manager
    agent = request.headers.get("User-Agent", "unknown")
    return agent.split("/")[0][:128] or "unknown"


def table_include(request: web.Request) -> str | None:
    """includeObject mode if the client wants a Table, else None."""
    if "as=Table" not in request.headers.get("Accept", ""):
        return None
    return request.query.get("includeObject", "Metadata")


def scale_of(obj: dict) -> dict:
    meta = obj["metadata"]
    selector = (obj.get("spec") or {}).get("selector") or {}
    sel_text = ",".join(f"{k}={v}" for k, v in (selector.get("matchLabels") or {}).items())
    return {"kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                               "creationTimestamp") if k in meta},
            "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 1)},
            "status": {"replicas": (obj.get("status") or {}).get("replicas", 0),
                       "selector": sel_text}}


class ResourceHandlers:
    def __init__(self, registry: Registry, caches: dict[str, WatchCache], proxy=None):
        self.registry = registry
        self.caches = caches
        self.proxy = proxy

    # ------------------------------------------------------------ entry point

    async def handle(self, request: web.Request) -> web.StreamResponse:
        group = request.match_info.get("group", "")
        version = request.match_info["version"]
        t = parse_target(group, version, request.match_info.get("rest", ""))
        verb = verb_for(request.method, t, request.query)
        if t.subresource in ("log",) and request.method != "GET":
            raise ApiError(405, f"method {request.method} is not allowed on pods/log")
        user: auth.User = request["user"]
        attrs = auth.Attributes(verb, t.rt.plural, t.subresource, t.namespace or "",
                                t.name or "", request.path, t.rt.group)
        pod_node = None
        if (t.rt.kind == "Pod" and t.name and user.name.startswith("system:node:")
                and not auth.authorize(user, attrs)):
            with contextlib.suppress(ApiError):
                pod = await self.registry.get(t.rt, t.namespace, t.name)
                pod_node = (pod.get("spec") or {}).get("nodeName")
        if t.rt.kind == "SelfSubjectAccessReview":
            return await self.access_review(request, t, user)
        auth.require(user, attrs, pod_node)
        if t.subresource in ("log", "exec"):
            if self.proxy is None:
                raise ApiError(503, "no kubelet proxy configured", "ServiceUnavailable")
            return await self.proxy.handle(request, t, self.registry)
        if t.name is None:
            if request.method == "GET":
                if truthy(request.query.get("watch")):
                    return await self.watch(request, t)
                return await self.list(request, t)
            if request.method == "POST":
                return await self.create(request, t)
            if request.method == "DELETE":
                return await self.delete_collection(request, t)
        else:
            if t.subresource == "scale":
                return await self.scale(request, t)
            if t.subresource == "binding":
                return await self.bind(request, t)
            if t.subresource == "eviction":
                return await self.evict(request, t)
            if request.method == "GET":
                return await self.get(request, t)
            if request.method == "PUT":
                return await self.update(request, t)
            if request.method == "PATCH":
                return await self.patch(request, t)
            if request.method == "DELETE":
                return await self.delete(request, t)
        raise ApiError(405, f"method {request.method} is not allowed here", "MethodNotAllowed")

    # ------------------------------------------------------------ reads

    def _render(self, request, t: Target, obj: dict) -> web.Response:
        include = table_include(request)
        if include:
            return respond(tables.table(t.rt.kind, [obj], datetime.now(UTC),
                                        obj["metadata"].get("resourceVersion", ""), include))
        return respond(obj)

    async def get(self, request, t: Target) -> web.Response:
        obj = await self.registry.get(t.rt, t.namespace, t.name)
        return self._render(request, t, obj)

    def _selectors(self, request, t: Target):
        return (parse_label_selector(request.query.get("labelSelector")),
                parse_field_selector(request.query.get("fieldSelector"), t.rt.kind))

    async def list(self, request, t: Target) -> web.Response:
        labels, fields = self._selectors(request, t)
        try:
            limit = int(request.query.get("limit") or 0)
        except ValueError as exc:
            raise bad_request("limit must be an integer") from exc
        if not labels and not fields and not table_include(request):
            return await self._list_raw(request, t, limit)
        items, rv, cont = await self.registry.list(
            t.rt, t.namespace, labels, fields, limit, request.query.get("continue", ""),
            request.query.get("resourceVersion", ""))
        include = table_include(request)
        if include:
            return respond(tables.table(t.rt.kind, items, datetime.now(UTC), rv, include, cont))
        meta = {"resourceVersion": rv}
        if cont:
            meta["continue"] = cont
        return respond({"kind": t.rt.list_kind, "apiVersion": t.rt.api_version,
                        "metadata": meta, "items": items})

    async def _list_raw(self, request, t: Target, limit: int) -> web.Response:
        """An unfiltered JSON list spliced from the stored bytes (no decode/encode)."""
        items, rv, cont = await self.registry.list_items(
            t.rt, t.namespace, (), limit, request.query.get("continue", ""),
            request.query.get("resourceVersion", ""))
        meta = {"resourceVersion": rv}
        if cont:
            meta["continue"] = cont
        head = dumps({"kind": t.rt.list_kind, "apiVersion": t.rt.api_version,
                      "metadata": meta})[:-1].encode()
        body = head + b',"items":[' + b",".join(raw_with_rv(i) for i in items) + b"]}"
        return web.Response(body=body, content_type=JSON)

    # ------------------------------------------------------------ watch

    async def watch(self, request, t: Target) -> web.StreamResponse:
        labels, fields = self._selectors(request, t)
        include = table_include(request)
        bookmarks = truthy(request.query.get("allowWatchBookmarks"))
        try:
            timeout = float(request.query.get("timeoutSeconds") or DEFAULT_WATCH_TIMEOUT)
            rv_text = request.query.get("resourceVersion", "")
            from_rev = int(rv_text) if rv_text not in ("", "0") else None
        except ValueError as exc:
            raise bad_request("resourceVersion and timeoutSeconds must be integers") from exc
        initial: list[dict] = []
        if from_rev is None:
            initial, rv, _ = await self.registry.list(t.rt, t.namespace, labels, fields)
            from_rev = int(rv)
        cache = self.caches[t.rt.plural]
        sub = await cache.subscribe(from_rev, t.rt.prefix(t.namespace), bookmarks)
        response = web.StreamResponse(headers={"Content-Type": JSON,
                                               "Cache-Control": "no-cache, private"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        writer = WatchWriter(response, t.rt, include)
        unfiltered = not labels and not fields and not include
        deadline = time.monotonic() + timeout
        try:
            for obj in initial:
                await writer.event("ADDED", obj)
            await writer.flush()
            last_rev, last_bookmark = from_rev, time.monotonic()
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(sub.next(), remaining)
                except TimeoutError:
                    break
                except Compacted as exc:
                    await writer.error(expired(f"too old resource version: {from_rev} ({exc})"))
                    break
                except SlowWatcher:
                    break
                except StorageError as exc:  # the stream is open: report in-band, then end
                    await writer.error(ApiError(503, f"storage unavailable: {exc}",
                                                "ServiceUnavailable"))
                    break
                if isinstance(item, int):
                    if bookmarks and (item > last_rev or
                                      time.monotonic() - last_bookmark > BOOKMARK_EVERY):
                        last_rev, last_bookmark = max(item, last_rev), time.monotonic()
                        await writer.bookmark(last_rev)
                    continue
                for ev in item:
                    if unfiltered:  # the same bytes for every such watcher, no decoding
                        line = ev.raw_line()
                        if line is not None:
                            await writer.raw(line)
                    else:
                        converted = convert_event(ev, labels, fields)
                        if converted:
                            await writer.event(*converted, shared=ev)
                    last_rev = max(last_rev, ev.revision)
                await writer.flush()
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            sub.close()
        with contextlib.suppress(Exception):
            await response.write_eof()
        return response

    # ------------------------------------------------------------ writes

    async def _incoming(self, request, t: Target, kind=None, api_version=None):
        body = await read_body(request)
        obj = decode_object(body, _content_type(request))
        check_kind(t.rt, obj, kind, api_version)
        warnings = check_unknown_fields(obj, kind or t.rt.kind, field_validation(request.query))
        return obj, warnings

    async def create(self, request, t: Target) -> web.Response:
        obj, warnings = await self._incoming(request, t)
        user: auth.User = request["user"]
        if t.rt.kind == "Node" and user.name.startswith("system:node:") and \
                "system:masters" not in user.groups:
            wanted = (obj.get("metadata") or {}).get("name")
            if wanted != user.name[len("system:node:"):]:  # like NodeRestriction admission
                raise ApiError(403, f'node "{user.name[len("system:node:"):]}" is not allowed '
                                    f'to create node "{wanted}"', "Forbidden")
        created = await self.registry.create(t.rt, t.namespace, obj, manager_of(request),
                                             dry_run=request.query.get("dryRun") == "All")
        return respond(created, 201, warnings)

    async def update(self, request, t: Target) -> web.Response:
        obj, warnings = await self._incoming(request, t)
        updated = await self.registry.update(t.rt, t.namespace, t.name, obj, t.subresource,
                                             manager_of(request),
                                             dry_run=request.query.get("dryRun") == "All")
        return respond(updated, 200, warnings)

    async def patch(self, request, t: Target) -> web.Response:
        ptype = PATCH_TYPES.get(_content_type(request))
        if ptype is None:
            raise ApiError(415, f"the body of the request was in an unknown format - accepted "
                                f"media types include: {', '.join(PATCH_TYPES)}",
                           "UnsupportedMediaType")
        body = await read_body(request)
        mode = field_validation(request.query)
        dry_run = request.query.get("dryRun") == "All"
        if ptype == "apply":
            return await self._apply(request, t, body, mode, dry_run)
        warnings: list[str] = []

        def mutate(current: dict) -> dict:  # current is the registry's private copy
            result = apply_patch(ptype, current, body, copy_original=False)
            if isinstance(result, dict):
                warnings[:] = check_unknown_fields(result, t.rt.kind, mode)
            return result

        patched = await self.registry.patch(t.rt, t.namespace, t.name, mutate, t.subresource,
                                            manager_of(request), dry_run)
        return respond(patched, 200, warnings)

    async def _apply(self, request, t: Target, body: bytes, mode: str, dry_run: bool):
        manager = request.query.get("fieldManager")
        if not manager:
            raise bad_request("PATCH requests of type application/apply-patch+yaml must "
                              "have fieldManager set")
        try:
            applied = yaml.safe_load(body)
        except yaml.YAMLError as exc:
            raise bad_request(f"error decoding YAML: {exc}") from exc
        if not isinstance(applied, dict):
            raise bad_request("an apply patch must be an object")
        check_kind(t.rt, applied)
        warnings = check_unknown_fields(applied, t.rt.kind, mode)
        applied_set = managedfields.fields_v1(
            {k: v for k, v in applied.items() if k not in ("apiVersion", "kind")})
        try:
            current = await self.registry.get(t.rt, t.namespace, t.name)
        except ApiError as exc:
            if exc.code != 404 or t.subresource:
                raise
            current = None
        if current is None:
            obj = _record_apply(json.loads(json.dumps(applied)), manager, t.rt, applied_set)
            obj["metadata"]["name"] = t.name
            created = await self.registry.create(t.rt, t.namespace, obj, dry_run=dry_run)
            return respond(created, 201, warnings)

        force = truthy(request.query.get("force"))

        def mutate(cur: dict) -> dict:
            conflicts = managedfields.apply_conflicts(cur["metadata"], manager, cur, applied,
                                                      applied_set)
            if conflicts and not force:
                raise apply_conflict_error(t.rt, conflicts)
            if conflicts:
                managedfields.take_over(cur["metadata"], manager, applied_set)
            before = managedfields.applied_fields(cur["metadata"], manager)
            merged = strategic_merge(cur, applied)
            managedfields.remove_unapplied(merged, before, applied_set)
            return _record_apply(merged, manager, t.rt, applied_set)

        patched = await self.registry.patch(t.rt, t.namespace, t.name, mutate, t.subresource,
                                            manager, dry_run, operation="Apply")
        return respond(patched, 200, warnings)

    async def delete(self, request, t: Target) -> web.Response:
        options = await self._delete_options(request)
        obj, gone = await self.registry.delete(t.rt, t.namespace, t.name, options,
                                               dry_run=options.get("dryRun") == ["All"])
        if gone and t.rt.kind != "Pod":
            details = {"name": t.name, "kind": t.rt.plural, "uid": obj["metadata"].get("uid")}
            if t.rt.group:
                details["group"] = t.rt.group
            return respond({"kind": "Status", "apiVersion": "v1", "metadata": {},
                            "status": "Success", "details": details}, 200)
        return respond(obj, 200)

    async def _delete_options(self, request) -> dict:
        body = await read_body(request)  # always consumed: keeps keep-alive working
        options: dict = {}
        if body.strip():
            try:
                options = json.loads(body)
            except ValueError as exc:
                raise bad_request(f"invalid DeleteOptions body: {exc}") from exc
        q = request.query
        if "gracePeriodSeconds" in q:
            try:
                options["gracePeriodSeconds"] = int(q["gracePeriodSeconds"])
            except ValueError as exc:
                raise bad_request("gracePeriodSeconds must be an integer") from exc
        if "propagationPolicy" in q:
            options["propagationPolicy"] = q["propagationPolicy"]
        if q.get("dryRun") == "All":
            options["dryRun"] = ["All"]
        return options

    async def delete_collection(self, request, t: Target) -> web.Response:
        options = await self._delete_options(request)
        labels, fields = self._selectors(request, t)
        items, rv, _ = await self.registry.list(t.rt, t.namespace, labels, fields)
        deleted = []
        for obj in items:
            meta = obj["metadata"]
            with contextlib.suppress(ApiError):
                obj, _ = await self.registry.delete(t.rt, meta.get("namespace"), meta["name"],
                                                    options)
                deleted.append(obj)
        return respond({"kind": t.rt.list_kind, "apiVersion": t.rt.api_version,
                        "metadata": {"resourceVersion": rv}, "items": deleted})

    # ------------------------------------------------------------ access reviews

    async def access_review(self, request, t: Target, user: auth.User) -> web.Response:
        """`kubectl auth can-i`: may the caller do what the review describes?"""
        if request.method != "POST" or t.name:
            raise ApiError(405, "selfsubjectaccessreviews only support create")
        if user.is_anonymous:
            raise ApiError(401, "Unauthorized", "Unauthorized")
        review = decode_object(await read_body(request), _content_type(request))
        check_kind(t.rt, review)
        spec = review.get("spec") or {}
        ra, nra = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
        if ra:
            resource = ra.get("resource", "")
            attrs = auth.Attributes(ra.get("verb", ""), resource, ra.get("subresource", ""),
                                    ra.get("namespace", ""), ra.get("name", ""),
                                    f"/{resource}", ra.get("group", ""))
        elif nra:
            attrs = auth.Attributes(nra.get("verb", "get"), path=nra.get("path", ""))
        else:
            raise ApiError(422, "spec.resourceAttributes or spec.nonResourceAttributes is "
                                "required", "Invalid")
        allowed = auth.authorize(user, attrs)
        review["status"] = {"allowed": allowed}
        review.setdefault("metadata", {})["creationTimestamp"] = None
        review["apiVersion"], review["kind"] = t.rt.api_version, t.rt.kind
        return respond(review, 201)

    # ------------------------------------------------------------ subresources

    async def scale(self, request, t: Target) -> web.Response:
        if request.method == "GET":
            return respond(scale_of(await self.registry.get(t.rt, t.namespace, t.name)))
        body = await read_body(request)
        if request.method == "PUT":
            wanted = decode_object(body, _content_type(request))
            check_kind(t.rt, wanted, "Scale", "autoscaling/v1")

            def mutate(cur: dict) -> dict:
                rv = (wanted.get("metadata") or {}).get("resourceVersion")
                if rv and rv != cur["metadata"]["resourceVersion"]:
                    raise conflict(t.rt, t.name)
                cur.setdefault("spec", {})["replicas"] = (wanted.get("spec") or {}).get(
                    "replicas", 0)
                return cur
        elif request.method == "PATCH":
            ptype = PATCH_TYPES.get(_content_type(request))
            if ptype not in ("json", "merge", "strategic"):
                raise ApiError(415, "unsupported patch type for scale", "UnsupportedMediaType")

            def mutate(cur: dict) -> dict:
                new_scale = apply_patch(ptype, scale_of(cur), body)
                cur.setdefault("spec", {})["replicas"] = (new_scale.get("spec") or {}).get(
                    "replicas", 0)
                return cur
        else:
            raise ApiError(405, f"method {request.method} is not allowed on scale")
        updated = await self.registry.patch(t.rt, t.namespace, t.name, mutate, "",
                                            manager_of(request))
        return respond(scale_of(updated))

    async def bind(self, request, t: Target) -> web.Response:
        if request.method != "POST":
            raise ApiError(405, "only POST is allowed on pods/binding")
        binding = decode_object(await read_body(request), _content_type(request))
        node = (binding.get("target") or {}).get("name")
        if not node:
            raise ApiError(422, "Binding target.name is required", "Invalid")

        want_uid = (binding.get("metadata") or {}).get("uid")
        await self.registry.bind(t.rt, t.namespace, t.name, node, want_uid)
        return respond({"kind": "Status", "apiVersion": "v1", "metadata": {},
                        "status": "Success", "code": 201}, 201)

    async def evict(self, request, t: Target) -> web.Response:
        if request.method != "POST":
            raise ApiError(405, "only POST is allowed on pods/eviction")
        eviction = decode_object(await read_body(request), _content_type(request))
        options = eviction.get("deleteOptions") or {}
        await self.registry.delete(t.rt, t.namespace, t.name, options)
        return respond({"kind": "Status", "apiVersion": "v1", "metadata": {},
                        "status": "Success", "code": 201}, 201)


def apply_conflict_error(rt: ResourceType, conflicts: dict[str, list[str]]) -> ApiError:
    count = sum(len(v) for v in conflicts.values())
    parts = [f'conflict with "{m}" using {rt.api_version}: {p}'
             for m, paths in conflicts.items() for p in paths]
    causes = [{"reason": "FieldManagerConflict", "message": f'conflict with "{m}"',
               "field": p} for m, paths in conflicts.items() for p in paths]
    return ApiError(409, f"Apply failed with {count} conflict{'s' if count > 1 else ''}: "
                         + "\n".join(parts), "Conflict", {"causes": causes})


def _record_apply(obj: dict, manager: str, rt: ResourceType, fields: dict) -> dict:
    managedfields.record(obj.setdefault("metadata", {}), manager, "Apply", rt.api_version,
                         fields, now_rfc3339())
    return obj


__all__ = ["ResourceHandlers", "parse_target", "convert_event"]
