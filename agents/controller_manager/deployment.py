"""The Deployment controller.

sync(namespace/name), level-triggered, from the informer caches:
1. Claim ReplicaSets (adopt matching orphans, release those that stopped matching).
2. The *new* ReplicaSet is the one whose pod template equals the Deployment's (ignoring
   the pod-template-hash label); all others are old. Its revision annotation becomes
   max(old revisions) + 1 — so `kubectl rollout undo`, which copies an old ReplicaSet's
   template back into the Deployment, makes that ReplicaSet new again with the next
   revision — and the Deployment carries the same revision annotation.
3. RollingUpdate: grow the new ReplicaSet while all pods ≤ replicas + maxSurge; shrink
   old ones (unhealthy pods first) while available pods stay ≥ replicas − maxUnavailable.
   Recreate: scale old ReplicaSets to 0, wait until their pods are gone, then scale the
   new one up.
4. Once complete, delete old ReplicaSets with 0 replicas beyond revisionHistoryLimit.
5. Status: replicas / updated / ready / available / unavailable, observedGeneration,
   conditions Available and Progressing (NewReplicaSetCreated, ReplicaSetUpdated,
   NewReplicaSetAvailable, ProgressDeadlineExceeded) as `kubectl rollout status` reads them.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from datetime import UTC, datetime

from agents.kube.errors import AlreadyExists, NotFound
from agents.kube.resources import meta_namespace_key

from . import rollout
from .base import QueueController
from .objects import (
    controller_ref,
    is_deleting,
    owner_reference,
    parse_time,
    selector_matches,
)

log = logging.getLogger(__name__)

SKIPPED_ANNOTATIONS = {"kubectl.kubernetes.io/last-applied-configuration", rollout.REVISION,
                       rollout.REVISION_HISTORY, rollout.DESIRED_REPLICAS,
                       rollout.MAX_REPLICAS}


def _spec(obj: dict) -> dict:
    return obj.get("spec") or {}


def _replicas(rs: dict) -> int:
    return int(_spec(rs).get("replicas", 0) or 0)


def _status(obj: dict, field: str) -> int:
    return int((obj.get("status") or {}).get(field, 0) or 0)


def _pods(rs: dict) -> int:
    """Pods a ReplicaSet may still have: right after we scale it down, its status still
    counts the pods its controller has not yet deleted. Surging on spec.replicas alone
    would let the new ReplicaSet's pods appear before those go (maxSurge broken)."""
    return max(_replicas(rs), _status(rs, "replicas"))


def _available(rs: dict) -> int:
    """Available pods we may count on: never more than spec.replicas, because right after
    we scale a ReplicaSet down its status still counts the pods being removed."""
    return min(_replicas(rs), _status(rs, "availableReplicas"))


def _created(rs: dict) -> tuple:
    return (rs["metadata"].get("creationTimestamp") or "", rs["metadata"]["name"])


def fenceposts(d: dict) -> tuple[int, int]:
    spec = _spec(d)
    replicas = int(spec.get("replicas", 1))
    strategy = spec.get("strategy") or {}
    if strategy.get("type") == "Recreate":
        return 0, 0
    ru = strategy.get("rollingUpdate") or {}
    return rollout.resolve_fenceposts(ru.get("maxSurge"), ru.get("maxUnavailable"), replicas)


def find_new(d: dict, rss: list[dict]) -> dict | None:
    template = _spec(d).get("template") or {}
    for rs in sorted(rss, key=_created):
        if rollout.same_template(_spec(rs).get("template") or {}, template):
            return rs
    return None


def _condition(conditions: list[dict], kind: str) -> dict | None:
    return next((c for c in conditions if c.get("type") == kind), None)


def set_condition(conditions: list[dict], kind: str, status: str, reason: str,
                  message: str, now: str) -> list[dict]:
    """Replace one condition; lastTransitionTime moves only when the status changes and
    lastUpdateTime only when something about it changes."""
    old = _condition(conditions, kind)
    if old and (old.get("status"), old.get("reason"), old.get("message")) == (
            status, reason, message):
        return conditions
    new = {"type": kind, "status": status, "reason": reason, "message": message,
           "lastUpdateTime": now,
           "lastTransitionTime": old["lastTransitionTime"]
           if old and old.get("status") == status and old.get("lastTransitionTime") else now}
    return [*(c for c in conditions if c.get("type") != kind), new]


def deployment_status(d: dict, new: dict | None, all_rs: list[dict], *, created: bool,
                      now: datetime) -> dict:
    spec = _spec(d)
    replicas = int(spec.get("replicas", 1))
    _, max_unavailable = fenceposts(d)
    current = d.get("status") or {}
    status = {"observedGeneration": d["metadata"].get("generation", 1),
              "replicas": sum(_status(rs, "replicas") for rs in all_rs),
              "updatedReplicas": _status(new, "replicas") if new else 0,
              "readyReplicas": sum(_status(rs, "readyReplicas") for rs in all_rs),
              "availableReplicas": sum(_status(rs, "availableReplicas") for rs in all_rs)}
    status["unavailableReplicas"] = max(0, sum(_replicas(rs) for rs in all_rs)
                                        - status["availableReplicas"])
    if current.get("collisionCount"):
        status["collisionCount"] = current["collisionCount"]
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    conditions = copy.deepcopy(current.get("conditions") or [])
    if status["availableReplicas"] >= replicas - max_unavailable:
        conditions = set_condition(conditions, "Available", "True", "MinimumReplicasAvailable",
                                   "Deployment has minimum availability.", stamp)
    else:
        conditions = set_condition(conditions, "Available", "False",
                                   "MinimumReplicasUnavailable",
                                   "Deployment does not have minimum availability.", stamp)
    name = new["metadata"]["name"] if new else ""
    complete = (status["updatedReplicas"] == replicas and status["replicas"] == replicas
                and status["availableReplicas"] == replicas)
    progressing = _condition(conditions, "Progressing")
    if spec.get("paused"):
        pass
    elif complete and new is not None:
        conditions = set_condition(conditions, "Progressing", "True", "NewReplicaSetAvailable",
                                   f'ReplicaSet "{name}" has successfully progressed.', stamp)
    elif created:
        conditions = set_condition(conditions, "Progressing", "True", "NewReplicaSetCreated",
                                   f'Created new replica set "{name}"', stamp)
    elif new is not None and (progressing is None or _progressed(current, status)
                              or progressing.get("reason") == "NewReplicaSetAvailable"):
        conditions = [c for c in conditions if c.get("type") != "Progressing"]
        conditions.append({"type": "Progressing", "status": "True",
                           "reason": "ReplicaSetUpdated",
                           "message": f'ReplicaSet "{name}" is progressing.',
                           "lastUpdateTime": stamp,
                           "lastTransitionTime": (progressing or {}).get(
                               "lastTransitionTime") or stamp})
    elif new is not None and progressing is not None and progressing.get("status") == "True":
        deadline = spec.get("progressDeadlineSeconds")
        since = parse_time(progressing.get("lastUpdateTime"))
        if deadline is not None and since and (now - since).total_seconds() > deadline:
            conditions = set_condition(conditions, "Progressing", "False",
                                       "ProgressDeadlineExceeded",
                                       f'ReplicaSet "{name}" has timed out progressing.', stamp)
    status["conditions"] = sorted(conditions, key=lambda c: c["type"] != "Available")
    return status


def _progressed(old: dict, new: dict) -> bool:
    return any(new.get(k, 0) > old.get(k, 0) for k in ("updatedReplicas", "availableReplicas",
                                                        "readyReplicas")) or \
        new.get("replicas", 0) < old.get("replicas", 0)


class DeploymentController(QueueController):
    name = "deployment-controller"

    def __init__(self, api, deployments, replicasets, pods, events=None):
        super().__init__(api, events)
        self.deployments, self.replicasets, self.pods = deployments, replicasets, pods
        deployments.add_handler(self._enqueue, lambda _o, n: self._enqueue(n), self._enqueue)
        replicasets.add_handler(self._rs_changed, self._rs_updated, self._rs_changed)
        pods.add_handler(on_delete=self._pod_deleted)

    # -- handlers ----------------------------------------------------------------------

    def _enqueue(self, d: dict) -> None:
        self.queue.add(meta_namespace_key(d))

    def _owner_of(self, obj: dict, kind: str) -> str | None:
        ref = controller_ref(obj)
        if ref and ref.get("kind") == kind:
            return f"{obj['metadata']['namespace']}/{ref['name']}"
        return None

    def _rs_changed(self, rs: dict) -> None:
        key = self._owner_of(rs, "Deployment")
        if key:
            self.queue.add(key)
        elif controller_ref(rs) is None:
            for d in self.deployments.store.by_index("namespace", rs["metadata"]["namespace"]):
                if selector_matches(_spec(d).get("selector"), rs["metadata"].get("labels")):
                    self._enqueue(d)

    def _rs_updated(self, old: dict, new: dict) -> None:
        old_key = self._owner_of(old, "Deployment")
        if old_key and old_key != self._owner_of(new, "Deployment"):
            self.queue.add(old_key)
        self._rs_changed(new)

    def _pod_deleted(self, pod: dict) -> None:
        # Recreate waits for old pods to be gone: a pod's end may unblock a Deployment.
        rs_key = self._owner_of(pod, "ReplicaSet")
        rs = self.replicasets.store.get(rs_key) if rs_key else None
        d_key = self._owner_of(rs, "Deployment") if rs else None
        if d_key:
            self.queue.add(d_key)

    # -- sync --------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        d = self.deployments.store.get(key)
        if d is None or is_deleting(d):
            return
        selector = _spec(d).get("selector")
        if not selector or not (selector.get("matchLabels") or selector.get("matchExpressions")):
            self.events.record(d, "SelectingAll", "This deployment is selecting all pods. A "
                               "non-empty selector is required.", "Warning")
            return
        rss = await self.claim_replicasets(d)
        if _spec(d).get("paused"):
            await self.sync_status(d, find_new(d, rss), rss, created=False)
            return
        if (_spec(d).get("strategy") or {}).get("type") == "Recreate":
            await self.recreate(d, rss)
        else:
            await self.rolling_update(d, rss)

    async def claim_replicasets(self, d: dict) -> list[dict]:
        uid = d["metadata"]["uid"]
        selector = _spec(d).get("selector")
        owned = []
        for rs in self.replicasets.store.by_index("namespace", d["metadata"]["namespace"]):
            ref = controller_ref(rs)
            matches = selector_matches(selector, rs["metadata"].get("labels"))
            if ref is not None:
                if ref.get("uid") != uid:
                    continue
                if matches:
                    owned.append(rs)
                elif not is_deleting(rs):
                    await self._set_owners(rs, [r for r in rs["metadata"]["ownerReferences"]
                                                if r.get("uid") != uid])
            elif matches and not is_deleting(rs):
                adopted = await self._set_owners(
                    rs, [*(rs["metadata"].get("ownerReferences") or []), owner_reference(d)])
                if adopted is not None:
                    owned.append(adopted)
        return owned

    async def _set_owners(self, rs: dict, refs: list[dict]) -> dict | None:
        meta = rs["metadata"]
        try:
            return await self.api.patch("replicasets", meta["name"], {"metadata": {
                "ownerReferences": refs or None, "uid": meta["uid"],
                "resourceVersion": meta["resourceVersion"]}}, meta["namespace"])
        except NotFound:
            return None

    # -- new and old ReplicaSets, revisions --------------------------------------------

    async def new_and_old(self, d: dict, rss: list[dict], create: bool,
                          initial_replicas: int = 0) -> tuple[dict, dict | None, list[dict],
                                                              bool]:
        """(deployment, new RS or None, old RSs, whether the new RS was created now),
        with the revision annotations brought up to date."""
        new = find_new(d, rss)
        old = sorted((rs for rs in rss if rs is not new), key=_created)
        revision = max((rollout.revision_of(rs) for rs in old), default=0) + 1
        created = False
        if new is not None:
            new = await self._sync_rs_annotations(d, new, revision)
        elif create:
            new = await self._create_new(d, revision, initial_replicas)
            created = True
        if new is not None:
            d = await self._set_deployment_revision(d, rollout.revision_of(new))
        return d, new, old, created

    def _annotations_for_rs(self, d: dict, rs_annotations: dict, revision: int) -> dict:
        out = dict(rs_annotations)
        for key, value in (d["metadata"].get("annotations") or {}).items():
            if key not in SKIPPED_ANNOTATIONS:
                out[key] = value
        old_revision = rollout.revision_of({"metadata": {"annotations": out}})
        if old_revision < revision:
            if old_revision:
                history = [h for h in (out.get(rollout.REVISION_HISTORY) or "").split(",") if h]
                out[rollout.REVISION_HISTORY] = ",".join([*history, str(old_revision)])
            out[rollout.REVISION] = str(revision)
        surge, _ = fenceposts(d)
        replicas = int(_spec(d).get("replicas", 1))
        out[rollout.DESIRED_REPLICAS] = str(replicas)
        out[rollout.MAX_REPLICAS] = str(replicas + surge)
        return out

    async def _sync_rs_annotations(self, d: dict, rs: dict, revision: int) -> dict:
        current = rs["metadata"].get("annotations") or {}
        wanted = self._annotations_for_rs(d, current, revision)
        if wanted == current:
            return rs
        return await self.api.update("replicasets", {
            **rs, "metadata": {**rs["metadata"], "annotations": wanted}})

    async def _set_deployment_revision(self, d: dict, revision: int) -> dict:
        annotations = d["metadata"].get("annotations") or {}
        if annotations.get(rollout.REVISION) == str(revision):
            return d
        return await self.api.update("deployments", {
            **d, "metadata": {**d["metadata"],
                              "annotations": {**annotations, rollout.REVISION: str(revision)}}})

    async def _create_new(self, d: dict, revision: int, replicas: int) -> dict:
        spec = _spec(d)
        collisions = int((d.get("status") or {}).get("collisionCount") or 0)
        template = copy.deepcopy(spec.get("template") or {})
        digest = rollout.template_hash(template, collisions)
        tmeta = template.setdefault("metadata", {})
        tmeta["labels"] = {**(tmeta.get("labels") or {}), rollout.HASH_LABEL: digest}
        selector = copy.deepcopy(spec.get("selector") or {})
        selector["matchLabels"] = {**(selector.get("matchLabels") or {}),
                                   rollout.HASH_LABEL: digest}
        name = f"{d['metadata']['name']}-{digest}"
        rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
              "metadata": {"name": name, "namespace": d["metadata"]["namespace"],
                           "labels": dict(tmeta["labels"]),
                           "annotations": self._annotations_for_rs(d, {}, revision),
                           "ownerReferences": [owner_reference(d)]},
              "spec": {"replicas": replicas, "minReadySeconds": spec.get("minReadySeconds", 0),
                       "selector": selector, "template": template}}
        try:
            created = await self.api.create("replicasets", rs, d["metadata"]["namespace"])
        except AlreadyExists:
            existing = self.replicasets.store.get(f"{d['metadata']['namespace']}/{name}")
            if existing is not None and rollout.same_template(
                    _spec(existing).get("template") or {}, spec.get("template") or {}):
                raise  # ours, the cache has not caught up yet: retry later
            # A hash collision with a different template: bump collisionCount, retry.
            await self.api.update_status("deployments", {**d, "status": {
                **(d.get("status") or {}), "collisionCount": collisions + 1}})
            raise
        self.events.record(d, "ScalingReplicaSet",
                           f"Scaled up replica set {name} from 0 to {replicas}")
        return created

    async def scale(self, d: dict, rs: dict, replicas: int) -> dict:
        old = _replicas(rs)
        if old == replicas:
            return rs
        annotations = self._annotations_for_rs(d, rs["metadata"].get("annotations") or {},
                                               rollout.revision_of(rs))
        updated = await self.api.update("replicasets", {
            **rs, "metadata": {**rs["metadata"], "annotations": annotations},
            "spec": {**_spec(rs), "replicas": replicas}})
        way = "up" if replicas > old else "down"
        self.events.record(d, "ScalingReplicaSet", f"Scaled {way} replica set "
                           f"{rs['metadata']['name']} from {old} to {replicas}")
        return updated

    # -- strategies --------------------------------------------------------------------

    async def rolling_update(self, d: dict, rss: list[dict]) -> None:
        replicas = int(_spec(d).get("replicas", 1))
        surge, unavailable = fenceposts(d)
        all_current = sum(_pods(rs) for rs in rss)
        first = rollout.new_rs_replicas(replicas, surge, 0, all_current)
        d, new, old, created = await self.new_and_old(d, rss, True, first)
        all_rs = [new, *old]
        if not created:
            target = rollout.new_rs_replicas(replicas, surge, _replicas(new),
                                             sum(_pods(rs) for rs in all_rs))
            if target != _replicas(new):
                new = await self.scale(d, new, target)
                await self.sync_status(d, new, [new, *old], created=False)
                return
        old = await self._scale_down_old(d, new, old, replicas, unavailable)
        if all(_replicas(rs) == 0 for rs in old) and _status(new, "availableReplicas") \
                == replicas == _replicas(new):
            old = await self._cleanup(d, old)
        await self.sync_status(d, new, [new, *old], created=created)

    async def _scale_down_old(self, d, new, old, replicas, unavailable) -> list[dict]:
        if not any(_replicas(rs) for rs in old):
            return old
        all_rs = [new, *old]
        budget = rollout.max_scale_down(replicas, unavailable,
                                        sum(_replicas(rs) for rs in all_rs),
                                        _replicas(new), _available(new))
        if budget <= 0:
            return old
        result = []
        cleaned = 0
        for rs in old:  # oldest first: unhealthy pods go before any available one
            unhealthy = max(0, _replicas(rs) - _available(rs))
            take = min(unhealthy, budget - cleaned)
            if take > 0:
                rs = await self.scale(d, rs, _replicas(rs) - take)
                cleaned += take
            result.append(rs)
        available = sum(_available(rs) for rs in [new, *result])
        remaining = available - (replicas - unavailable)
        final = []
        for rs in result:
            take = min(_replicas(rs), max(0, remaining))
            if take > 0:
                rs = await self.scale(d, rs, _replicas(rs) - take)
                remaining -= take
            final.append(rs)
        return final

    async def recreate(self, d: dict, rss: list[dict]) -> None:
        d, new, old, _ = await self.new_and_old(d, rss, False)
        scaled = [await self.scale(d, rs, 0) for rs in old]
        if any(_replicas(rs) for rs in old) or self._old_pods_remain(old):
            await self.sync_status(d, new, [rs for rs in [new, *scaled] if rs], created=False)
            return
        replicas = int(_spec(d).get("replicas", 1))
        d, new, old, created = await self.new_and_old(d, rss, True, replicas)
        new = await self.scale(d, new, replicas)
        if _status(new, "availableReplicas") == replicas:
            old = await self._cleanup(d, old)
        await self.sync_status(d, new, [new, *old], created=created)

    def _old_pods_remain(self, old: list[dict]) -> bool:
        for rs in old:
            for pod in self.pods.store.by_index("owner", rs["metadata"]["uid"]):
                if (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                    return True
        return False

    async def _cleanup(self, d: dict, old: list[dict]) -> list[dict]:
        limit = _spec(d).get("revisionHistoryLimit", 10)
        if limit is None:
            return old
        idle = [rs for rs in old if _replicas(rs) == 0 and _status(rs, "replicas") == 0
                and not is_deleting(rs)]
        doomed = sorted(idle, key=rollout.revision_of)[:max(0, len(idle) - int(limit))]
        for rs in doomed:
            with contextlib.suppress(NotFound):
                await self.api.delete("replicasets", rs["metadata"]["name"],
                                      rs["metadata"]["namespace"],
                                      preconditions={"uid": rs["metadata"]["uid"]})
        return [rs for rs in old if rs not in doomed]

    async def sync_status(self, d: dict, new: dict | None, all_rs: list[dict],
                          created: bool) -> None:
        status = deployment_status(d, new, all_rs, created=created, now=datetime.now(UTC))
        if status != (d.get("status") or {}):
            await self.api.update_status("deployments", {**d, "status": status})
        progressing = _condition(status["conditions"], "Progressing")
        deadline = _spec(d).get("progressDeadlineSeconds")
        if progressing and progressing.get("reason") == "ReplicaSetUpdated" and deadline:
            self.queue.add_after(meta_namespace_key(d), float(deadline) + 1)


__all__ = ["DeploymentController", "deployment_status", "find_new"]
