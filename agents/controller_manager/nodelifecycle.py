"""The Node lifecycle controller.

Health: a node is alive while its Lease (kube-node-lease/<node>) or its Ready condition's
lastHeartbeatTime keeps changing. What counts is when *we* last saw either change, on our
own monotonic clock (never the timestamps themselves: clocks of hosts disagree). After
`grace_period` seconds without a change the node's Ready, MemoryPressure, DiskPressure and
PIDPressure conditions become Unknown ("Kubelet stopped posting node status.").

Taints follow the Ready condition: Unknown → node.kubernetes.io/unreachable, False →
node.kubernetes.io/not-ready, each as NoSchedule and NoExecute (with timeAdded); True →
both removed (a node that comes back is untainted).

Eviction (taint-based): a pod on a node with NoExecute taints is deleted when a taint is
not tolerated, or when its shortest tolerationSeconds since the taint's timeAdded has
passed. Pods without a toleration for the not-ready/unreachable taints are treated as if
they tolerated them for `default_toleration_seconds` (what the DefaultTolerationSeconds
admission plugin would have added). Tolerations without tolerationSeconds keep a pod
forever. The ReplicaSet controller then replaces the evicted pods elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from agents.kube.errors import Conflict, NotFound
from agents.scheduler.filters import tolerates

from .base import QueueController
from .objects import is_deleting, parse_time

log = logging.getLogger(__name__)

UNREACHABLE = "node.kubernetes.io/unreachable"
NOT_READY = "node.kubernetes.io/not-ready"
LEASE_NAMESPACE = "kube-node-lease"
HEALTH_CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")


@dataclass(frozen=True)
class Probe:
    signature: tuple      # (lease renewTime, Ready lastHeartbeatTime) last seen
    changed_at: float     # our clock, when the signature last changed


def signature(node: dict, lease: dict | None) -> tuple:
    renew = ((lease or {}).get("spec") or {}).get("renewTime")
    ready = ready_condition(node) or {}
    return (renew, ready.get("lastHeartbeatTime"))


def observe(previous: Probe | None, node: dict, lease: dict | None, now: float) -> Probe:
    sig = signature(node, lease)
    if previous is None or previous.signature != sig:
        return Probe(sig, now)
    return previous


def ready_condition(node: dict) -> dict | None:
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond
    return None


def ready_status(node: dict) -> str:
    cond = ready_condition(node)
    return cond.get("status", "Unknown") if cond else "Unknown"


def unknown_conditions(node: dict, stamp: str) -> list[dict]:
    """The node's conditions with the health ones set to Unknown."""
    out, seen = [], set()
    for cond in (node.get("status") or {}).get("conditions") or []:
        kind = cond.get("type")
        if kind in HEALTH_CONDITIONS:
            seen.add(kind)
            if cond.get("status") != "Unknown":
                cond = {**cond, "status": "Unknown", "reason": "NodeStatusUnknown",
                        "message": "Kubelet stopped posting node status.",
                        "lastTransitionTime": stamp}
        out.append(cond)
    for kind in HEALTH_CONDITIONS:
        if kind not in seen:
            out.append({"type": kind, "status": "Unknown", "reason": "NodeStatusNeverUpdated",
                        "message": "Kubelet never posted node status.",
                        "lastHeartbeatTime": None, "lastTransitionTime": stamp})
    return out


def wanted_taints(node: dict, stamp: str) -> list[dict]:
    """The node's taints with the not-ready/unreachable ones matching its Ready status
    (existing ones keep their timeAdded)."""
    status = ready_status(node)
    key = {"Unknown": UNREACHABLE, "False": NOT_READY}.get(status)
    current = (node.get("spec") or {}).get("taints") or []
    keep = [t for t in current if t.get("key") not in (UNREACHABLE, NOT_READY)
            or t.get("key") == key]
    for effect in ("NoSchedule", "NoExecute"):
        if key and not any(t.get("key") == key and t.get("effect") == effect for t in keep):
            keep.append({"key": key, "effect": effect, "timeAdded": stamp})
    return keep


def eviction_time(pod: dict, taints: list[dict],
                  default_toleration_seconds: int) -> datetime | None:
    """When the pod must go because of the node's NoExecute taints (None: never)."""
    due = None
    tolerations = (pod.get("spec") or {}).get("tolerations") or []
    for taint in taints:
        if taint.get("effect") != "NoExecute":
            continue
        added = parse_time(taint.get("timeAdded")) or datetime.now(UTC)
        matching = [t for t in tolerations if tolerates(t, taint)]
        if not matching:
            if taint.get("key") in (UNREACHABLE, NOT_READY):
                seconds = default_toleration_seconds
            else:
                return added  # not tolerated at all: now
        elif any(t.get("tolerationSeconds") is None for t in matching):
            continue          # tolerated forever
        else:
            seconds = min(int(t["tolerationSeconds"]) for t in matching)
        at = added + timedelta(seconds=max(0, seconds))
        due = at if due is None or at < due else due
    return due


class NodeLifecycleController(QueueController):
    name = "node-lifecycle-controller"

    def __init__(self, api, nodes, leases, pods, events=None, *, grace_period: float = 40.0,
                 monitor_period: float = 5.0, default_toleration_seconds: int = 300,
                 clock: Callable[[], float] = time.monotonic):
        super().__init__(api, events)
        self.nodes, self.leases, self.pods = nodes, leases, pods
        self.grace_period, self.monitor_period = grace_period, monitor_period
        self.default_toleration_seconds = default_toleration_seconds
        self.clock = clock
        self.probes: dict[str, Probe] = {}
        nodes.add_handler(self._enqueue, lambda _o, n: self._enqueue(n),
                          lambda n: self.probes.pop(n["metadata"]["name"], None))
        leases.add_handler(self._lease, lambda _o, n: self._lease(n))

    def _enqueue(self, node: dict) -> None:
        self.queue.add(node["metadata"]["name"])

    def _lease(self, lease: dict) -> None:
        if lease["metadata"].get("namespace") == LEASE_NAMESPACE:
            self.queue.add(lease["metadata"]["name"])

    async def sync(self, name: str) -> None:
        node = self.nodes.store.get(name)
        if node is None:
            self.probes.pop(name, None)
            return
        lease = self.leases.store.get(f"{LEASE_NAMESPACE}/{name}")
        now = self.clock()
        probe = self.probes[name] = observe(self.probes.get(name), node, lease, now)
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if now - probe.changed_at > self.grace_period and ready_status(node) != "Unknown":
            log.info("node %s: no heartbeat for %.0fs, marking it Unknown", name,
                     now - probe.changed_at)
            node = await self.api.update_status("nodes", {
                **node, "status": {**(node.get("status") or {}),
                                   "conditions": unknown_conditions(node, stamp)}})
            self.events.record(node, "NodeNotReady", f"Node {name} status is now: "
                               "NodeNotReady")
        taints = wanted_taints(node, stamp)
        if taints != ((node.get("spec") or {}).get("taints") or []):
            # A Conflict (our cache is behind) fails the sync; the retry reads afresh.
            node = await self.api.update("nodes", {
                **node, "spec": {**(node.get("spec") or {}), "taints": taints or None}})
        await self._evict(node, taints)

    async def _evict(self, node: dict, taints: list[dict]) -> None:
        if not any(t.get("effect") == "NoExecute" for t in taints):
            return
        name = node["metadata"]["name"]
        now = datetime.now(UTC)
        next_due = None
        for pod in self.pods.store.by_index("node", name):
            if is_deleting(pod):
                continue
            due = eviction_time(pod, taints, self.default_toleration_seconds)
            if due is None:
                continue
            if due <= now:
                meta = pod["metadata"]
                with contextlib.suppress(NotFound, Conflict):
                    await self.api.delete("pods", meta["name"], meta["namespace"],
                                          preconditions={"uid": meta.get("uid")})
                    self.events.record(pod, "TaintManagerEviction",
                                       f"Marking for deletion Pod {meta['namespace']}/"
                                       f"{meta['name']}")
            elif next_due is None or due < next_due:
                next_due = due
        if next_due is not None:
            self.queue.add_after(name, (next_due - now).total_seconds() + 0.1)

    async def run(self, workers: int = 2) -> None:
        async def tick():
            while True:  # a dead node sends no events: look at every node periodically
                await asyncio.sleep(self.monitor_period)
                for name in self.nodes.store.list_keys():
                    self.queue.add(name)
        ticker = asyncio.create_task(tick())
        try:
            await super().run(workers)
        finally:
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)
