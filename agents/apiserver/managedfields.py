"""managedFields bookkeeping (server-side apply's record of who set what). Pure.

fieldsV1 encodes a set of field paths: `f:<name>` for map fields, `k:{"<key>":v}` for
items of keyed lists, `.` for "the item itself"."""

from __future__ import annotations

import json

from .patch import merge_key_for


def fields_v1(obj, field: str = "") -> dict:
    if isinstance(obj, dict):
        return {f"f:{k}": fields_v1(v, k) for k, v in obj.items()
                if not k.startswith("$") and k not in ("apiVersion", "kind")}
    if isinstance(obj, list) and obj and all(isinstance(i, dict) for i in obj):
        key = merge_key_for(field, obj)
        if key and all(key in i for i in obj):
            return {"k:" + json.dumps({key: i[key]}, separators=(",", ":")):
                    {".": {}, **fields_v1(i)} for i in obj}
    return {}


def record(meta: dict, manager: str, operation: str, api_version: str, fields: dict,
           now: str, subresource: str = "") -> None:
    """Replace this manager's entry for (operation, subresource) with the new field set."""
    entries = [e for e in meta.get("managedFields") or []
               if not (e.get("manager") == manager and e.get("operation") == operation
                       and e.get("subresource", "") == subresource)]
    entry = {"manager": manager, "operation": operation, "apiVersion": api_version,
             "time": now, "fieldsType": "FieldsV1", "fieldsV1": fields}
    if subresource:
        entry["subresource"] = subresource
    entries.append(entry)
    meta["managedFields"] = entries


def applied_fields(meta: dict, manager: str) -> dict:
    for e in meta.get("managedFields") or []:
        if e.get("manager") == manager and e.get("operation") == "Apply":
            return e.get("fieldsV1") or {}
    return {}


def remove_unapplied(obj: dict, before: dict, after: dict) -> None:
    """Delete from obj the fields a manager applied before but no longer applies."""
    for name, sub in before.items():
        if name == ".":
            continue
        if name not in after:
            if name.startswith("f:") and isinstance(obj, dict):
                obj.pop(name[2:], None)
            continue
        if name.startswith("f:") and isinstance(obj, dict):
            child = obj.get(name[2:])
            if isinstance(child, dict):
                remove_unapplied(child, sub, after[name])
            elif isinstance(child, list):
                _remove_items(child, sub, after[name])


def _remove_items(items: list, before: dict, after: dict) -> None:
    for name, sub in before.items():
        if not name.startswith("k:"):
            continue
        key = json.loads(name[2:])
        match = next((i for i in items if isinstance(i, dict)
                      and all(i.get(k) == v for k, v in key.items())), None)
        if match is None:
            continue
        if name not in after:
            items.remove(match)
        else:
            remove_unapplied(match, sub, after[name])


# ---------------------------------------------------------------- field paths and ownership


def leaf_paths(fields: dict, prefix: tuple = ()) -> set[tuple]:
    """The leaves of a fieldsV1 set, as tuples of its tokens."""
    out = set()
    for token, sub in fields.items():
        if token == ".":
            continue
        if sub and any(k != "." for k in sub):
            out |= leaf_paths(sub, prefix + (token,))
        else:
            out.add(prefix + (token,))
    return out


def from_paths(paths: set[tuple]) -> dict:
    fields: dict = {}
    for path in sorted(paths):
        node = fields
        for token in path:
            node = node.setdefault(token, {})
            if token.startswith("k:"):
                node.setdefault(".", {})
    return fields


_MISSING = object()


def value_at(obj, path: tuple):
    cur = obj
    for token in path:
        if token.startswith("f:") and isinstance(cur, dict):
            cur = cur.get(token[2:], _MISSING)
        elif token.startswith("k:") and isinstance(cur, list):
            key = json.loads(token[2:])
            cur = next((i for i in cur if isinstance(i, dict)
                        and all(i.get(k) == v for k, v in key.items())), _MISSING)
        else:
            return _MISSING
        if cur is _MISSING:
            return _MISSING
    return cur


def changed_paths(old: dict, new: dict) -> set[tuple]:
    """Leaf paths of new whose value differs from old's (`changed_paths_by_leaves`,
    computed by walking both objects together and skipping equal subtrees: a kubelet's
    status write changes a few leaves of a large object)."""
    out: set[tuple] = set()
    _diff(old, new, "", (), out)
    return out


def changed_paths_by_leaves(old: dict, new: dict) -> set[tuple]:
    """The definition: every leaf of new's field set, compared by value."""
    return {p for p in leaf_paths(fields_v1(new)) if value_at(old, p) != value_at(new, p)}


def _diff(old, new, field: str, prefix: tuple, out: set) -> None:
    """Add to out the changed leaves under prefix; new is the value there (its fields
    form the leaves, as fields_v1 sees them), old the value at the same path of the old
    object (or _MISSING)."""
    if isinstance(new, dict):
        for k, v in new.items():
            if k.startswith("$") or k in ("apiVersion", "kind"):
                continue
            o = old.get(k, _MISSING) if isinstance(old, dict) else _MISSING
            if o is v or o == v:
                continue  # equal subtrees have equal leaves
            path = prefix + (f"f:{k}",)
            if _has_fields(v, k):
                _diff(o, v, k, path, out)
            else:
                out.add(path)
        return
    # a keyed list (the caller checked _has_fields): one k: token per item
    key = merge_key_for(field, new)
    tokens = ["k:" + json.dumps({key: i[key]}, separators=(",", ":")) for i in new]
    if len(set(tokens)) != len(tokens):  # duplicate keys: use the definition
        before = {} if old is _MISSING else {field: old}
        out |= {prefix + p[1:] for p in changed_paths_by_leaves(before, {field: new})}
        return
    for token, item in zip(tokens, new, strict=True):
        o = value_at(old, (token,)) if isinstance(old, list) else _MISSING
        if o is item or o == item:
            continue
        _diff(o, item, "", prefix + (token,), out)  # an item always has fields (its key)


def _has_fields(value, field: str) -> bool:
    """Does fields_v1 give value any field below it (else it is a leaf)?"""
    if isinstance(value, dict):
        return any(not k.startswith("$") and k not in ("apiVersion", "kind") for k in value)
    if isinstance(value, list) and value and all(isinstance(i, dict) for i in value):
        key = merge_key_for(field, value)
        return bool(key) and all(key in i for i in value)
    return False


def _without_paths(meta: dict, paths: set[tuple], keep_manager: str, keep_operation: str):
    """Take the given paths away from every other manager (ownership moves to the writer)."""
    entries = []
    for e in meta.get("managedFields") or []:
        if not (e.get("manager") == keep_manager and e.get("operation") == keep_operation):
            left = leaf_paths(e.get("fieldsV1") or {}) - paths
            if not left:
                continue
            e = {**e, "fieldsV1": from_paths(left)}
        entries.append(e)
    meta["managedFields"] = entries


def record_update(meta: dict, manager: str, api_version: str, old: dict, new: dict, now: str,
                  subresource: str = "") -> None:
    """An Update by manager: it now owns the fields it changed (plus what it owned)."""
    changed = changed_paths(old, new)
    if not changed:
        return  # a no-op leaves ownership alone (and lets the no-op skip the write)
    mine = next((e for e in meta.get("managedFields") or []
                 if e.get("manager") == manager and e.get("operation") == "Update"
                 and e.get("subresource", "") == subresource), None)
    owned = leaf_paths(mine.get("fieldsV1") or {}) if mine else set()
    _without_paths(meta, changed, manager, "Update")
    record(meta, manager, "Update", api_version, from_paths(owned | changed), now, subresource)


def apply_conflicts(meta: dict, manager: str, live: dict, applied: dict,
                    applied_set: dict) -> dict[str, list[str]]:
    """Fields the apply would change that another manager owns: {manager: [.paths]}."""
    conflicts: dict[str, list[str]] = {}
    for path in leaf_paths(applied_set):
        if value_at(live, path) in (_MISSING, value_at(applied, path)):
            continue
        for e in meta.get("managedFields") or []:
            if e.get("manager") == manager and e.get("operation") == "Apply":
                continue
            if path in leaf_paths(e.get("fieldsV1") or {}):
                conflicts.setdefault(e["manager"], []).append(readable(path))
    return conflicts


def take_over(meta: dict, manager: str, applied_set: dict) -> None:
    """A forced apply: the applier takes its fields from every other manager."""
    _without_paths(meta, leaf_paths(applied_set), manager, "Apply")


def readable(path: tuple) -> str:
    return "".join(f".{t[2:]}" if t.startswith("f:") else f"[{t[2:]}]" for t in path)
