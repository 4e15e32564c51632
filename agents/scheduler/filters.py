"""Filters: can this pod go on this node? Each returns None (fits) or an `Unfit` with the
reasons in kube-scheduler's wording, and whether evicting lower-priority pods could ever
help (`resolvable`, used for the preemption part of the FailedScheduling message).

They run in kube-scheduler's default order and a node's verdict is the first filter that
rejects it, so a cordoned node reports only "were unschedulable".
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from .nodeinfo import UNSCHEDULABLE_TAINT, NodeInfo, PodInfo

REASON_UNSCHEDULABLE = "node(s) were unschedulable"
REASON_NODE_NAME = "node(s) didn't match the requested node name"
REASON_AFFINITY = "node(s) didn't match Pod's node affinity/selector"
REASON_PORTS = "node(s) didn't have free ports for the requested pod ports"
REASON_TOO_MANY_PODS = "Too many pods"
# Taints that keep pods off a node: NoSchedule for new pods, NoExecute for all.
SCHEDULING_EFFECTS = ("NoSchedule", "NoExecute")


@dataclass(frozen=True)
class Unfit:
    reasons: tuple[str, ...]
    resolvable: bool = False   # could preemption (freeing resources) make it fit?


def tolerates(toleration: dict, taint: dict) -> bool:
    """Does one toleration match one taint (key, operator Equal/Exists, value, effect)?"""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    operator = toleration.get("operator") or "Equal"
    if key and key != taint.get("key"):
        return False
    if operator == "Exists":
        return True
    if operator == "Equal":
        # An empty key with Equal is not valid in the API; it matches nothing here.
        return bool(key) and (toleration.get("value") or "") == (taint.get("value") or "")
    return False


def untolerated_taint(tolerations, taints, effects=SCHEDULING_EFFECTS) -> dict | None:
    for taint in taints:
        if taint.get("effect") in effects and not any(tolerates(t, taint) for t in tolerations):
            return taint
    return None


def node_unschedulable(pod: PodInfo, node: NodeInfo) -> Unfit | None:
    if not node.unschedulable:
        return None
    cordon = {"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule"}
    if any(tolerates(t, cordon) for t in pod.tolerations):
        return None
    return Unfit((REASON_UNSCHEDULABLE,))


def node_name(pod: PodInfo, node: NodeInfo) -> Unfit | None:
    wanted = (pod.pod.get("spec") or {}).get("nodeName")
    if wanted and wanted != node.name:
        return Unfit((REASON_NODE_NAME,))
    return None


def taint_toleration(pod: PodInfo, node: NodeInfo) -> Unfit | None:
    if not node.taints:
        return None
    taint = untolerated_taint(pod.tolerations, node.taints)
    if taint is None:
        return None
    return Unfit((f"node(s) had untolerated taint {{{taint.get('key', '')}: "
                  f"{taint.get('value') or ''}}}",))


def _int(text: str) -> int | None:
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def match_expression(expr: dict, labels: dict[str, str]) -> bool:
    """One nodeSelectorRequirement: In, NotIn, Exists, DoesNotExist, Gt, Lt."""
    key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
    present = key in labels
    if op == "In":
        return present and labels[key] in values
    if op == "NotIn":
        return not present or labels[key] not in values
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    if op in ("Gt", "Lt"):
        if not present or len(values) != 1:
            return False
        have, bound = _int(labels[key]), _int(values[0])
        if have is None or bound is None:
            return False
        return have > bound if op == "Gt" else have < bound
    return False  # unknown operators match nothing, as the API would reject them


def match_term(term: dict, node: NodeInfo) -> bool:
    """A nodeSelectorTerm: all its matchExpressions (labels) and matchFields
    (metadata.name) hold; a term with neither matches nothing."""
    exprs, fields = term.get("matchExpressions") or [], term.get("matchFields") or []
    if not exprs and not fields:
        return False
    field_values = {"metadata.name": node.name}
    return (all(match_expression(e, node.labels) for e in exprs)
            and all(match_expression(f, field_values) for f in fields))


def node_affinity(pod: PodInfo, node: NodeInfo) -> Unfit | None:
    """nodeSelector (every label equal) and required node affinity (any term matches)."""
    fits = all(node.labels.get(k) == v for k, v in pod.node_selector.items())
    if fits and pod.required_terms is not None:
        fits = any(match_term(term, node) for term in pod.required_terms)
    return None if fits else Unfit((REASON_AFFINITY,))


def _ports_clash(a: tuple[str, str, int], b: tuple[str, str, int]) -> bool:
    (proto_a, ip_a, port_a), (proto_b, ip_b, port_b) = a, b
    if proto_a != proto_b or port_a != port_b:
        return False
    wildcard = {"0.0.0.0", "::"}
    if ip_a in wildcard or ip_b in wildcard:
        return True
    try:
        return ipaddress.ip_address(ip_a) == ipaddress.ip_address(ip_b)
    except ValueError:
        return ip_a == ip_b


def node_ports(pod: PodInfo, node: NodeInfo) -> Unfit | None:
    for wanted in pod.host_ports:
        if any(_ports_clash(wanted, used) for used in node.used_ports):
            return Unfit((REASON_PORTS,), resolvable=True)
    return None


def node_resources_fit(pod: PodInfo, node: NodeInfo) -> Unfit | None:
    """Pods count, then cpu, memory and any other requested resource against what is
    allocatable minus what the node's pods already request."""
    reasons = []
    allocatable, requested = node.allocatable, node.requested
    if node.pod_count + 1 > allocatable.get("pods", 0):
        reasons.append(REASON_TOO_MANY_PODS)
    for name, want in pod.fit_order:
        if want > allocatable.get(name, 0) - requested.get(name, 0):
            reasons.append(f"Insufficient {name}")
    return Unfit(tuple(reasons), resolvable=True) if reasons else None


DEFAULT_FILTERS = (node_unschedulable, node_name, taint_toleration, node_affinity, node_ports,
                   node_resources_fit)


def applicable(pod: PodInfo, filters=DEFAULT_FILTERS) -> tuple:
    """The filters that can reject this pod at all (a pod without a node name, selector
    or host ports skips those checks on every node: same verdicts, less work)."""
    spec = pod.pod.get("spec") or {}
    skip = set()
    if not spec.get("nodeName"):
        skip.add(node_name)
    if not pod.node_selector and pod.required_terms is None:
        skip.add(node_affinity)
    if not pod.host_ports:
        skip.add(node_ports)
    return tuple(f for f in filters if f not in skip)


def run_filters(pod: PodInfo, node: NodeInfo, filters=DEFAULT_FILTERS) -> Unfit | None:
    for check in filters:
        verdict = check(pod, node)
        if verdict is not None:
            return verdict
    return None
