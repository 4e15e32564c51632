"""Pure helpers over API objects shared by the controllers: label selectors, owner
references, pod readiness. No I/O."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)


def selector_matches(selector: dict | None, labels: dict | None) -> bool:
    """A metav1.LabelSelector (matchLabels + matchExpressions). An empty or missing
    selector matches nothing here: workload controllers must never own everything."""
    if not selector or not (selector.get("matchLabels") or selector.get("matchExpressions")):
        return False
    labels = labels or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise ValueError(f"label selector operator {op!r} is not one of In, NotIn, "
                             "Exists, DoesNotExist")
    return True


def controller_ref(obj: dict) -> dict | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


def owner_reference(owner: dict, block: bool = True) -> dict:
    meta = owner["metadata"]
    return {"apiVersion": owner.get("apiVersion"), "kind": owner.get("kind"),
            "name": meta["name"], "uid": meta["uid"], "controller": True,
            "blockOwnerDeletion": block}


def is_deleting(obj: dict) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def is_active_pod(pod: dict) -> bool:
    """Counts towards replicas: not finished and not being deleted."""
    return (not is_deleting(pod)
            and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"))


def pod_condition(pod: dict, kind: str) -> dict | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return cond
    return None


def is_pod_ready(pod: dict) -> bool:
    cond = pod_condition(pod, "Ready")
    return bool(cond) and cond.get("status") == "True"


def is_pod_available(pod: dict, min_ready_seconds: int, now: datetime) -> bool:
    """Ready for at least minReadySeconds."""
    if not is_pod_ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    since = parse_time(pod_condition(pod, "Ready").get("lastTransitionTime"))
    return since is not None and (now - since).total_seconds() >= min_ready_seconds


def event(obj: dict, reason: str, message: str, component: str,
          kind: str = "Normal") -> dict:
    """A core/v1 Event about `obj` (the name is unique per call)."""
    meta = obj["metadata"]
    now = now_rfc3339()
    return {"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:16]}",
                         "namespace": meta.get("namespace") or "default"},
            "involvedObject": {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"),
                               "name": meta["name"], "namespace": meta.get("namespace"),
                               "uid": meta.get("uid"),
                               "resourceVersion": meta.get("resourceVersion")},
            "reason": reason, "message": message, "type": kind,
            "source": {"component": component}, "reportingComponent": component,
            "count": 1, "firstTimestamp": now, "lastTimestamp": now}
