"""The kubelet's pure per-pod sync decision, back-off and status computation."""

import copy

import pytest

from agents.kubelet.backoff import Backoff, PullState
from agents.kubelet.observed import CState, Observed, SandboxView, observe, to_epoch
from agents.kubelet.plan import Start, plan_pod
from agents.kubelet.podconfig import needs_sync
from agents.kubelet.podstatus import Readiness, phase, pod_status

pytestmark = pytest.mark.unit

NOW = 1_000_000.0
BACKOFF = Backoff(10, 300)


def pod(containers=("app",), init=(), policy="Always", image="lab/busybox:latest", **spec):
    return {"metadata": {"name": "p", "namespace": "default", "uid": "u1"},
            "spec": {"restartPolicy": policy,
                     "containers": [{"name": n, "image": image} for n in containers],
                     "initContainers": [{"name": n, "image": image} for n in init], **spec},
            "status": {}}


def obs(*containers, sandbox=True, ready=True, ip="10.244.1.2"):
    o = Observed(sandbox=SandboxView("sb1", ready, ip) if sandbox else None)
    for c in containers:
        o.containers.setdefault(c.name, []).append(c)
    for items in o.containers.values():
        items.sort(key=lambda c: c.attempt)
    return o


def running(name, attempt=0, cid=None, started=NOW - 5, init=False):
    return CState(cid or f"{name}-{attempt}", name, attempt, "running", started_at=started,
                  init=init)


def exited(name, code, attempt=0, started=NOW - 20, finished=NOW - 1, reason="", init=False):
    return CState(f"{name}-{attempt}", name, attempt, "exited", exit_code=code,
                  started_at=started, finished_at=finished, reason=reason, init=init)


def plan(p, o, images=None, pulls=None, failed=frozenset(), now=NOW):
    images = images if images is not None else {"lab/busybox:latest": True}
    return plan_pod(p, o, images=images, pulls=pulls or {}, failed_probes=set(failed),
                    backoff=BACKOFF, now=now)


def test_backoff_doubles_from_initial_to_the_cap():
    assert [BACKOFF.delay(n) for n in range(8)] == [0, 10, 20, 40, 80, 160, 300, 300]


def test_backoff_restarts_a_long_runner_at_once():
    assert BACKOFF.restart_at(5, started_at=0, finished_at=600) == 600
    assert BACKOFF.restart_at(5, started_at=500, finished_at=600) == 600 + 160


def test_no_sandbox_creates_one_first():
    p = plan(pod(), obs(sandbox=False))
    assert p.create_sandbox and not p.start


def test_fresh_sandbox_starts_every_app_container():
    p = plan(pod(("a", "b")), obs())
    assert p.start == [Start("a", 0), Start("b", 0)]


def test_running_containers_are_left_alone():
    p = plan(pod(), obs(running("app")))
    assert not p.start and not p.kill and not p.create_sandbox


def test_init_containers_run_one_at_a_time_in_order():
    p1 = pod(("app",), init=("i1", "i2"))
    assert plan(p1, obs()).start == [Start("i1", 0, True)]
    assert plan(p1, obs(running("i1", init=True))).start == []
    assert plan(p1, obs(exited("i1", 0, init=True))).start == [Start("i2", 0, True)]
    done = obs(exited("i1", 0, init=True), exited("i2", 0, init=True))
    assert plan(p1, done).start == [Start("app", 0)]


def test_failed_init_container_restarts_with_backoff_or_fails_the_pod():
    p1 = pod(("app",), init=("i1",), policy="Always")
    first = plan(p1, obs(exited("i1", 1, init=True)))
    assert first.start == [Start("i1", 1, True)]
    again = plan(p1, obs(exited("i1", 1, attempt=1, init=True, finished=NOW - 1)))
    assert again.waiting["i1"][0] == "CrashLoopBackOff" and not again.start
    never = plan(pod(("app",), init=("i1",), policy="Never"), obs(exited("i1", 1, init=True)))
    assert never.init_failed and never.stop_sandbox and not never.start


@pytest.mark.parametrize("policy,code,restarts", [
    ("Always", 0, True), ("Always", 1, True), ("OnFailure", 1, True),
    ("OnFailure", 0, False), ("Never", 1, False), ("Never", 0, False)])
def test_restart_policy(policy, code, restarts):
    p = plan(pod(policy=policy), obs(exited("app", code)))
    assert (p.start == [Start("app", 1)]) is restarts


def test_crash_loop_waits_out_the_backoff_then_restarts():
    crashed = obs(exited("app", 1, attempt=2, finished=NOW - 5))  # third run: wait 20 s
    waiting = plan(pod(), crashed)
    assert waiting.start == []
    assert waiting.waiting["app"][0] == "CrashLoopBackOff"
    assert waiting.requeue_at == pytest.approx(NOW - 5 + 20)
    later = plan(pod(), crashed, now=NOW + 16)
    assert later.start == [Start("app", 3)]


def test_liveness_failure_kills_the_running_container():
    p = plan(pod(), obs(running("app", cid="c9")), failed={"c9"})
    assert p.kill == [("c9", "probe failed")]


def test_missing_image_gives_err_image_pull_then_image_pull_backoff():
    missing = {"lab/busybox:latest": False}
    first = plan(pod(), obs(), images=missing)
    assert first.pull_failed == ["app"] and first.waiting["app"][0] == "ErrImagePull"
    assert first.requeue_at == pytest.approx(NOW + 10 / 2)  # back-off shown from halfway
    pulls = {"app": PullState(failures=1, last_failure=NOW - 1)}
    second = plan(pod(), obs(), images=missing, pulls=pulls)
    assert second.waiting["app"][0] == "ImagePullBackOff" and not second.pull_failed
    assert second.requeue_at == pytest.approx(NOW - 1 + 10)
    retry = plan(pod(), obs(), images=missing, pulls=pulls, now=NOW + 10)
    assert retry.pull_failed == ["app"]
    found = plan(pod(), obs(), pulls=pulls)
    assert found.start == [Start("app", 0)]


def test_pull_policy_never_says_err_image_never_pull():
    p1 = pod()
    p1["spec"]["containers"][0]["imagePullPolicy"] = "Never"
    p = plan(p1, obs(), images={})
    assert p.waiting["app"][0] == "ErrImageNeverPull" and not p.pull_failed


def test_old_attempts_are_garbage_collected_keeping_the_previous():
    o = obs(exited("app", 1, 0), exited("app", 1, 1), running("app", 2))
    assert plan(pod(), o).remove == ["app-0"]


def test_finished_pod_releases_its_sandbox_and_starts_nothing():
    p = plan(pod(policy="Never"), obs(exited("app", 0)))
    assert p.stop_sandbox and not p.start and not p.create_sandbox


def test_dead_sandbox_is_not_recreated_for_a_never_pod_that_ran():
    p = plan(pod(policy="Never"), obs(exited("app", 0), ready=False))
    assert not p.create_sandbox


# ------------------------------------------------------------------ status


def status(p, o, waiting=None, readiness=None):
    return pod_status(p, o, waiting=waiting or {}, readiness=readiness or Readiness(),
                      host_ip="192.0.2.1", now=NOW)


def cond(s, kind):
    return next(c["status"] for c in s["conditions"] if c["type"] == kind)


def test_running_pod_status():
    s = status(pod(), obs(running("app", cid="abc")))
    assert s["phase"] == "Running" and s["podIP"] == "10.244.1.2"
    assert s["hostIP"] == "192.0.2.1" and s["podIPs"] == [{"ip": "10.244.1.2"}]
    c = s["containerStatuses"][0]
    assert c["ready"] and c["started"] and c["restartCount"] == 0
    assert c["containerID"] == "lab://abc" and "running" in c["state"]
    for kind in ("PodScheduled", "Initialized", "ContainersReady", "Ready"):
        assert cond(s, kind) == "True"


def test_readiness_probe_verdict_drives_ready():
    s = status(pod(), obs(running("app", cid="abc")), readiness=Readiness(ready={"abc": False}))
    assert not s["containerStatuses"][0]["ready"] and cond(s, "Ready") == "False"


def test_crash_loop_status_has_last_state_and_restart_count():
    o = obs(exited("app", 0, 0), exited("app", 2, 1, reason="Error"))
    s = status(pod(), o, waiting={"app": ("CrashLoopBackOff", "back-off 10s")})
    c = s["containerStatuses"][0]
    assert c["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert c["lastState"]["terminated"]["exitCode"] == 2
    assert c["restartCount"] == 1 and s["phase"] == "Running"


def test_oom_killed_is_reported_as_such():
    s = status(pod(policy="Never"), obs(exited("app", 137, reason="OOMKilled")))
    term = s["containerStatuses"][0]["state"]["terminated"]
    assert term["reason"] == "OOMKilled" and term["exitCode"] == 137
    assert s["phase"] == "Failed"


@pytest.mark.parametrize("policy,codes,expected", [
    ("Never", (0, 0), "Succeeded"), ("Never", (0, 1), "Failed"),
    ("OnFailure", (0, 0), "Succeeded"), ("OnFailure", (0, 1), "Running"),
    ("Always", (0, 0), "Running")])
def test_phase_when_every_container_exited(policy, codes, expected):
    o = obs(exited("a", codes[0]), exited("b", codes[1]))
    assert phase(pod(("a", "b"), policy=policy), o) == expected


def test_pending_while_init_runs_and_app_waits_with_pod_initializing():
    p1 = pod(("app",), init=("i1",))
    s = status(p1, obs(running("i1", init=True)))
    assert s["phase"] == "Pending" and cond(s, "Initialized") == "False"
    assert s["containerStatuses"][0]["state"]["waiting"]["reason"] == "PodInitializing"
    assert s["initContainerStatuses"][0]["state"]["running"]


def test_image_pull_waiting_reason_shows():
    s = status(pod(), obs(), waiting={"app": ("ErrImagePull", "not in the store")})
    assert s["phase"] == "Pending"
    assert s["containerStatuses"][0]["state"]["waiting"]["reason"] == "ErrImagePull"


def test_condition_transition_time_is_kept_while_unchanged():
    p1 = pod()
    p1["status"] = {"conditions": [{"type": "Ready", "status": "True",
                                    "lastTransitionTime": "2020-01-01T00:00:00Z"}],
                    "startTime": "2020-01-01T00:00:00Z"}
    s = status(p1, obs(running("app")))
    ready = next(c for c in s["conditions"] if c["type"] == "Ready")
    assert ready["lastTransitionTime"] == "2020-01-01T00:00:00Z"
    assert s["startTime"] == "2020-01-01T00:00:00Z"


def test_observe_groups_attempts_and_picks_the_newest_sandbox():
    class S:
        def __init__(self, id, state, created):
            self.id, self.state, self.ip, self.created_at = id, state, "10.0.0.9", created

    class C:
        def __init__(self, id, name, attempt, state):
            self.id, self.name, self.attempt, self.state = id, name, attempt, state
            self.labels = {"io.lab.container.init": "false"}
    o = observe([S("new", "ready", 20.0), S("old", "notready", 10.0)],
                [C("c2", "app", 1, "running"), C("c1", "app", 0, "exited")])
    assert o.sandbox.id == "new" and o.stale_sandboxes == ["old"]
    assert [c.id for c in o.containers["app"]] == ["c1", "c2"]


def test_timestamps_in_any_runtime_shape():
    assert to_epoch(1_700_000_000.5) == 1_700_000_000.5
    assert to_epoch(1_700_000_000_000_000_000) == pytest.approx(1_700_000_000)
    assert to_epoch("2023-11-14T22:13:20.123456789Z") == pytest.approx(1_700_000_000.123456)
    assert to_epoch(0) is None and to_epoch(None) is None


def test_changed_image_restarts_the_container_at_once_whatever_the_policy():
    old = CState("c1", "app", 0, "running", started_at=NOW - 5, image="lab/busybox:1")
    p = plan(pod(policy="Never"), obs(old))
    assert p.kill == [("c1", "definition changed")] and p.start == [Start("app", 1)]
    same = CState("c1", "app", 0, "running", started_at=NOW - 5, image="lab/busybox:latest")
    assert plan(pod(), obs(same)).kill == []


def test_image_references_compare_with_the_default_tag():
    from agents.kubelet.plan import same_image
    assert same_image("lab/busybox", "lab/busybox:latest")
    assert not same_image("lab/busybox:1", "lab/busybox")
    running_canonical = CState("c1", "app", 0, "running", image="lab/busybox:latest")
    p1 = pod(image="lab/busybox")
    assert plan(p1, obs(running_canonical), images={"lab/busybox": True}).kill == []


def test_replaced_sandbox_is_kept_while_its_containers_carry_the_restart_count():
    old = CState("c0", "app", 0, "exited", exit_code=137, started_at=NOW - 50,
                 finished_at=NOW - 1, sandbox_id="sb0")
    o = obs(old)
    o.stale_sandboxes = ["sb0"]
    p = plan(pod(), o)
    assert p.start == [Start("app", 1)] and p.remove_sandboxes == []
    newer = [CState("c1", "app", 1, "exited", exit_code=1, started_at=NOW - 9,
                    finished_at=NOW - 8, sandbox_id="sb1"),
             CState("c2", "app", 2, "running", started_at=NOW - 5, sandbox_id="sb1")]
    o = obs(old, *newer)
    o.stale_sandboxes = ["sb0"]
    p = plan(pod(), o)
    assert p.remove == ["c0"] and p.remove_sandboxes == ["sb0"]


def test_dead_sandbox_is_replaced():
    p = plan(pod(), obs(exited("app", 137), ready=False))
    assert p.create_sandbox


def test_only_changes_beyond_status_need_a_sync():
    before = pod()
    before["metadata"]["resourceVersion"] = "5"
    echoed = copy.deepcopy(before)
    echoed["metadata"]["resourceVersion"] = "6"
    echoed["status"] = {"phase": "Running"}
    assert not needs_sync(before, echoed)
    deleting = copy.deepcopy(echoed)
    deleting["metadata"]["deletionTimestamp"] = "2026-11-27T03:00:00Z"
    assert needs_sync(echoed, deleting)
    new_image = copy.deepcopy(echoed)
    new_image["spec"]["containers"][0]["image"] = "lab/python:latest"
    assert needs_sync(echoed, new_image)
