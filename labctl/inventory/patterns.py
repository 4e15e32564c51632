"""Ansible host patterns (``--limit``, a play's ``hosts:``), evaluated over names only.

``a,b`` or ``a:b`` union; ``&x`` intersection; ``!x`` exclusion (unions first, then
intersections, then exclusions; only ``&``/``!`` terms start from ``all``). A term is
``all``/``*``, a group name (its hosts, children included), a host name, a glob
(``web*``, ``etcd-?``), or a regex ``~etcd-[12]``; a group or glob term may take a
subscript ``[0]``, ``[-1]``, ``[1:2]`` (inclusive) or ``[1:]``. The result is in
Ansible's order: terms in the order written, each group's hosts in group order.
"""

from __future__ import annotations

import fnmatch
import re

from labctl.inventory.problems import InventoryError

_SUBSCRIPT = re.compile(r"^(.+)\[(?:(-?[0-9]+)|([0-9]+):([0-9]*))\]$")
_TERMS = re.compile(r"(?:[^\s:\[\]]|\[[^\]]*\])+")
_GLOB_CHARS = (".", "?", "*", "[")


def split_pattern(pattern: str) -> list[str]:
    terms = pattern.split(",") if "," in pattern else _TERMS.findall(pattern)
    return [term.strip() for term in terms if term.strip()]


def match_hosts(pattern: str, hosts: list[str], groups: dict[str, list[str]]) -> list[str]:
    """Hosts selected by ``pattern``; ``hosts`` are all host names, ``groups`` maps a
    group's name to all its hosts in group order (``all`` included)."""
    terms = split_pattern(pattern)
    plain_terms = [t for t in terms if t[0] not in "&!"]
    ordered = (
        (plain_terms or ["all"])
        + [t for t in terms if t[0] == "&"]
        + [t for t in terms if t[0] == "!"]
    )
    selected: list[str] = []
    for term in ordered:
        matched = _match_term(term.lstrip("&!"), hosts, groups)
        if term[0] == "!":
            selected = [h for h in selected if h not in set(matched)]
        elif term[0] == "&":
            selected = [h for h in selected if h in set(matched)]
        else:
            selected += [h for h in matched if h not in selected]
    return selected


def _match_term(term: str, hosts: list[str], groups: dict[str, list[str]]) -> list[str]:
    if term in hosts:
        return [term]
    expr, subscript = _split_subscript(term)
    matcher = _compile(expr)
    results: list[str] = []
    matching_groups = [name for name in groups if matcher.match(name)]
    for name in matching_groups:
        results += [h for h in groups[name] if h not in results]
    if not matching_groups or expr[0] == "~" or any(c in expr for c in _GLOB_CHARS):
        results += [h for h in hosts if matcher.match(h) and h not in results]
    if expr == "all":
        results = list(groups.get("all", hosts))
    return _apply_subscript(results, subscript, term)


def _split_subscript(term: str) -> tuple[str, tuple[int, int | None] | None]:
    if term.startswith("~"):
        return term, None
    match = _SUBSCRIPT.match(term)
    if not match:
        return term, None
    expr, index, start, end = match.groups()
    if index is not None:
        return expr, (int(index), None)
    return expr, (int(start), int(end) if end else -1)


def _apply_subscript(hosts: list[str], subscript, term: str) -> list[str]:
    if not hosts or subscript is None:
        return hosts
    start, end = subscript
    if end is None:
        try:
            return [hosts[start]]
        except IndexError:
            raise InventoryError(
                f'host pattern "{term}": index {start} is out of range ({len(hosts)} hosts)'
            ) from None
    if end == -1:
        end = len(hosts) - 1
    return hosts[start : end + 1]


def _compile(expr: str) -> re.Pattern:
    try:
        return re.compile(expr[1:] if expr.startswith("~") else fnmatch.translate(expr))
    except re.error as exc:
        raise InventoryError(f'host pattern "{expr}" is not a valid regular expression: {exc}') from None
