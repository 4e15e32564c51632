"""What the scheduler knows about a pod's needs and a node's room, computed once.

`PodInfo` digests a pod (requests, tolerations, selectors, host ports, owner) so filters
do not re-parse it for every node; `NodeInfo` is a node plus the pods bound to it and
their summed requests. Both are built from plain Kubernetes JSON dicts."""

from __future__ import annotations

from dataclasses import dataclass, field

from .quantity import amount

# Scoring counts a container without requests as if it asked for this much, so that
# many request-less pods still spread (kube-scheduler does the same).
DEFAULT_MILLI_CPU = 100
DEFAULT_MEMORY = 200 * 1024 * 1024

NOT_READY_TAINT = "node.kubernetes.io/not-ready"
UNREACHABLE_TAINT = "node.kubernetes.io/unreachable"
UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"


def _add(total: dict[str, int], more: dict[str, int]) -> None:
    for name, qty in more.items():
        total[name] = total.get(name, 0) + qty


def _container_requests(container: dict) -> dict[str, int]:
    res = container.get("resources") or {}
    # A limit without a request means request == limit (the API server defaults this).
    merged = {**(res.get("limits") or {}), **(res.get("requests") or {})}
    return {name: amount(name, qty) for name, qty in merged.items()}


def pod_requests(pod: dict) -> dict[str, int]:
    """Effective requests: the larger of (sum of containers) and each init container,
    plus the pod overhead."""
    spec = pod.get("spec") or {}
    total: dict[str, int] = {}
    for container in spec.get("containers") or []:
        _add(total, _container_requests(container))
    for init in spec.get("initContainers") or []:
        for name, qty in _container_requests(init).items():
            total[name] = max(total.get(name, 0), qty)
    _add(total, {n: amount(n, q) for n, q in (spec.get("overhead") or {}).items()})
    return total


def non_zero_requests(pod: dict) -> tuple[int, int]:
    """(millicpu, memory) for scoring, with defaults for containers that ask nothing."""
    cpu = mem = 0
    for container in (pod.get("spec") or {}).get("containers") or []:
        req = _container_requests(container)
        cpu += req.get("cpu") or DEFAULT_MILLI_CPU
        mem += req.get("memory") or DEFAULT_MEMORY
    return cpu, mem


def host_ports(pod: dict) -> frozenset[tuple[str, str, int]]:
    ports = set()
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                ports.add((port.get("protocol") or "TCP", port.get("hostIP") or "0.0.0.0",
                           int(port["hostPort"])))
    return frozenset(ports)


def controller_uid(pod: dict) -> str | None:
    for ref in (pod.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref.get("uid")
    return None


@dataclass(frozen=True)
class PodInfo:
    pod: dict
    requests: dict[str, int]
    non_zero: tuple[int, int]
    tolerations: tuple[dict, ...]
    node_selector: dict[str, str]
    required_terms: tuple[dict, ...] | None   # None: no required node affinity
    host_ports: frozenset[tuple[str, str, int]]
    owner_uid: str | None
    # Positive requests in the order their "Insufficient" reasons are reported: cpu,
    # memory, ephemeral-storage, then the rest by name (computed once, checked per node).
    fit_order: tuple[tuple[str, int], ...] = ()

    @classmethod
    def of(cls, pod: dict) -> PodInfo:
        spec = pod.get("spec") or {}
        required = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                    .get("requiredDuringSchedulingIgnoredDuringExecution"))
        requests = pod_requests(pod)
        order = sorted((r for r, q in requests.items() if q > 0),
                       key=lambda r: (r != "cpu", r != "memory", r != "ephemeral-storage", r))
        return cls(pod, requests, non_zero_requests(pod),
                   tuple(spec.get("tolerations") or ()), dict(spec.get("nodeSelector") or {}),
                   None if required is None else tuple(required.get("nodeSelectorTerms") or ()),
                   host_ports(pod), controller_uid(pod),
                   tuple((r, requests[r]) for r in order))

    @property
    def name(self) -> str:
        return (self.pod.get("metadata") or {}).get("name", "")


def _ready_status(node: dict) -> str | None:
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond.get("status")
    return None


def effective_taints(node: dict) -> tuple[dict, ...]:
    """The node's taints plus the NoSchedule taint the node lifecycle controller puts on a
    node that is not Ready (not-ready when Ready is False or missing, unreachable when
    Unknown), so a NotReady node is refused even before that controller catches up."""
    taints = list((node.get("spec") or {}).get("taints") or ())
    status = _ready_status(node)
    implied = None
    if status == "Unknown":
        implied = UNREACHABLE_TAINT
    elif status != "True":
        implied = NOT_READY_TAINT
    if implied and not any(t.get("key") == implied and t.get("effect") == "NoSchedule"
                           for t in taints):
        taints.append({"key": implied, "effect": "NoSchedule"})
    return tuple(taints)


def is_terminal(pod: dict) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


@dataclass
class NodeInfo:
    node: dict
    name: str
    labels: dict[str, str]
    allocatable: dict[str, int]
    taints: tuple[dict, ...]
    unschedulable: bool
    requested: dict[str, int] = field(default_factory=dict)
    non_zero_cpu: int = 0
    non_zero_memory: int = 0
    pod_count: int = 0
    used_ports: dict[tuple[str, str, int], int] = field(default_factory=dict)  # → pods
    owner_counts: dict[str, int] = field(default_factory=dict)
    pod_keys: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, node: dict, pods: list[dict] = ()) -> NodeInfo:
        status = node.get("status") or {}
        alloc = status.get("allocatable") or status.get("capacity") or {}
        meta = node.get("metadata") or {}
        info = cls(node, meta.get("name", ""), dict(meta.get("labels") or {}),
                   {name: amount(name, qty) for name, qty in alloc.items()},
                   effective_taints(node), bool((node.get("spec") or {}).get("unschedulable")))
        for pod in pods:
            info.add_pod(pod)
        return info

    def add_pod(self, pod: dict | PodInfo) -> None:
        """Count a pod bound (or assumed bound) to this node. Terminal pods hold nothing."""
        pi = pod if isinstance(pod, PodInfo) else PodInfo.of(pod)
        if is_terminal(pi.pod):
            return
        key = _pod_key(pi.pod)
        if key in self.pod_keys:
            return
        self.pod_keys.add(key)
        self._count(pi, +1)

    def remove_pod(self, pod: dict | PodInfo) -> None:
        pi = pod if isinstance(pod, PodInfo) else PodInfo.of(pod)
        key = _pod_key(pi.pod)
        if key not in self.pod_keys:
            return
        self.pod_keys.discard(key)
        self._count(pi, -1)

    def _count(self, pi: PodInfo, sign: int) -> None:
        for name, qty in pi.requests.items():
            self.requested[name] = self.requested.get(name, 0) + sign * qty
        self.non_zero_cpu += sign * pi.non_zero[0]
        self.non_zero_memory += sign * pi.non_zero[1]
        self.pod_count += sign
        for port in pi.host_ports:
            left = self.used_ports.get(port, 0) + sign
            if left > 0:
                self.used_ports[port] = left
            else:
                self.used_ports.pop(port, None)
        if pi.owner_uid:
            self.owner_counts[pi.owner_uid] = self.owner_counts.get(pi.owner_uid, 0) + sign


def _pod_key(pod: dict) -> str:
    meta = pod.get("metadata") or {}
    return meta.get("uid") or f"{meta.get('namespace')}/{meta.get('name')}"


def node_infos(nodes: list[dict], pods: list[dict]) -> list[NodeInfo]:
    """NodeInfos for `nodes`, counting every pod whose spec.nodeName names one of them."""
    by_name = {n["metadata"]["name"]: NodeInfo.of(n) for n in nodes}
    for pod in pods:
        info = by_name.get((pod.get("spec") or {}).get("nodeName") or "")
        if info is not None:
            info.add_pod(pod)
    return list(by_name.values())
