"""Ansible-compatible jinja2 filters and tests that roles commonly use.

Jinja's own filters (join, map, selectattr, default, int, ...) stay as they are;
these add the Ansible ones and Ansible's result tests (``is changed``...).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os.path
import re
import shlex
from collections.abc import Mapping
from typing import Any

import yaml
from jinja2 import Undefined
from jinja2.exceptions import FilterArgumentError

TRUE_STRINGS = {"1", "yes", "true", "on", "y", "t"}


def to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    if isinstance(value, int | float):
        return value != 0
    return str(value).strip().lower() in TRUE_STRINGS


def _dump_yaml(value: Any, indent: int = 4, **kw: Any) -> str:
    return yaml.safe_dump(_plain(value), default_flow_style=False, indent=indent, sort_keys=False, **kw)


def _plain(value: Any) -> Any:
    """Copies of mappings/sequences as plain dicts/lists (safe_dump refuses subclasses)."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def to_yaml(value: Any, **kw: Any) -> str:
    return yaml.safe_dump(_plain(value), default_flow_style=None, sort_keys=False, **kw)


def to_nice_yaml(value: Any, indent: int = 4, **kw: Any) -> str:
    return _dump_yaml(value, indent=indent, **kw)


def to_json(value: Any, **kw: Any) -> str:
    return json.dumps(_plain(value), **kw)


def to_nice_json(value: Any, indent: int = 4, **kw: Any) -> str:
    return json.dumps(_plain(value), indent=indent, sort_keys=True, **kw)


def b64encode(value: Any, encoding: str = "utf-8") -> str:
    return base64.b64encode(str(value).encode(encoding)).decode("ascii")


def b64decode(value: Any, encoding: str = "utf-8") -> str:
    return base64.b64decode(str(value)).decode(encoding)


def regex_replace(value: Any, pattern: str, replacement: str = "", ignorecase: bool = False,
                  multiline: bool = False, count: int = 0) -> str:
    flags = (re.I if ignorecase else 0) | (re.M if multiline else 0)
    return re.sub(pattern, replacement, str(value), count=count, flags=flags)


def regex_search(value: Any, pattern: str, *groups: str, ignorecase: bool = False,
                 multiline: bool = False) -> Any:
    flags = (re.I if ignorecase else 0) | (re.M if multiline else 0)
    match = re.search(pattern, str(value), flags)
    if not match:
        return None
    if not groups:
        return match.group(0)
    out = []
    for g in groups:
        ref = g[1:] if g.startswith("\\") else g
        out.append(match.group(int(ref) if ref.isdigit() else ref.lstrip("?P<").rstrip(">")))
    return out


def regex_findall(value: Any, pattern: str, ignorecase: bool = False, multiline: bool = False) -> list:
    flags = (re.I if ignorecase else 0) | (re.M if multiline else 0)
    return re.findall(pattern, str(value), flags)


def dict2items(value: Mapping, key_name: str = "key", value_name: str = "value") -> list:
    if not isinstance(value, Mapping):
        raise FilterArgumentError(f"dict2items expects a dict, got {type(value).__name__}")
    return [{key_name: k, value_name: v} for k, v in value.items()]


def items2dict(value: list, key_name: str = "key", value_name: str = "value") -> dict:
    return {item[key_name]: item[value_name] for item in value}


def combine(*dicts: Mapping, recursive: bool = False, list_merge: str = "replace") -> dict:
    def merge(a: dict, b: Mapping) -> dict:
        out = dict(a)
        for k, v in b.items():
            if recursive and isinstance(out.get(k), Mapping) and isinstance(v, Mapping):
                out[k] = merge(dict(out[k]), v)
            elif list_merge == "append" and isinstance(out.get(k), list) and isinstance(v, list):
                out[k] = out[k] + v
            else:
                out[k] = v
        return out

    result: dict = {}
    for d in dicts:
        for part in d if isinstance(d, list) else [d]:
            result = merge(result, part)
    return result


def ternary(value: Any, true_val: Any, false_val: Any, none_val: Any = None) -> Any:
    if value is None and none_val is not None:
        return none_val
    return true_val if to_bool(value) else false_val


def mandatory(value: Any, msg: str | None = None) -> Any:
    if isinstance(value, Undefined):
        raise FilterArgumentError(msg or "Mandatory variable not defined.")
    return value


def hash_filter(value: Any, algorithm: str = "sha1") -> str:
    return hashlib.new(algorithm, str(value).encode()).hexdigest()


def flatten(value: list, levels: int | None = None) -> list:
    out: list = []
    for item in value:
        if isinstance(item, list | tuple) and (levels is None or levels > 0):
            out.extend(flatten(list(item), None if levels is None else levels - 1))
        elif item is not None:
            out.append(item)
    return out


FILTERS = {
    "bool": to_bool,
    "to_json": to_json,
    "to_nice_json": to_nice_json,
    "from_json": json.loads,
    "to_yaml": to_yaml,
    "to_nice_yaml": to_nice_yaml,
    "from_yaml": yaml.safe_load,
    "b64encode": b64encode,
    "b64decode": b64decode,
    "regex_replace": regex_replace,
    "regex_search": regex_search,
    "regex_findall": regex_findall,
    "dict2items": dict2items,
    "items2dict": items2dict,
    "combine": combine,
    "ternary": ternary,
    "mandatory": mandatory,
    "basename": os.path.basename,
    "dirname": os.path.dirname,
    "quote": lambda v: shlex.quote(str(v)),
    "hash": hash_filter,
    "checksum": lambda v: hash_filter(v, "sha1"),
    "md5": lambda v: hash_filter(v, "md5"),
    "sha1": lambda v: hash_filter(v, "sha1"),
    "flatten": flatten,
    "unique": lambda v: list(dict.fromkeys(v)),
    "type_debug": lambda v: type(v).__name__,
}


def _result_flag(key: str):
    def test(result: Any) -> bool:
        if not isinstance(result, Mapping):
            raise FilterArgumentError(f"the '{key}' test expects a registered task result")
        if "results" in result and key in ("changed", "failed"):
            return any(to_bool(r.get(key)) for r in result["results"]) or to_bool(result.get(key))
        return to_bool(result.get(key, False))

    return test


TESTS = {
    "changed": _result_flag("changed"),
    "failed": _result_flag("failed"),
    "skipped": _result_flag("skipped"),
    "succeeded": lambda r: not _result_flag("failed")(r),
    "success": lambda r: not _result_flag("failed")(r),
    "match": lambda v, p, ignorecase=False: re.match(p, str(v), re.I if ignorecase else 0) is not None,
    "search": lambda v, p, ignorecase=False: re.search(p, str(v), re.I if ignorecase else 0) is not None,
    "regex": lambda v, p, ignorecase=False: re.search(p, str(v), re.I if ignorecase else 0) is not None,
    "file": os.path.isfile,
    "directory": os.path.isdir,
    "exists": os.path.exists,
    "abs": os.path.isabs,
    "truthy": to_bool,
    "falsy": lambda v: not to_bool(v),
    "subset": lambda a, b: set(a) <= set(b),
    "superset": lambda a, b: set(a) >= set(b),
    "contains": lambda seq, item: item in seq,
}
