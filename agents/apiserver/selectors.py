"""Label and field selectors: parse once, then match objects. Pure.

Label selector grammar (Kubernetes'): comma-separated requirements, each one of
`k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k` (exists), `!k` (absent).
Field selectors only allow `=`, `==` and `!=` on a fixed set of paths per kind.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import bad_request

_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_SET_RE = re.compile(rf"^\s*(?P<key>{_KEY})\s+(?P<op>in|notin)\s*\((?P<vals>[^)]*)\)\s*$")
_CMP_RE = re.compile(rf"^\s*(?P<key>{_KEY})\s*(?P<op>==|!=|=)\s*(?P<val>[^,=!\s]*)\s*$")
_EXISTS_RE = re.compile(rf"^\s*(?P<neg>!?)\s*(?P<key>{_KEY})\s*$")


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!"
    values: tuple[str, ...] = ()

    def matches(self, labels: dict) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "=":
            return present and value == self.values[0]
        if self.op == "!=":
            return not present or value != self.values[0]
        if self.op == "in":
            return present and value in self.values
        if self.op == "notin":
            return not present or value not in self.values
        if self.op == "exists":
            return present
        return not present


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p for p in parts if p.strip()]


def parse_label_selector(text: str | None) -> tuple[Requirement, ...]:
    if not text or not text.strip():
        return ()
    reqs = []
    for part in _split_top_level(text):
        if m := _SET_RE.match(part):
            vals = tuple(v.strip() for v in m["vals"].split(",") if v.strip())
            reqs.append(Requirement(m["key"], m["op"], vals))
        elif m := _CMP_RE.match(part):
            op = "=" if m["op"] in ("=", "==") else "!="
            reqs.append(Requirement(m["key"], op, (m["val"],)))
        elif m := _EXISTS_RE.match(part):
            reqs.append(Requirement(m["key"], "!" if m["neg"] else "exists"))
        else:
            raise bad_request(f"unable to parse requirement: invalid label selector {part!r}")
    return tuple(reqs)


def labels_match(reqs: tuple[Requirement, ...], labels: dict | None) -> bool:
    labels = labels or {}
    return all(r.matches(labels) for r in reqs)


def selector_from_match_labels(selector: dict | None) -> tuple[Requirement, ...]:
    """A LabelSelector object (matchLabels + matchExpressions) as requirements."""
    if not selector:
        return ()
    reqs = [Requirement(k, "=", (str(v),)) for k, v in (selector.get("matchLabels") or {}).items()]
    ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    for expr in selector.get("matchExpressions") or []:
        reqs.append(Requirement(expr["key"], ops[expr["operator"]],
                                tuple(expr.get("values") or ())))
    return tuple(reqs)


# Field paths each kind may be selected on (beyond metadata.name / metadata.namespace).
FIELD_PATHS = {
    "Pod": {"spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
            "spec.serviceAccountName", "status.phase", "status.podIP", "status.nominatedNodeName"},
    "Event": {"involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
              "involvedObject.uid", "involvedObject.apiVersion",
              "involvedObject.resourceVersion", "involvedObject.fieldPath", "reason",
              "reportingComponent", "source", "type"},
    "Namespace": {"status.phase"},
    "Node": {"spec.unschedulable"},
    "Secret": {"type"},
    "ReplicaSet": {"status.replicas"},
}


@dataclass(frozen=True)
class FieldRequirement:
    path: str
    op: str  # "=" or "!="
    value: str

    def matches(self, obj: dict) -> bool:
        actual = field_value(obj, self.path)
        return (actual == self.value) if self.op == "=" else (actual != self.value)


def field_value(obj: dict, path: str) -> str:
    cur = obj
    for part in path.split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
        if cur is None:
            return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def parse_field_selector(text: str | None, kind: str) -> tuple[FieldRequirement, ...]:
    if not text or not text.strip():
        return ()
    allowed = {"metadata.name", "metadata.namespace"} | FIELD_PATHS.get(kind, set())
    reqs = []
    for part in _split_top_level(text):
        m = re.match(r"^\s*([A-Za-z0-9_.]+)\s*(==|!=|=)\s*(.*?)\s*$", part)
        if not m:
            raise bad_request(f"invalid field selector {part!r}: expected field=value or "
                              "field!=value")
        path, op, value = m.groups()
        if path not in allowed:
            raise bad_request(f'field label not supported: "{path}" for kind {kind}')
        reqs.append(FieldRequirement(path, "!=" if op == "!=" else "=", value))
    return tuple(reqs)


def fields_match(reqs: tuple[FieldRequirement, ...], obj: dict) -> bool:
    return all(r.matches(obj) for r in reqs)


def single_name(reqs: tuple[FieldRequirement, ...]) -> str | None:
    """The name a `metadata.name=X` field selector pins, if any (lets a LIST read one key)."""
    for r in reqs:
        if r.path == "metadata.name" and r.op == "=":
            return r.value
    return None
