"""Scores: how good is a feasible node for the pod, 0 (worst) to 100 (best).

- least_allocated: prefer nodes with more cpu and memory left after placing the pod.
- balanced_allocation: prefer nodes whose cpu and memory would be used in equal shares.
- spread: prefer nodes running fewer pods of the same owner (ReplicaSet...). It needs
  the counts over all feasible nodes, so it scores the whole list at once.

The framework weighs them as kube-scheduler's defaults do (resources 1, balance 1,
spreading 2)."""

from __future__ import annotations

from .nodeinfo import NodeInfo, PodInfo

MAX_SCORE = 100


def resource_scores(pod: PodInfo, node: NodeInfo) -> tuple[int, int]:
    """(least_allocated, balanced_allocation) in one pass over cpu and memory, after
    placing the pod (this runs for every feasible node of every decision)."""
    cpu_alloc = node.allocatable.get("cpu", 0)
    mem_alloc = node.allocatable.get("memory", 0)
    cpu_req = node.non_zero_cpu + pod.non_zero[0]
    mem_req = node.non_zero_memory + pod.non_zero[1]
    least = 0
    if cpu_alloc > 0 and cpu_req <= cpu_alloc:
        least += (cpu_alloc - cpu_req) * MAX_SCORE // cpu_alloc
    if mem_alloc > 0 and mem_req <= mem_alloc:
        least += (mem_alloc - mem_req) * MAX_SCORE // mem_alloc
    cpu_share = min(cpu_req / cpu_alloc, 1.0) if cpu_alloc > 0 else 1.0
    mem_share = min(mem_req / mem_alloc, 1.0) if mem_alloc > 0 else 1.0
    # The standard deviation of two shares is half their difference.
    balanced = int((1 - abs(cpu_share - mem_share) / 2) * MAX_SCORE)
    return least // 2, balanced


def least_allocated(pod: PodInfo, node: NodeInfo) -> int:
    return resource_scores(pod, node)[0]


def balanced_allocation(pod: PodInfo, node: NodeInfo) -> int:
    return resource_scores(pod, node)[1]


def spread(pod: PodInfo, nodes: list[NodeInfo]) -> dict[str, int]:
    """Fewer pods of the pod's owner on a node → higher score; pods without a controller
    owner get the same score everywhere."""
    if not pod.owner_uid:
        return {n.name: MAX_SCORE for n in nodes}
    counts = {n.name: n.owner_counts.get(pod.owner_uid, 0) for n in nodes}
    most = max(counts.values(), default=0)
    if most == 0:
        return {name: MAX_SCORE for name in counts}
    return {name: MAX_SCORE * (most - count) // most for name, count in counts.items()}


LEAST_ALLOCATED_WEIGHT = 1
BALANCED_WEIGHT = 1
SPREAD_WEIGHT = 2


def score_nodes(pod: PodInfo, nodes: list[NodeInfo]) -> dict[str, int]:
    """Weighted total per node name."""
    spread_scores = spread(pod, nodes)
    totals = {}
    for n in nodes:
        least, balanced = resource_scores(pod, n)
        totals[n.name] = (LEAST_ALLOCATED_WEIGHT * least + BALANCED_WEIGHT * balanced
                          + SPREAD_WEIGHT * spread_scores[n.name])
    return totals
