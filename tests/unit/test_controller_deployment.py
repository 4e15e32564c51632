"""Deployment controller, sample-controller style (seed, sync once, compare), plus the
pure rollout arithmetic and a simulated rollout that checks maxSurge / maxUnavailable at
every step."""

import asyncio
import copy
from datetime import UTC, datetime

import pytest

from agents.controller_manager import rollout
from agents.controller_manager.base import EventRecorder
from agents.controller_manager.deployment import DeploymentController, deployment_status
from agents.kube.informer import Informer, by_namespace, by_owner_uid
from agents.kube.testing import FakeApi

pytestmark = pytest.mark.unit

INDEX = {"namespace": by_namespace, "owner": by_owner_uid}
TEMPLATE = {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "v1"}]}}


def deployment(replicas=4, image="v1", strategy=None, **meta):
    template = copy.deepcopy(TEMPLATE)
    template["spec"]["containers"][0]["image"] = image
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "uid": "d-uid",
                         "generation": 1, **meta},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": template, "revisionHistoryLimit": 10,
                     "progressDeadlineSeconds": 600,
                     "strategy": strategy or {"type": "RollingUpdate", "rollingUpdate": {
                         "maxSurge": "25%", "maxUnavailable": "25%"}}}}


def replicaset(name, image, replicas, available=None, revision=1, uid=None):
    template = copy.deepcopy(TEMPLATE)
    template["spec"]["containers"][0]["image"] = image
    template["metadata"]["labels"]["pod-template-hash"] = name
    available = replicas if available is None else available
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": "default", "uid": uid or f"{name}-uid",
                         "labels": {"app": "web", "pod-template-hash": name},
                         "creationTimestamp": f"2026-01-01T00:00:0{revision}Z",
                         "annotations": {rollout.REVISION: str(revision)},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                                              "name": "web", "uid": "d-uid",
                                              "controller": True}]},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": template},
            "status": {"replicas": replicas, "readyReplicas": available,
                       "availableReplicas": available}}


class Quiet(EventRecorder):
    def record(self, obj, reason, message, kind="Normal"):
        self.recorded = [*getattr(self, "recorded", []), (reason, message)]


async def controller(api):
    infs = [Informer(api, "deployments", indexers={"namespace": by_namespace}),
            Informer(api, "replicasets", indexers=INDEX),
            Informer(api, "pods", indexers=INDEX)]
    for inf in infs:
        await inf.list_and_replace()
    ctrl = DeploymentController(api, *infs, Quiet(api, "t"))
    api.clear_actions()
    return ctrl


def sync_once(api):
    async def body():
        ctrl = await controller(api)
        await ctrl.sync("default/web")
        return ctrl
    return asyncio.run(body())


def rs_named(api, name):
    return next(r for r in api.objects("replicasets") if r["metadata"]["name"] == name)


def test_fenceposts_round_surge_up_and_unavailable_down():
    assert rollout.resolve_fenceposts("25%", "25%", 10) == (3, 2)
    assert rollout.resolve_fenceposts(0, 0, 5) == (0, 1)
    assert rollout.resolve_fenceposts(2, "50%", 3) == (2, 1)
    with pytest.raises(ValueError, match="percentage"):
        rollout.resolve_fenceposts("lots", 1, 3)


def test_template_hash_is_stable_and_ignores_its_own_label():
    labelled = copy.deepcopy(TEMPLATE)
    labelled["metadata"]["labels"]["pod-template-hash"] = "x"
    assert rollout.template_hash(TEMPLATE) == rollout.template_hash(labelled)
    assert rollout.template_hash(TEMPLATE) != rollout.template_hash(TEMPLATE, 1)
    assert set(rollout.template_hash(TEMPLATE)) <= set(rollout.SAFE_ALPHABET)


def test_new_deployment_creates_first_replicaset_with_revision_1():
    api = FakeApi()
    api.seed("deployments", deployment(replicas=4))
    ctrl = sync_once(api)
    [rs] = api.objects("replicasets")
    digest = rollout.template_hash(TEMPLATE)
    assert rs["metadata"]["name"] == f"web-{digest}"
    assert rs["spec"]["replicas"] == 4
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", "pod-template-hash": digest}
    assert rs["spec"]["template"]["metadata"]["labels"]["pod-template-hash"] == digest
    assert rs["metadata"]["annotations"][rollout.REVISION] == "1"
    assert rs["metadata"]["annotations"][rollout.MAX_REPLICAS] == "5"
    assert rs["metadata"]["ownerReferences"][0]["uid"] == "d-uid"
    d = api.objects("deployments")[0]
    assert d["metadata"]["annotations"][rollout.REVISION] == "1"
    progressing = {c["type"]: c for c in d["status"]["conditions"]}["Progressing"]
    assert progressing["reason"] == "NewReplicaSetCreated"
    assert d["status"]["observedGeneration"] == 1
    assert ("ScalingReplicaSet", f"Scaled up replica set web-{digest} from 0 to 4") in \
        ctrl.events.recorded


def test_template_change_surges_new_replicaset_within_max_surge():
    api = FakeApi()
    api.seed("deployments", deployment(replicas=4, image="v2"))
    api.seed("replicasets", replicaset("old", "v1", 4))
    sync_once(api)
    new = next(r for r in api.objects("replicasets") if r["metadata"]["name"] != "old")
    assert new["spec"]["replicas"] == 1            # 4 + maxSurge 1 = 5 pods at most
    assert new["metadata"]["annotations"][rollout.REVISION] == "2"
    assert rs_named(api, "old")["spec"]["replicas"] == 3  # maxUnavailable 1, all 4 available


def test_old_pods_are_not_removed_below_minimum_availability():
    api = FakeApi()
    api.seed("deployments", deployment(replicas=4, image="v2"))
    new_name = f"web-{rollout.template_hash(deployment(image='v2')['spec']['template'])}"
    api.seed("replicasets", replicaset("old", "v1", 3),
             {**replicaset(new_name, "v2", 2, available=0, revision=2)})
    sync_once(api)
    # 5 pods (the max), 3 available = minimum (4 - 1): nothing may go, nothing may come.
    assert rs_named(api, "old")["spec"]["replicas"] == 3
    assert rs_named(api, new_name)["spec"]["replicas"] == 2


def test_stale_status_of_a_just_shrunk_replicaset_is_not_counted_twice():
    api = FakeApi()
    api.seed("deployments", deployment(replicas=4, image="v2"))
    new_name = f"web-{rollout.template_hash(deployment(image='v2')['spec']['template'])}"
    old = replicaset("old", "v1", 3)
    old["status"] = {"replicas": 4, "readyReplicas": 4, "availableReplicas": 4}  # lagging
    api.seed("replicasets", old, replicaset(new_name, "v2", 2, available=1, revision=2))
    sync_once(api)
    # Really available: 3 old + 1 new = 4; the minimum is 3: only one old pod may go.
    assert rs_named(api, "old")["spec"]["replicas"] == 2


def test_new_replicaset_waits_for_the_old_pods_to_go_before_surging_again():
    api = FakeApi()
    api.seed("deployments", deployment(replicas=4, image="v2"))
    new_name = f"web-{rollout.template_hash(deployment(image='v2')['spec']['template'])}"
    old = replicaset("old", "v1", 3)
    old["status"] = {"replicas": 4, "readyReplicas": 4, "availableReplicas": 4}  # 1 to delete
    api.seed("replicasets", old, replicaset(new_name, "v2", 1, revision=2))
    sync_once(api)
    # 4 old pods still exist + 1 new = 5, the most maxSurge allows: no new pod yet.
    assert rs_named(api, new_name)["spec"]["replicas"] == 1


def test_recreate_scales_old_to_zero_first_and_waits_for_pods():
    api = FakeApi()
    api.seed("deployments", deployment(replicas=2, image="v2", strategy={"type": "Recreate"}))
    api.seed("replicasets", replicaset("old", "v1", 2))
    api.seed("pods", {"metadata": {"name": "old-a", "namespace": "default",
                                   "labels": {"app": "web"},
                                   "ownerReferences": [{"kind": "ReplicaSet", "name": "old",
                                                        "uid": "old-uid",
                                                        "controller": True}]},
                      "status": {"phase": "Running"}})
    sync_once(api)
    assert rs_named(api, "old")["spec"]["replicas"] == 0
    assert len(api.objects("replicasets")) == 1  # new one only once old pods are gone


def test_recreate_creates_new_replicaset_once_old_pods_are_gone():
    api = FakeApi()
    api.seed("deployments", deployment(replicas=2, image="v2", strategy={"type": "Recreate"}))
    api.seed("replicasets", replicaset("old", "v1", 0))
    sync_once(api)
    new = next(r for r in api.objects("replicasets") if r["metadata"]["name"] != "old")
    assert new["spec"]["replicas"] == 2


def test_undo_makes_the_old_replicaset_new_again_with_the_next_revision():
    api = FakeApi()
    # Revision 2 (v2) is current; `rollout undo` put the v1 template back.
    api.seed("deployments", deployment(replicas=2, image="v1",
                                       annotations={rollout.REVISION: "2"}))
    api.seed("replicasets", replicaset("r1", "v1", 0, revision=1),
             replicaset("r2", "v2", 2, revision=2))
    sync_once(api)
    r1 = rs_named(api, "r1")
    assert r1["metadata"]["annotations"][rollout.REVISION] == "3"
    assert r1["metadata"]["annotations"][rollout.REVISION_HISTORY] == "1"
    assert r1["spec"]["replicas"] == 1
    assert api.objects("deployments")[0]["metadata"]["annotations"][rollout.REVISION] == "3"


def test_complete_rollout_reports_new_replicaset_available_and_prunes_history():
    api = FakeApi()
    d = deployment(replicas=2, image="v3")
    d["spec"]["revisionHistoryLimit"] = 1
    new_name = f"web-{rollout.template_hash(d['spec']['template'])}"
    api.seed("deployments", d)
    api.seed("replicasets", replicaset("r1", "v1", 0, revision=1),
             replicaset("r2", "v2", 0, revision=2),
             replicaset(new_name, "v3", 2, revision=3))
    sync_once(api)
    assert sorted(r["metadata"]["name"] for r in api.objects("replicasets")) == sorted(
        ["r2", new_name])
    status = api.objects("deployments")[0]["status"]
    conds = {c["type"]: c for c in status["conditions"]}
    assert conds["Progressing"]["reason"] == "NewReplicaSetAvailable"
    assert conds["Available"]["status"] == "True"
    assert (status["replicas"], status["updatedReplicas"], status["availableReplicas"]) == (
        2, 2, 2)


def test_status_marks_progress_deadline_exceeded():
    d = deployment(replicas=2, image="v2")
    d["spec"]["progressDeadlineSeconds"] = 60
    d["status"] = {"conditions": [{"type": "Progressing", "status": "True",
                                   "reason": "ReplicaSetUpdated", "message": "m",
                                   "lastUpdateTime": "2026-01-01T00:00:00Z",
                                   "lastTransitionTime": "2026-01-01T00:00:00Z"}],
                   "updatedReplicas": 1, "availableReplicas": 0}
    new = replicaset("n", "v2", 1, available=0, revision=2)
    status = deployment_status(d, new, [new], created=False,
                               now=datetime(2026, 1, 1, 0, 5, tzinfo=UTC))
    conds = {c["type"]: c for c in status["conditions"]}
    assert (conds["Progressing"]["status"], conds["Progressing"]["reason"]) == (
        "False", "ProgressDeadlineExceeded")
    assert conds["Available"]["status"] == "False"


def test_adopts_orphan_replicaset_matching_the_selector():
    api = FakeApi()
    api.seed("deployments", deployment(replicas=1))
    orphan = replicaset("orphan", "v1", 1)
    del orphan["metadata"]["ownerReferences"]
    api.seed("replicasets", orphan)
    sync_once(api)
    assert rs_named(api, "orphan")["metadata"]["ownerReferences"][0]["uid"] == "d-uid"


def test_rolling_update_respects_surge_and_unavailability_at_every_step():
    """Play the controller against a model of ReplicaSets: right after each sync every
    ReplicaSet has spec.replicas pods, of which only the ones it had before are available
    (new pods are starting); then time passes and all of them become available."""
    async def settle(api, instant):
        for r in api.objects("replicasets"):
            want = r["spec"]["replicas"]
            before = (r.get("status") or {}).get("availableReplicas", 0)
            avail = want if instant else min(want, before)
            r["status"] = {"replicas": want, "readyReplicas": avail, "availableReplicas": avail}
            await api.update_status("replicasets", r)
        rs_list = api.objects("replicasets")
        return (sum(r["spec"]["replicas"] for r in rs_list),
                sum(r["status"]["availableReplicas"] for r in rs_list))

    async def body():
        api = FakeApi()
        api.seed("deployments", deployment(replicas=10, image="v2", strategy={
            "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 3, "maxUnavailable": 2}}))
        api.seed("replicasets", replicaset("old", "v1", 10))
        seen = []
        for _ in range(30):
            ctrl = await controller(api)
            await ctrl.sync("default/web")
            seen.append(await settle(api, instant=False))
            seen.append(await settle(api, instant=True))
            status = api.objects("deployments")[0].get("status") or {}
            if status.get("updatedReplicas") == 10 and seen[-1] == (10, 10):
                break
        return seen, api
    seen, api = asyncio.run(body())
    assert all(total <= 13 for total, _ in seen), seen
    assert all(available >= 8 for _, available in seen), seen
    assert seen[-1] == (10, 10) and len(seen) > 4
    assert rs_named(api, "old")["spec"]["replicas"] == 0
