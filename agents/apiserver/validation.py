"""Validation of incoming objects: names, required fields, unknown fields. Pure.

Returns (field, message) causes; the caller turns them into a 422 Status."""

from __future__ import annotations

import base64
import re

from .errors import ApiError
from .schema import KINDS, unknown_fields

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")

# Kinds whose names must be DNS-1123 labels (the rest: DNS-1123 subdomains).
LABEL_NAMED = {"Namespace", "Service"}


def name_problem(kind: str, name: str) -> str | None:
    if kind in LABEL_NAMED:
        if len(name) > 63 or not _DNS1123_LABEL.match(name):
            return ("a lowercase RFC 1123 label must consist of lower case alphanumeric "
                    "characters or '-', and must start and end with an alphanumeric "
                    "character (e.g. 'my-name', or '123-abc'), at most 63 characters")
        return None
    if len(name) > 253 or not _DNS1123_SUBDOMAIN.match(name):
        return ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                "characters, '-' or '.', and must start and end with an alphanumeric "
                "character (e.g. 'example.com'), at most 253 characters")
    return None


def check_unknown_fields(obj: dict, kind: str, mode: str) -> list[str]:
    """Strict → 400 on unknown fields; Warn → the warnings to send; Ignore → nothing."""
    if mode == "Ignore" or kind not in KINDS:
        return []
    unknown = unknown_fields(obj, KINDS[kind])
    if unknown and mode == "Strict":
        listed = ", ".join(f'unknown field "{u}"' for u in unknown)
        raise ApiError(400, f"{kind} in version \"{obj.get('apiVersion', '')}\" cannot be "
                            f"handled as a {kind}: strict decoding error: {listed}", "BadRequest")
    return [f'unknown field "{u}"' for u in unknown]


def _labels(meta: dict) -> list[tuple[str, str]]:
    causes = []
    for k, v in (meta.get("labels") or {}).items():
        name = k.rsplit("/", 1)[-1]
        if not _LABEL_NAME.match(name) or len(name) > 63:
            causes.append((f"metadata.labels: Invalid value: {k!r}",
                           "name part must consist of alphanumeric characters, '-', '_' or "
                           "'.', and must start and end with an alphanumeric character"))
        if not isinstance(v, str) or len(v) > 63 or not _LABEL_VALUE.match(v):
            causes.append((f"metadata.labels: Invalid value: {v!r}",
                           "a valid label must be an empty string or consist of "
                           "alphanumeric characters, '-', '_' or '.', and must start and end "
                           "with an alphanumeric character"))
    return causes


def _containers(spec: dict, where: str) -> list[tuple[str, str]]:
    causes = []
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        return [(f"{where}.containers", "Required value")]
    seen = set()
    for n, c in enumerate(containers):
        at = f"{where}.containers[{n}]"
        if not isinstance(c, dict):
            causes.append((at, "must be an object"))
            continue
        if not c.get("name"):
            causes.append((f"{at}.name", "Required value"))
        elif not _DNS1123_LABEL.match(c["name"]):
            causes.append((f"{at}.name", f"Invalid value: {c['name']!r}: must be a DNS-1123 "
                                         "label"))
        elif c["name"] in seen:
            causes.append((f"{at}.name", f"Duplicate value: {c['name']!r}"))
        seen.add(c.get("name"))
        if not c.get("image"):
            causes.append((f"{at}.image", "Required value"))
        for p, port in enumerate(c.get("ports") or []):
            cp = port.get("containerPort") if isinstance(port, dict) else None
            if not isinstance(cp, int) or not 0 < cp < 65536:
                causes.append((f"{at}.ports[{p}].containerPort",
                               f"Invalid value: {cp!r}: must be between 1 and 65535"))
    return causes


def _selector_matches_template(spec: dict) -> list[tuple[str, str]]:
    selector = spec.get("selector")
    if not isinstance(selector, dict) or not (selector.get("matchLabels")
                                              or selector.get("matchExpressions")):
        return [("spec.selector", "Required value")]
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return [("spec.template.metadata.labels",
                     f"Invalid value: {labels!r}: `selector` does not match template `labels`")]
    return []


def validate(kind: str, obj: dict) -> list[tuple[str, str]]:
    """Problems with a (defaulted) object, as (field, message)."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return [("metadata", "Required value")]
    causes: list[tuple[str, str]] = []
    name = meta.get("name")
    if not name:
        causes.append(("metadata.name", "Required value: name or generateName is required"))
    elif problem := name_problem(kind, name):
        causes.append(("metadata.name", f"Invalid value: {name!r}: {problem}"))
    causes.extend(_labels(meta))
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    if kind == "Pod":
        causes.extend(_containers(spec, "spec"))
    elif kind in ("Deployment", "ReplicaSet", "DaemonSet"):
        causes.extend(_selector_matches_template(spec))
        causes.extend(_containers((spec.get("template") or {}).get("spec") or {},
                                  "spec.template.spec"))
        replicas = spec.get("replicas", 0)
        if not isinstance(replicas, int) or replicas < 0:
            causes.append(("spec.replicas", f"Invalid value: {replicas!r}: must be greater "
                                            "than or equal to 0"))
    elif kind == "Service":
        if spec.get("type") != "ExternalName" and not spec.get("ports"):
            causes.append(("spec.ports", "Required value"))
        for n, p in enumerate(spec.get("ports") or []):
            port = p.get("port") if isinstance(p, dict) else None
            if not isinstance(port, int) or not 0 < port < 65536:
                causes.append((f"spec.ports[{n}].port",
                               f"Invalid value: {port!r}: must be between 1 and 65535"))
    elif kind in ("ConfigMap", "Secret"):
        for field in ("data", "binaryData", "stringData"):
            for key in (obj.get(field) or {}):
                if not _CONFIG_KEY.match(key):
                    causes.append((f"{field}[{key}]", "Invalid value: a valid config key "
                                                      "must consist of alphanumeric "
                                                      "characters, '-', '_' or '.'"))
        if kind == "Secret":
            for key, value in (obj.get("data") or {}).items():
                try:
                    base64.b64decode(value, validate=True)
                except Exception:
                    causes.append((f"data[{key}]", "Invalid value: not base64"))
    return causes
