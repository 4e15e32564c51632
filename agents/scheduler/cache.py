"""The scheduler's view of the cluster: a NodeInfo per node, kept up to date from node and
pod changes, plus pods it has *assumed* onto a node while their binding is in flight (so
the next decision already counts them, as kube-scheduler's cache does).

No I/O: the daemon feeds it informer events; tests feed it dicts."""

from __future__ import annotations

from dataclasses import replace

from .nodeinfo import NodeInfo, PodInfo, is_terminal


def pod_key(pod: dict) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"


class SchedulerCache:
    def __init__(self):
        self._nodes: dict[str, dict] = {}                  # name → node object
        self._infos: dict[str, NodeInfo] = {}
        self._placed: dict[str, tuple[str, PodInfo]] = {}  # pod key → (node, its info)
        self.assumed: set[str] = set()

    # -- nodes -------------------------------------------------------------------------

    def set_node(self, node: dict) -> None:
        name = node["metadata"]["name"]
        self._nodes[name] = node
        info = NodeInfo.of(node)
        for placed_on, pod in self._placed.values():
            if placed_on == name:
                info.add_pod(pod)
        self._infos[name] = info

    def remove_node(self, name: str) -> None:
        self._nodes.pop(name, None)
        self._infos.pop(name, None)

    def node_infos(self) -> list[NodeInfo]:
        return list(self._infos.values())

    def node_info(self, name: str) -> NodeInfo | None:
        return self._infos.get(name)

    # -- pods --------------------------------------------------------------------------

    def _unplace(self, key: str) -> None:
        old = self._placed.pop(key, None)
        if old is not None and old[0] in self._infos:
            self._infos[old[0]].remove_pod(old[1])

    def _place(self, key: str, node: str, pod: PodInfo) -> None:
        self._placed[key] = (node, pod)
        if node in self._infos:
            self._infos[node].add_pod(pod)

    def set_pod(self, pod: dict) -> None:
        """A pod as the API reports it: count it where it is bound (if it holds
        resources), keep an assumption until the API confirms the binding."""
        key = pod_key(pod)
        node = (pod.get("spec") or {}).get("nodeName")
        if key in self.assumed and not node:
            return  # our binding is still in flight; the informer has not seen it yet
        self.assumed.discard(key)
        placed = self._placed.get(key)
        if node and placed is not None and placed[0] == node and not is_terminal(pod) \
                and _counts_alike(placed[1].pod, pod):
            return  # counted there already (confirmed assumption, status change)
        self._unplace(key)
        if node and not is_terminal(pod):
            self._place(key, node, PodInfo.of(pod))

    def remove_pod(self, pod: dict) -> None:
        key = pod_key(pod)
        self.assumed.discard(key)
        self._unplace(key)

    def assume(self, pod: dict, node: str, info: PodInfo | None = None) -> None:
        """Count pod on node while its binding is in flight (`info`: its PodInfo, if the
        caller has it already)."""
        key = pod_key(pod)
        self._unplace(key)
        self.assumed.add(key)
        bound = {**pod, "spec": {**(pod.get("spec") or {}), "nodeName": node}}
        self._place(key, node, replace(info, pod=bound) if info else PodInfo.of(bound))

    def forget(self, pod: dict) -> None:
        """Undo an assumption whose binding failed."""
        key = pod_key(pod)
        if key in self.assumed:
            self.assumed.discard(key)
            self._unplace(key)

    def is_assumed(self, pod: dict) -> bool:
        return pod_key(pod) in self.assumed


def _counts_alike(a: dict, b: dict) -> bool:
    """Would a and b (one pod, two versions) count the same on a node: same uid, same
    containers (requests, host ports), overhead and owners?"""
    sa, sb = a.get("spec") or {}, b.get("spec") or {}
    ma, mb = a.get("metadata") or {}, b.get("metadata") or {}
    return (ma.get("uid") == mb.get("uid")
            and ma.get("ownerReferences") == mb.get("ownerReferences")
            and sa.get("containers") == sb.get("containers")
            and sa.get("initContainers") == sb.get("initContainers")
            and sa.get("overhead") == sb.get("overhead"))
