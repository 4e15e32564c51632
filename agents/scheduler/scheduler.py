"""The scheduling loop on agents.kube: informers on nodes and pods feed the cache and a
work queue of unscheduled pod keys; `sync(key)` decides and binds one pod.

- Decide and assume happen without an await in between, so several workers can bind in
  parallel while every decision counts the pods assumed before it.
- A pod that fits nowhere gets a FailedScheduling event and its PodScheduled=False
  condition, then waits ("parked") until a node is added or changes or a bound pod goes
  away; then every parked pod is tried again.
- A binding that fails is undone in the cache and retried with back-off; "already
  assigned" means someone else bound it, which is fine.
- Events and PodScheduled=False status writes go out in the background, best effort,
  and yield to bindings: while pods wait to be scheduled or bindings are in flight, one
  of them is written at a time (the API server's time goes to placing pods, which is
  what a burst waits for); when scheduling is idle, several at once.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime

from agents.kube.controller import process_next
from agents.kube.errors import ApiError, Conflict, NotFound
from agents.kube.informer import Informer
from agents.kube.resources import meta_namespace_key
from agents.kube.workqueue import ExponentialBackoff, WorkQueue

from .cache import SchedulerCache
from .framework import schedule
from .nodeinfo import PodInfo

log = logging.getLogger(__name__)

DEFAULT_SCHEDULER_NAME = "default-scheduler"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def wants_scheduling(pod: dict, scheduler_name: str) -> bool:
    spec, meta = pod.get("spec") or {}, pod.get("metadata") or {}
    return (not spec.get("nodeName") and not meta.get("deletionTimestamp")
            and (spec.get("schedulerName") or DEFAULT_SCHEDULER_NAME) == scheduler_name
            and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"))


def event_for(pod: dict, reason: str, message: str, kind: str, component: str,
              instance: str, action: str) -> dict:
    meta = pod["metadata"]
    now = _now()
    return {"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:16]}",
                         "namespace": meta["namespace"]},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"],
                               "namespace": meta["namespace"], "uid": meta.get("uid"),
                               "resourceVersion": meta.get("resourceVersion")},
            "reason": reason, "message": message, "type": kind,
            "source": {"component": component}, "reportingComponent": component,
            "reportingInstance": instance, "action": action, "count": 1,
            "firstTimestamp": now, "lastTimestamp": now}


class Scheduler:
    def __init__(self, api, *, scheduler_name: str = DEFAULT_SCHEDULER_NAME,
                 identity: str = "", workers: int = 32):
        self.api, self.scheduler_name, self.workers = api, scheduler_name, workers
        self.identity = identity or scheduler_name
        self.cache = SchedulerCache()
        self.queue = WorkQueue("scheduler", backoff=ExponentialBackoff(base=0.1, cap=10.0))
        self.parked: set[str] = set()
        self.nodes = Informer(api, "nodes")
        self.pods = Informer(api, "pods")
        self.metrics = {"scheduled": 0, "unschedulable": 0, "bind_errors": 0}
        self._last_failure: dict[str, str] = {}
        self._next_start = 0  # rotating start of the node search (see framework.schedule)
        # Events and status writes go out in the background, off the binding path (as
        # kube-scheduler's event broadcaster does); flush_background() waits for them.
        self._background: set[asyncio.Task] = set()
        self._background_slots = asyncio.Semaphore(8)
        self._trickle = asyncio.Semaphore(1)  # the one background write while busy
        self._binding = 0  # bindings in flight
        self.nodes.add_handler(self._node_added, self._node_updated, self._node_deleted)
        self.pods.add_handler(self._pod_added, self._pod_updated, self._pod_deleted)

    # -- informer handlers: update the cache and enqueue, nothing else -----------------

    def _retry_parked(self) -> None:
        for key in self.parked:
            self.queue.add(key)
        self.parked.clear()

    def _node_added(self, node: dict) -> None:
        self.cache.set_node(node)
        self._retry_parked()

    def _node_updated(self, old: dict, new: dict) -> None:
        self.cache.set_node(new)
        if (old.get("spec"), (old.get("status") or {}).get("allocatable"),
                old["metadata"].get("labels")) != (
                new.get("spec"), (new.get("status") or {}).get("allocatable"),
                new["metadata"].get("labels")) or _ready(old) != _ready(new):
            self._retry_parked()

    def _node_deleted(self, node: dict) -> None:
        self.cache.remove_node(node["metadata"]["name"])

    def _pod_added(self, pod: dict) -> None:
        self.cache.set_pod(pod)
        if wants_scheduling(pod, self.scheduler_name):
            self.queue.add(meta_namespace_key(pod))

    def _pod_updated(self, old: dict, new: dict) -> None:
        self._pod_added(new)
        if is_freeing(old, new):
            self._retry_parked()

    def _pod_deleted(self, pod: dict) -> None:
        self.cache.remove_pod(pod)
        key = meta_namespace_key(pod)
        self.parked.discard(key)
        self._last_failure.pop(key, None)
        if (pod.get("spec") or {}).get("nodeName"):
            self._retry_parked()

    # -- the level-triggered sync ------------------------------------------------------

    async def sync(self, key: str) -> None:
        pod = self.pods.store.get(key)
        if pod is None or not wants_scheduling(pod, self.scheduler_name) \
                or self.cache.is_assumed(pod):
            return
        info = PodInfo.of(pod)
        result = schedule(info, self.cache.node_infos(), sample=True, start=self._next_start)
        self._next_start = result.next_start
        if result.node is None:
            await self._unschedulable(key, pod, result.message)
            return
        self.cache.assume(pod, result.node, info)
        meta = pod["metadata"]
        self._binding += 1
        try:
            await self.api.bind(meta["namespace"], meta["name"], result.node, meta.get("uid"))
        except (Conflict, NotFound) as exc:
            # Bound by someone else or deleted meanwhile: nothing left to do here.
            log.info("not binding %s: %s", key, exc)
            self.cache.forget(pod)
            return
        except Exception:
            self.cache.forget(pod)
            self.metrics["bind_errors"] += 1
            raise
        finally:
            self._binding -= 1
        self.metrics["scheduled"] += 1
        self._last_failure.pop(key, None)
        self._in_background(self._event(pod, "Scheduled",
                                         f"Successfully assigned {key} to {result.node}",
                                         "Normal", "Binding"))

    async def _unschedulable(self, key: str, pod: dict, message: str) -> None:
        self.parked.add(key)
        self.metrics["unschedulable"] += 1
        if self._last_failure.get(key) == message:
            return  # same verdict as last time: no new event or status write
        self._last_failure[key] = message
        log.info("%s unschedulable: %s", key, message)
        self._in_background(self._report_unschedulable(key, pod, message))

    async def _report_unschedulable(self, key: str, pod: dict, message: str) -> None:
        await self._event(pod, "FailedScheduling", message, "Warning", "Scheduling")
        condition = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                     "message": message, "lastTransitionTime": _now(), "lastProbeTime": None}
        try:
            await self.api.patch("pods", pod["metadata"]["name"],
                                 {"status": {"conditions": [condition]}},
                                 pod["metadata"]["namespace"], patch_type="strategic",
                                 subresource="status")
        except ApiError as exc:
            log.warning("could not set PodScheduled=False on %s: %s", key, exc)

    def busy(self) -> bool:
        """Are pods waiting to be scheduled, or bindings in flight?"""
        return len(self.queue) > 0 or self._binding > 0

    def _in_background(self, coro) -> None:
        async def limited():
            async with self._background_slots:
                if not self.busy():
                    await coro
                    return
                async with self._trickle:
                    await coro
        task = asyncio.create_task(limited())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def flush_background(self) -> None:
        """Wait until every event and status write started so far has been sent."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    async def _event(self, pod, reason, message, kind, action) -> None:
        try:
            await self.api.create("events", event_for(pod, reason, message, kind,
                                                      self.scheduler_name, self.identity,
                                                      action), pod["metadata"]["namespace"])
        except ApiError as exc:  # events are best effort, never a reason to retry
            log.warning("could not record %s event for %s: %s", reason,
                        meta_namespace_key(pod), exc)

    # -- running -----------------------------------------------------------------------

    async def run(self) -> None:
        tasks = [asyncio.create_task(self.nodes.run()), asyncio.create_task(self.pods.run())]
        try:
            await self.nodes.wait_for_sync()
            await self.pods.wait_for_sync()
            log.info("caches synced: %d nodes, %d pods; scheduling with %d workers",
                     len(self.nodes.store), len(self.pods.store), self.workers)
            tasks += [asyncio.create_task(self._worker()) for _ in range(self.workers)]
            await asyncio.gather(*tasks)
        finally:
            self.queue.shutdown()
            for task in tasks + list(self._background):
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _worker(self) -> None:
        while await process_next(self.queue, self.sync, max_retries=1_000_000,
                                 name="scheduler"):
            pass


def _ready(node: dict) -> str | None:
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond.get("status")
    return None


def is_freeing(old: dict, new: dict) -> bool:
    """Did a bound pod stop holding resources (finished, or being deleted)?"""
    if not (old.get("spec") or {}).get("nodeName"):
        return False
    done = ("Succeeded", "Failed")
    return ((new.get("status") or {}).get("phase") in done
            and (old.get("status") or {}).get("phase") not in done)

