"""The ReplicaSet controller.

sync(namespace/name), level-triggered, from the informer caches:
1. Claim pods: a pod controlled by this ReplicaSet whose labels no longer match is
   released (its ownerReference removed); an orphan pod that matches is adopted (one
   added, controller: true). Pods controlled by others are never touched.
2. If the expectations of earlier creates/deletes are met, create or delete pods so that
   the active (not finished, not being deleted) owned pods number spec.replicas. Creates
   go in slow-start batches (1, 2, 4, …) so that a failing create (quota, validation)
   costs one request, not hundreds. Deletes take the least valuable pods first
   (unscheduled, then pending, then not ready, then newest).
3. Write status (replicas, fullyLabeledReplicas, readyReplicas, availableReplicas,
   observedGeneration) when it changed.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from agents.kube.errors import Conflict, NotFound
from agents.kube.resources import meta_namespace_key

from .base import QueueController
from .expectations import Expectations
from .objects import (
    controller_ref,
    is_active_pod,
    is_deleting,
    is_pod_available,
    is_pod_ready,
    owner_reference,
    selector_matches,
)

log = logging.getLogger(__name__)

BURST = 500  # at most this many creates or deletes per sync, as kube-controller-manager


def pod_from_template(rs: dict) -> dict:
    template = (rs.get("spec") or {}).get("template") or {}
    tmeta = template.get("metadata") or {}
    meta = {"generateName": f"{rs['metadata']['name']}-",
            "namespace": rs["metadata"]["namespace"],
            "labels": dict(tmeta.get("labels") or {}),
            "ownerReferences": [owner_reference(rs)]}
    if tmeta.get("annotations"):
        meta["annotations"] = dict(tmeta["annotations"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": dict(template.get("spec") or {})}


_PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}


def deletion_order(pods: list[dict]) -> list[dict]:
    """Pods to delete first come first: unassigned, pending, not ready, newest."""
    def rank(pod):
        return (bool((pod.get("spec") or {}).get("nodeName")),
                _PHASE_RANK.get((pod.get("status") or {}).get("phase"), 0),
                is_pod_ready(pod),
                # newest first: invert the timestamp's order with a descending sort key
                [-ord(c) for c in pod["metadata"].get("creationTimestamp") or ""])
    return sorted(pods, key=rank)


def replica_status(rs: dict, pods: list[dict], now: datetime) -> dict:
    spec = rs.get("spec") or {}
    template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    min_ready = int(spec.get("minReadySeconds") or 0)
    status = {"replicas": len(pods),
              "fullyLabeledReplicas": sum(
                  1 for p in pods if all((p["metadata"].get("labels") or {}).get(k) == v
                                         for k, v in template_labels.items())),
              "readyReplicas": sum(1 for p in pods if is_pod_ready(p)),
              "availableReplicas": sum(1 for p in pods if is_pod_available(p, min_ready, now)),
              "observedGeneration": rs["metadata"].get("generation", 1)}
    conditions = (rs.get("status") or {}).get("conditions")
    if conditions:
        status["conditions"] = conditions
    return status


class ReplicaSetController(QueueController):
    name = "replicaset-controller"

    def __init__(self, api, pods, replicasets, events=None, burst: int = BURST):
        super().__init__(api, events)
        self.pods, self.replicasets, self.burst = pods, replicasets, burst
        self.expectations = Expectations()
        replicasets.add_handler(self._rs_changed, lambda _o, n: self._rs_changed(n),
                                self._rs_deleted)
        pods.add_handler(self._pod_added, self._pod_updated, self._pod_deleted)

    # -- handlers ----------------------------------------------------------------------

    def _rs_changed(self, rs: dict) -> None:
        self.queue.add(meta_namespace_key(rs))

    def _rs_deleted(self, rs: dict) -> None:
        key = meta_namespace_key(rs)
        self.expectations.forget(key)
        self.queue.add(key)

    def _owner_key(self, pod: dict) -> str | None:
        ref = controller_ref(pod)
        if not ref or ref.get("kind") != "ReplicaSet":
            return None
        key = f"{pod['metadata']['namespace']}/{ref['name']}"
        rs = self.replicasets.store.get(key)
        return key if rs is not None and rs["metadata"].get("uid") == ref.get("uid") else None

    def _enqueue_matching(self, pod: dict) -> None:
        for rs in self.replicasets.store.by_index("namespace", pod["metadata"]["namespace"]):
            if selector_matches((rs.get("spec") or {}).get("selector"),
                                pod["metadata"].get("labels")):
                self.queue.add(meta_namespace_key(rs))

    def _pod_added(self, pod: dict) -> None:
        if is_deleting(pod):
            self._pod_deleted(pod)
            return
        key = self._owner_key(pod)
        if key:
            self.expectations.creation_observed(key)
            self.queue.add(key)
        elif controller_ref(pod) is None:
            self._enqueue_matching(pod)

    def _pod_updated(self, old: dict, new: dict) -> None:
        if is_deleting(new) and not is_deleting(old):
            key = self._owner_key(new)
            if key:
                self.expectations.deletion_observed(key, meta_namespace_key(new))
        old_key, new_key = self._owner_key(old), self._owner_key(new)
        if old_key and old_key != new_key:
            self.queue.add(old_key)
        if new_key:
            self.queue.add(new_key)
        elif controller_ref(new) is None and (
                old["metadata"].get("labels") != new["metadata"].get("labels")
                or controller_ref(old) is not None):
            self._enqueue_matching(new)

    def _pod_deleted(self, pod: dict) -> None:
        key = self._owner_key(pod)
        if key:
            self.expectations.deletion_observed(key, meta_namespace_key(pod))
            self.queue.add(key)

    # -- sync --------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        rs = self.replicasets.store.get(key)
        if rs is None:
            self.expectations.forget(key)
            return
        owned = await self.claim_pods(rs)
        active = [p for p in owned if is_active_pod(p)]
        if self.expectations.satisfied(key) and not is_deleting(rs):
            await self.manage(key, rs, active)
        await self.update_status(rs, active)

    async def claim_pods(self, rs: dict) -> list[dict]:
        uid = rs["metadata"]["uid"]
        selector = (rs.get("spec") or {}).get("selector")
        owned = []
        for pod in self.pods.store.by_index("namespace", rs["metadata"]["namespace"]):
            ref = controller_ref(pod)
            matches = selector_matches(selector, pod["metadata"].get("labels"))
            if ref is not None:
                if ref.get("uid") != uid:
                    continue
                if matches:
                    owned.append(pod)
                elif not is_deleting(pod):
                    await self._set_owners(pod, [r for r in pod["metadata"]["ownerReferences"]
                                                 if r.get("uid") != uid])
            elif matches and not is_deleting(pod) and not is_deleting(rs):
                adopted = await self._set_owners(
                    pod, [*(pod["metadata"].get("ownerReferences") or []),
                          owner_reference(rs)])
                if adopted is not None:
                    owned.append(adopted)
        return owned

    async def _set_owners(self, pod: dict, refs: list[dict]) -> dict | None:
        meta = pod["metadata"]
        try:
            # The uid makes the patch fail if the pod was replaced by a namesake meanwhile.
            return await self.api.patch("pods", meta["name"], {"metadata": {
                "ownerReferences": refs or None, "uid": meta["uid"],
                "resourceVersion": meta["resourceVersion"]}}, meta["namespace"])
        except NotFound:
            return None

    async def manage(self, key: str, rs: dict, active: list[dict]) -> None:
        want = int((rs.get("spec") or {}).get("replicas", 1))
        diff = len(active) - want
        if diff < 0:
            await self._create(key, rs, min(-diff, self.burst))
        elif diff > 0:
            await self._delete(key, rs, deletion_order(active)[:min(diff, self.burst)])

    async def _create(self, key: str, rs: dict, count: int) -> None:
        self.expectations.expect(key, adds=count)
        ns, name = rs["metadata"]["namespace"], rs["metadata"]["name"]
        created, batch = 0, 1
        while created < count:
            size = min(batch, count - created)
            results = await asyncio.gather(
                *(self.api.create("pods", pod_from_template(rs), ns) for _ in range(size)),
                return_exceptions=True)
            errors = [r for r in results if isinstance(r, BaseException)]
            created += size - len(errors)
            for pod in results:
                if not isinstance(pod, BaseException):
                    self.events.record(rs, "SuccessfulCreate",
                                       f"Created pod: {pod['metadata']['name']}")
            if errors:
                # Those that failed, and those never tried, will never be observed.
                self.expectations.lower(key, adds=count - created)
                self.events.record(rs, "FailedCreate", f"Error creating: {errors[0]}",
                                   "Warning")
                raise errors[0]
            batch *= 2
        log.info("replicaset %s/%s: created %d pods", ns, name, created)

    async def _delete(self, key: str, rs: dict, victims: list[dict]) -> None:
        keys = {meta_namespace_key(p) for p in victims}
        self.expectations.expect(key, deletes=keys)

        async def delete(pod):
            meta = pod["metadata"]
            try:
                await self.api.delete("pods", meta["name"], meta["namespace"],
                                      preconditions={"uid": meta["uid"]})
                self.events.record(rs, "SuccessfulDelete", f"Deleted pod: {meta['name']}")
            except NotFound:
                self.expectations.deletion_observed(key, meta_namespace_key(pod))
        results = await asyncio.gather(*(delete(p) for p in victims), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            self.expectations.lower(key, pod_keys=keys)
            raise errors[0]

    async def update_status(self, rs: dict, active: list[dict]) -> None:
        now = datetime.now(UTC)
        status = replica_status(rs, active, now)
        current = rs.get("status") or {}
        if any(current.get(k, 0) != v for k, v in status.items() if k != "conditions"):
            try:
                await self.api.update_status("replicasets", {**rs, "status": status})
            except Conflict:
                # The Deployment controller scaled it meanwhile: the pod counts still
                # hold, so write them onto the fresh object once.
                fresh = await self.api.get("replicasets", rs["metadata"]["name"],
                                           rs["metadata"]["namespace"])
                await self.api.update_status("replicasets", {**fresh, "status": status})
        min_ready = int((rs.get("spec") or {}).get("minReadySeconds") or 0)
        if min_ready and status["readyReplicas"] > status["availableReplicas"]:
            self.queue.add_after(meta_namespace_key(rs), min_ready)  # to count them then
