"""PATCH bodies applied to an object: JSON merge (RFC 7386), JSON patch (RFC 6902) and
Kubernetes strategic merge. Pure functions of (object, patch) → new object; they never
mutate their inputs (unless told the object is a private copy, `copy_original=False`:
then they change it in place and skip the copy, which dominates a write's CPU). The
object is copied once, then merged in place.

Strategic merge rules implemented (the subset kubectl and controllers send):
- maps merge recursively; a `null` value deletes the key;
  `$patch: replace` replaces the map, `$patch: delete` removes it;
  `$retainKeys: [...]` drops keys not listed.
- lists of maps with a merge key (containers by name, ports by containerPort/port, ...)
  merge item by item; an item `{"<key>": v, "$patch": "delete"}` removes that item;
  an item `{"$patch": "replace"}` makes the list replace the original.
- `$setElementOrder/<field>` orders the merged list (listed items first, in that order,
  then items only the original had, in their original order).
- `$deleteFromPrimitiveList/<field>` removes values from a list of scalars;
  lists of scalars with merge strategy (finalizers) are unions.
- every other list is replaced.
"""

from __future__ import annotations

import copy
import json

from .errors import ApiError

# Lists merged element-wise, by the element's key field (k8s.io/api patchMergeKey).
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "imagePullSecrets": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "conditions": "type",
    "addresses": "type",
    "ownerReferences": "uid",
    "hostAliases": "ip",
    "resourceClaims": "name",
    "topologySpreadConstraints": "topologyKey",
}
# Lists of scalars merged as sets.
PRIMITIVE_MERGE = {"finalizers"}
# Lists that are atomic even though their items look mergeable (the parent is atomic).
ATOMIC_PARENTS = {"subsets"}


class PatchError(ApiError):
    def __init__(self, message: str, code: int = 422):
        super().__init__(code, message)


def merge_key_for(field: str, items: list) -> str | None:
    if field == "ports":
        sample = next((i for i in items if isinstance(i, dict)), {})
        return "containerPort" if "containerPort" in sample else "port"
    return MERGE_KEYS.get(field)


# ---------------------------------------------------------------- JSON merge patch


def copy_json(value):
    """A private deep copy of JSON data (a C round trip: ~2x faster than deepcopy)."""
    return json.loads(json.dumps(value))


def json_merge(target, patch, copy_original: bool = True, patch_is_private: bool = False):
    """RFC 7386. `patch_is_private`: the patch is the caller's throwaway copy (freshly
    parsed), so its values move into the result uncopied."""
    if not isinstance(patch, dict):
        return patch if patch_is_private else copy.deepcopy(patch)
    if not isinstance(target, dict):
        target = {}
    elif copy_original:
        target = copy_json(target)
    _json_merge_into(target, patch, patch_is_private)
    return target


def _json_merge_into(result: dict, patch: dict, patch_is_private: bool) -> None:
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            child = result.get(key)
            if not isinstance(child, dict):
                child = result[key] = {}
            _json_merge_into(child, value, patch_is_private)
        else:
            result[key] = value if patch_is_private else copy.deepcopy(value)


# ---------------------------------------------------------------- JSON patch


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"JSON patch path {path!r} must start with '/'")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _parent(doc, tokens: list[str], path: str):
    cur = doc
    for tok in tokens[:-1]:
        if isinstance(cur, dict) and tok in cur:
            cur = cur[tok]
        elif isinstance(cur, list) and tok.isdigit() and int(tok) < len(cur):
            cur = cur[int(tok)]
        else:
            raise PatchError(f"JSON patch path {path!r}: {tok!r} does not exist")
    return cur


def _get(doc, path: str):
    tokens = _pointer(path)
    if not tokens:
        return doc
    parent, last = _parent(doc, tokens, path), tokens[-1]
    if isinstance(parent, dict) and last in parent:
        return parent[last]
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent[int(last)]
    raise PatchError(f"JSON patch path {path!r} does not exist")


def _remove(doc, path: str):
    tokens = _pointer(path)
    parent, last = _parent(doc, tokens, path), tokens[-1]
    if isinstance(parent, dict) and last in parent:
        return parent.pop(last)
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent.pop(int(last))
    raise PatchError(f"JSON patch remove: path {path!r} does not exist")


def _add(doc, path: str, value, replace: bool = False):
    tokens = _pointer(path)
    if not tokens:
        return value
    parent, last = _parent(doc, tokens, path), tokens[-1]
    if isinstance(parent, dict):
        if replace and last not in parent:
            raise PatchError(f"JSON patch replace: path {path!r} does not exist")
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-" and not replace:
            parent.append(value)
        elif last.isdigit() and int(last) <= len(parent) - (1 if replace else 0):
            if replace:
                parent[int(last)] = value
            else:
                parent.insert(int(last), value)
        else:
            raise PatchError(f"JSON patch path {path!r}: index out of range")
    else:
        raise PatchError(f"JSON patch path {path!r}: parent is not an object or array")
    return doc


def json_patch(target, operations, copy_original: bool = True):
    if not isinstance(operations, list):
        raise PatchError("a JSON patch must be a list of operations", 400)
    doc = copy_json(target) if copy_original else target
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError(f"invalid JSON patch operation {op!r}: needs 'op' and 'path'", 400)
        kind, path = op["op"], op["path"]
        if kind == "add":
            doc = _add(doc, path, copy.deepcopy(op.get("value")))
        elif kind == "remove":
            _remove(doc, path)
        elif kind == "replace":
            doc = _add(doc, path, copy.deepcopy(op.get("value")), replace=True)
        elif kind in ("move", "copy"):
            if "from" not in op:
                raise PatchError(f"JSON patch {kind} needs 'from'", 400)
            value = _remove(doc, op["from"]) if kind == "move" else copy.deepcopy(
                _get(doc, op["from"]))
            doc = _add(doc, path, value)
        elif kind == "test":
            if _get(doc, path) != op.get("value"):
                raise PatchError(f"JSON patch test failed at {path!r}")
        else:
            raise PatchError(f"unknown JSON patch operation {kind!r}", 400)
    return doc


# ---------------------------------------------------------------- strategic merge


def strategic_merge(original, patch, copy_original: bool = True):
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if not isinstance(original, dict):
        original = {}
    elif copy_original:
        original = copy_json(original)
    return _merge_map(original, patch)


def _merge_map(original: dict, patch: dict) -> dict:
    """Merge patch into original (a private copy, changed in place)."""
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return None  # type: ignore[return-value]
    result = original
    retain = patch.get("$retainKeys")
    orders = {k.split("/", 1)[1]: v for k, v in patch.items()
              if k.startswith("$setElementOrder/")}
    deletions = {k.split("/", 1)[1]: v for k, v in patch.items()
                 if k.startswith("$deleteFromPrimitiveList/")}
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            merged = _merge_map(result.get(key) if isinstance(result.get(key), dict) else {},
                                value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list):
            result[key] = _merge_list(key, result.get(key), value)
        else:
            result[key] = value
    for key, values in deletions.items():
        if isinstance(result.get(key), list):
            result[key] = [v for v in result[key] if v not in values]
    for key, order in orders.items():
        if isinstance(result.get(key), list):
            result[key] = _apply_order(key, result[key], order)
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _merge_list(field: str, original, patch: list) -> list:
    original = original if isinstance(original, list) else []
    if any(isinstance(i, dict) and i.get("$patch") == "replace" for i in patch):
        return [copy.deepcopy(i) for i in patch
                if not (isinstance(i, dict) and i.get("$patch") == "replace")]
    if field in PRIMITIVE_MERGE:
        result = list(original)
        result.extend(v for v in patch if v not in result)
        return result
    key = merge_key_for(field, patch + original)
    if key is None or not all(isinstance(i, dict) for i in patch):
        return [_strip_directives(i) for i in patch]
    result = original  # a private copy
    for item in patch:
        if key not in item:
            raise PatchError(f"strategic merge patch: an item of {field!r} lacks its merge "
                             f"key {key!r}")
        idx = next((n for n, o in enumerate(result)
                    if isinstance(o, dict) and o.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                result.pop(idx)
            continue
        if idx is None:
            result.append(_strip_directives(item))
        else:
            result[idx] = _merge_map(result[idx], item)
    return result


def _strip_directives(value):
    if isinstance(value, dict):
        return {k: _strip_directives(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [_strip_directives(v) for v in value]
    return value


def _apply_order(field: str, items: list, order: list) -> list:
    if not order:
        return items
    if not isinstance(order[0], dict):
        ranked = [v for v in order if v in items]
        return ranked + [v for v in items if v not in ranked]
    key = next(iter(order[0]))
    pos = {o.get(key): n for n, o in enumerate(order) if isinstance(o, dict)}
    listed = sorted((i for i in items if isinstance(i, dict) and i.get(key) in pos),
                    key=lambda i: pos[i.get(key)])
    rest = [i for i in items if not (isinstance(i, dict) and i.get(key) in pos)]
    return listed + rest


# ---------------------------------------------------------------- dispatch

PATCH_TYPES = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
    "application/apply-patch+json": "apply",
}


def apply_patch(kind: str, original: dict, body: bytes, copy_original: bool = True):
    """Apply a JSON-encoded patch of the given type (json / merge / strategic); with
    `copy_original=False` the original is the caller's private copy, changed in place."""
    try:
        patch = json.loads(body)
    except ValueError as exc:
        raise ApiError(400, f"the patch body is not valid JSON: {exc}") from exc
    if kind == "json":
        return json_patch(original, patch, copy_original)
    if not isinstance(patch, dict):
        raise ApiError(400, "a merge patch must be a JSON object")
    if kind == "merge":  # the patch was parsed just now: nobody else holds it
        return json_merge(original, patch, copy_original, patch_is_private=True)
    return strategic_merge(original, patch, copy_original)
