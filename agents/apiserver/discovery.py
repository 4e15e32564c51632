"""Discovery documents (legacy and aggregated v2) and OpenAPI v3 documents, all derived
from the resource table. Pure."""

from __future__ import annotations

import hashlib
import json

from .patch import MERGE_KEYS, PRIMITIVE_MERGE
from .resources import GROUP_VERSIONS, ResourceType, in_group_version
from .schema import KINDS

AGGREGATED_TYPE = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"

SUBRESOURCE_KINDS = {
    "status": (None, ["get", "patch", "update"]),
    "scale": (("autoscaling", "v1", "Scale"), ["get", "patch", "update"]),
    "binding": (("", "v1", "Binding"), ["create"]),
    "eviction": (("policy", "v1", "Eviction"), ["create"]),
    "log": (("", "v1", "Pod"), ["get"]),
    "exec": (("", "v1", "PodExecOptions"), ["create", "get"]),
    "finalize": (None, ["update"]),
}


def _sub_kind(rt: ResourceType, sub: str) -> tuple[tuple[str, str, str], list[str]]:
    gvk, verbs = SUBRESOURCE_KINDS[sub]
    return gvk or (rt.group, rt.version, rt.kind), verbs


# ---------------------------------------------------------------- legacy discovery


def api_versions(server_address: str) -> dict:
    return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
        {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


def _group(name: str) -> dict:
    versions = [{"groupVersion": f"{g}/{v}", "version": v} for g, v in GROUP_VERSIONS
                if g == name]
    return {"name": name, "versions": versions, "preferredVersion": versions[0]}


def api_group_list() -> dict:
    groups = list(dict.fromkeys(g for g, _ in GROUP_VERSIONS if g))
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [_group(g) for g in groups]}


def api_group(name: str) -> dict | None:
    if not any(g == name for g, _ in GROUP_VERSIONS):
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(name)}


def api_resource_list(group: str, version: str) -> dict | None:
    types = in_group_version(group, version)
    if not types:
        return None
    resources = []
    for rt in types:
        entry = {"name": rt.plural, "singularName": rt.singular, "namespaced": rt.namespaced,
                 "kind": rt.kind, "verbs": list(rt.verbs),
                 "storageVersionHash": hashlib.sha256(rt.kind.encode()).hexdigest()[:11]}
        if rt.short_names:
            entry["shortNames"] = list(rt.short_names)
        if rt.categories:
            entry["categories"] = list(rt.categories)
        resources.append(entry)
        for sub in rt.subresources:
            (g, v, kind), verbs = _sub_kind(rt, sub)
            sub_entry = {"name": f"{rt.plural}/{sub}", "singularName": "",
                         "namespaced": rt.namespaced, "kind": kind, "verbs": verbs}
            if g != rt.group or v != rt.version:
                sub_entry.update({"group": g, "version": v})
            resources.append(sub_entry)
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
            "resources": resources}


# ---------------------------------------------------------------- aggregated discovery


def _aggregated_resource(rt: ResourceType) -> dict:
    entry = {
        "resource": rt.plural,
        "responseKind": {"group": rt.group, "version": rt.version, "kind": rt.kind},
        "scope": "Namespaced" if rt.namespaced else "Cluster",
        "singularResource": rt.singular,
        "verbs": list(rt.verbs),
    }
    if rt.short_names:
        entry["shortNames"] = list(rt.short_names)
    if rt.categories:
        entry["categories"] = list(rt.categories)
    subs = []
    for sub in rt.subresources:
        (g, v, kind), verbs = _sub_kind(rt, sub)
        subs.append({"subresource": sub, "responseKind": {"group": g, "version": v,
                                                          "kind": kind}, "verbs": verbs})
    if subs:
        entry["subresources"] = subs
    return entry


def aggregated(legacy: bool) -> dict:
    """The APIGroupDiscoveryList for /api (legacy=True) or /apis."""
    groups: dict[str, list] = {}
    for g, v in GROUP_VERSIONS:
        if (g == "") != legacy:
            continue
        groups.setdefault(g, []).append({
            "version": v,
            "resources": [_aggregated_resource(rt) for rt in in_group_version(g, v)],
            "freshness": "Current",
        })
    return {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2",
            "metadata": {}, "items": [{"metadata": {"name": g}, "versions": vs}
                                      for g, vs in groups.items()]}


# ---------------------------------------------------------------- OpenAPI v3


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _schema_name(group: str, version: str, kind: str) -> str:
    pkg = {"": "core", "apps": "apps", "coordination.k8s.io": "coordination",
           "authorization.k8s.io": "authorization"}.get(group, group)
    return f"io.k8s.api.{pkg}.{version}.{kind}"


def _to_openapi(node, field: str = "") -> dict:
    if isinstance(node, dict):
        return {"type": "object",
                "properties": {k: _to_openapi(v, k) for k, v in node.items()}}
    if isinstance(node, list):
        out = {"type": "array", "items": _to_openapi(node[0])}
        if field in MERGE_KEYS or field == "ports":
            out["x-kubernetes-patch-merge-key"] = MERGE_KEYS.get(field, "containerPort")
            out["x-kubernetes-patch-strategy"] = "merge"
        return out
    simple = {"s": {"type": "string"}, "i": {"type": "integer", "format": "int64"},
              "b": {"type": "boolean"}, "n": {"type": "number"},
              "t": {"type": "string", "format": "date-time"},
              "q": {"x-kubernetes-int-or-string": True},
              "m": {"type": "object", "additionalProperties": {"type": "string"}},
              "o": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
              "l": {"type": "array", "items": {"type": "string"}}}
    out = dict(simple[node])
    if node == "l" and field in PRIMITIVE_MERGE:
        out["x-kubernetes-patch-strategy"] = "merge"
    return out


_PARAM_FIELD_VALIDATION = {"name": "fieldValidation", "in": "query", "schema": {
    "type": "string", "uniqueItems": True}, "description": "Ignore, Warn or Strict"}
_PARAM_DRY_RUN = {"name": "dryRun", "in": "query", "schema": {"type": "string"}}
_PARAM_FIELD_MANAGER = {"name": "fieldManager", "in": "query", "schema": {"type": "string"}}
_PARAM_FORCE = {"name": "force", "in": "query", "schema": {"type": "boolean"}}


def _operation(rt: ResourceType, action: str, ref: str, params: list[dict],
               body_types: list[str] | None = None) -> dict:
    op = {"operationId": f"{action}{rt.kind}", "parameters": params,
          "responses": {"200": {"description": "OK", "content": {
              "application/json": {"schema": {"$ref": ref}}}}},
          "x-kubernetes-action": action,
          "x-kubernetes-group-version-kind": {"group": rt.group, "version": rt.version,
                                              "kind": rt.kind}}
    if body_types:
        op["requestBody"] = {"content": {t: {"schema": {"$ref": ref}} for t in body_types},
                             "required": True}
    return op


def openapi_root() -> dict:
    paths = {}
    for g, v in GROUP_VERSIONS:
        path = _gv_path(g, v)
        digest = hashlib.sha512(json.dumps(openapi_group_version(g, v), sort_keys=True)
                                .encode()).hexdigest()[:32].upper()
        paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest}"}
    return {"paths": paths}


def openapi_group_version(group: str, version: str) -> dict:
    """The OpenAPI v3 document of one group-version. Its PATCH operations deliberately do
    not list strategic-merge-patch bodies: kubectl then computes apply patches from its
    own compiled-in types, which know every merge key."""
    schemas, paths = {}, {}
    write = [_PARAM_DRY_RUN, _PARAM_FIELD_MANAGER, _PARAM_FIELD_VALIDATION]
    for rt in in_group_version(group, version):
        name = _schema_name(group, version, rt.kind)
        schema = _to_openapi(KINDS.get(rt.kind, {"apiVersion": "s", "kind": "s",
                                                 "metadata": "o"}))
        schema["x-kubernetes-group-version-kind"] = [{"group": group, "kind": rt.kind,
                                                      "version": version}]
        schemas[name] = schema
        ref = f"#/components/schemas/{name}"
        base = f"/{_gv_path(group, version)}"
        if rt.namespaced:
            collection = f"{base}/namespaces/{{namespace}}/{rt.plural}"
        else:
            collection = f"{base}/{rt.plural}"
        paths[collection] = {
            "get": _operation(rt, "list", ref, []),
            "post": _operation(rt, "post", ref, write, ["*/*"]),
        }
        paths[f"{collection}/{{name}}"] = {
            "get": _operation(rt, "get", ref, []),
            "put": _operation(rt, "put", ref, write, ["*/*"]),
            "patch": _operation(rt, "patch", ref, write + [_PARAM_FORCE], [
                "application/json-patch+json", "application/merge-patch+json",
                "application/apply-patch+yaml"]),
            "delete": _operation(rt, "delete", ref, [_PARAM_DRY_RUN]),
        }
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.32.0"},
            "paths": paths, "components": {"schemas": schemas}}
