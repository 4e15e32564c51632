"""One scheduling decision: filter every node, score the feasible ones, pick the best.

When no node fits, the message is kube-scheduler's FitError text, e.g.

    0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, 2 Insufficient cpu. preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod.

Each distinct reason is counted once per node and the "<count> <reason>" strings are
sorted as strings (as Go's sort.Strings does). This scheduler does not preempt: nodes
that failed only on resources or ports count as "No preemption victims found", nodes
that failed on anything else as "Preemption is not helpful". Ties between best scores go
to the smallest node name, so a decision is reproducible.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from .filters import DEFAULT_FILTERS, Unfit, applicable, run_filters
from .nodeinfo import NodeInfo, PodInfo
from .scores import score_nodes

NO_NODES = "no nodes available to schedule pods"
NOT_HELPFUL = "Preemption is not helpful for scheduling"
NO_VICTIMS = "No preemption victims found for incoming pod"


MIN_FEASIBLE_NODES_TO_FIND = 100


@dataclass
class Result:
    node: str | None                      # chosen node, None when unschedulable
    message: str = ""                     # FailedScheduling text when node is None
    unfit: dict[str, Unfit] = field(default_factory=dict)
    scores: dict[str, int] = field(default_factory=dict)
    next_start: int = 0                   # where the next search should begin


def feasible_nodes_to_find(total: int) -> int:
    """kube-scheduler's adaptive percentageOfNodesToScore: all nodes up to 100, then
    (50 - total/125)% of them (at least 5%), never fewer than 100. In a large cluster it
    stops filtering once that many nodes fit, and scores only those."""
    if total <= MIN_FEASIBLE_NODES_TO_FIND:
        return total
    percentage = max(5, 50 - total // 125)
    return max(MIN_FEASIBLE_NODES_TO_FIND, total * percentage // 100)

    @property
    def scheduled(self) -> bool:
        return self.node is not None


def _histogram(counts: Counter) -> str:
    return ", ".join(sorted(f"{n} {reason}" for reason, n in counts.items()))


def fit_error_message(total_nodes: int, unfit: dict[str, Unfit],
                      preemption_policy: str | None = None) -> str:
    if total_nodes == 0:
        return NO_NODES
    reasons: Counter = Counter()
    for verdict in unfit.values():
        for reason in set(verdict.reasons):
            reasons[reason] += 1
    message = f"0/{total_nodes} nodes are available: {_histogram(reasons)}."
    if preemption_policy == "Never":
        return f"{message} preemption: not eligible due to preemptionPolicy=Never."
    preemption = Counter(NO_VICTIMS if v.resolvable else NOT_HELPFUL for v in unfit.values())
    return (f"{message} preemption: 0/{total_nodes} nodes are available: "
            f"{_histogram(preemption)}.")


def pick(scores: dict[str, int], pod_counts: dict[str, int] | None = None) -> str:
    """The best-scored node. Ties go to the node with the fewest pods, then the smallest
    name: kube-scheduler picks at random among tied nodes, which spreads a burst; this
    spreads it too but stays reproducible. (Integer scores tie often: once request-less
    pods fill a node's CPU on paper, LeastAllocated no longer tells nodes apart.)"""
    counts = pod_counts or {}
    return min(scores, key=lambda name: (-scores[name], counts.get(name, 0), name))


def schedule(pod: dict | PodInfo, nodes: list[NodeInfo], filters=DEFAULT_FILTERS, *,
             sample: bool = False, start: int = 0) -> Result:
    """Decide where `pod` goes among `nodes` (NodeInfos already counting bound pods).

    With `sample`, the search begins at node index `start` and stops once
    feasible_nodes_to_find() nodes fit (kube-scheduler does this so large clusters cost
    less per pod); the caller passes the returned `next_start` to the next decision so
    that every node gets its turn."""
    info = pod if isinstance(pod, PodInfo) else PodInfo.of(pod)
    total = len(nodes)
    wanted = feasible_nodes_to_find(total) if sample else total
    feasible: list[NodeInfo] = []
    unfit: dict[str, Unfit] = {}
    filters = applicable(info, filters)
    start = start % total if total else 0
    evaluated = 0
    for evaluated in range(1, total + 1):  # noqa: B007 - used after the loop
        node = nodes[(start + evaluated - 1) % total]
        verdict = run_filters(info, node, filters)
        if verdict is None:
            feasible.append(node)
            if len(feasible) >= wanted:
                break
        else:
            unfit[node.name] = verdict
    next_start = (start + evaluated) % total if total else 0
    if not feasible:
        policy = (info.pod.get("spec") or {}).get("preemptionPolicy")
        return Result(None, fit_error_message(total, unfit, policy), unfit,
                      next_start=next_start)
    if len(feasible) == 1:
        return Result(feasible[0].name, unfit=unfit, next_start=next_start)
    scores = score_nodes(info, feasible)
    counts = {node.name: node.pod_count for node in feasible}
    return Result(pick(scores, counts), unfit=unfit, scores=scores, next_start=next_start)
