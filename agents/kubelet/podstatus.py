"""Pod status as a pure function of the pod, the observed runtime state, the plan's
waiting reasons and the probe verdicts.

Phase (the kubelet's getPhase, simplified):
- an init container failed under restartPolicy Never → Failed;
- init containers not all done, or an app container that never ran → Pending;
- a container running → Running;
- every app container exited: Always → Running (restarting); OnFailure → Running if
  one failed (it restarts) else Succeeded; Never → Failed if one failed else Succeeded.
Conditions: PodScheduled, PodReadyToStartContainers (sandbox ready), Initialized,
ContainersReady, Ready; lastTransitionTime is kept while a condition's status holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from .observed import CState, Observed
from .plan import init_failed, restart_policy, should_restart


def rfc3339(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Readiness:
    """Per container id: ready (readiness verdict) and started (startup verdict)."""
    ready: dict[str, bool] = field(default_factory=dict)
    started: dict[str, bool] = field(default_factory=dict)


def container_id(c: CState, runtime: str = "lab") -> str:
    return f"{runtime}://{c.id}"


def _terminated(c: CState, runtime: str) -> dict:
    reason = c.reason or ("Completed" if c.exit_code == 0 else "Error")
    out = {"exitCode": c.exit_code if c.exit_code is not None else 0,
           "reason": reason, "startedAt": rfc3339(c.started_at),
           "finishedAt": rfc3339(c.finished_at), "containerID": container_id(c, runtime)}
    if c.message:
        out["message"] = c.message
    return out


def container_status(container: dict, obs: Observed, waiting: dict, readiness: Readiness,
                     init: bool, runtime: str = "lab", image_ids: dict | None = None) -> dict:
    name = container["name"]
    latest, previous = obs.latest(name), obs.previous(name)
    image = container.get("image", "")
    out: dict = {"name": name, "image": image, "imageID": "", "ready": False,
                 "restartCount": latest.attempt if latest else 0, "started": False,
                 "lastState": {}}
    if latest is not None:
        known = (image_ids or {}).get(image)
        out["imageID"] = latest.image_id or f"{runtime}://{known or image}"
        out["containerID"] = container_id(latest, runtime)
    if name in waiting:
        reason, message = waiting[name]
        out["state"] = {"waiting": {"reason": reason, "message": message}}
    elif latest is None or latest.state == "created":
        out["state"] = {"waiting": {"reason": "PodInitializing" if not init and
                                    waiting.get("__init_pending__") else
                                    "ContainerCreating"}}
    elif latest.state == "running":
        out["state"] = {"running": {"startedAt": rfc3339(latest.started_at)}}
        started = readiness.started.get(latest.id, True)
        out["started"] = started
        out["ready"] = bool(started and readiness.ready.get(latest.id, True))
    else:
        out["state"] = {"terminated": _terminated(latest, runtime)}
    # lastState: the attempt before the current one, or the exited one waiting to be
    # restarted (then the current state is waiting).
    if latest is not None and latest.state == "exited" and name in waiting:
        last = latest
    else:
        last = previous
    if last is not None and last.state == "exited":
        out["lastState"] = {"terminated": _terminated(last, runtime)}
    if init:
        out.pop("started", None)
        out["ready"] = bool(latest and latest.state == "exited" and latest.exit_code == 0)
    return out


def phase(pod: dict, obs: Observed) -> str:
    spec = pod.get("spec") or {}
    if init_failed(pod, obs):
        return "Failed"
    for container in spec.get("initContainers") or []:
        latest = obs.latest(container["name"])
        if latest is None or latest.state != "exited" or latest.exit_code != 0:
            if any(obs.latest(c["name"]) for c in spec.get("containers") or []):
                continue
            return "Pending"
    policy = restart_policy(pod)
    running = exited = failed = pending = 0
    for container in spec.get("containers") or []:
        attempts = obs.containers.get(container["name"]) or []
        latest = attempts[-1] if attempts else None
        if latest is None or (latest.state == "created" and len(attempts) == 1):
            pending += 1
        elif latest.state in ("running", "created"):
            running += 1
        else:
            exited += 1
            failed += (latest.exit_code or 0) != 0
    if pending:
        return "Pending"
    if running:
        return "Running"
    if policy == "Always":
        return "Running"
    if policy == "OnFailure":
        return "Running" if failed else "Succeeded"
    return "Failed" if failed else "Succeeded"


def _condition(kind: str, ok: bool, previous: dict, now: str, reason: str = "") -> dict:
    status = "True" if ok else "False"
    old = previous.get(kind) or {}
    since = old.get("lastTransitionTime") if old.get("status") == status else None
    out = {"type": kind, "status": status, "lastProbeTime": None,
           "lastTransitionTime": since or now}
    if reason and not ok:
        out["reason"] = reason
    return out


def pod_status(pod: dict, obs: Observed, *, waiting: dict, readiness: Readiness,
               host_ip: str, now: float, runtime: str = "lab",
               start_time: float | None = None, image_ids: dict | None = None) -> dict:
    """image_ids: image → its id in the node's store (for containerStatuses' imageID)."""
    spec = pod.get("spec") or {}
    previous = pod.get("status") or {}
    prev_conditions = {c.get("type"): c for c in previous.get("conditions") or []}
    now_text = rfc3339(now)
    init_specs = spec.get("initContainers") or []
    app_specs = spec.get("containers") or []
    init_statuses = [container_status(c, obs, waiting, readiness, True, runtime, image_ids)
                     for c in init_specs]
    initialized = all(s["ready"] for s in init_statuses) or any(
        obs.latest(c["name"]) for c in app_specs)
    app_waiting = dict(waiting)
    if not initialized:
        app_waiting["__init_pending__"] = ("", "")
    statuses = [container_status(c, obs, app_waiting, readiness, False, runtime, image_ids)
                for c in app_specs]
    the_phase = phase(pod, obs)
    all_ready = bool(statuses) and all(s["ready"] for s in statuses)
    if the_phase in ("Succeeded", "Failed"):
        all_ready = False
    sandbox_ok = bool(obs.sandbox and obs.sandbox.ready)
    conditions = [
        _condition("PodReadyToStartContainers", sandbox_ok, prev_conditions, now_text),
        _condition("Initialized", initialized, prev_conditions, now_text,
                   "ContainersNotInitialized"),
        _condition("Ready", all_ready, prev_conditions, now_text, "ContainersNotReady"),
        _condition("ContainersReady", all_ready, prev_conditions, now_text,
                   "ContainersNotReady"),
        _condition("PodScheduled", True, prev_conditions, now_text),
    ]
    status: dict = {"phase": the_phase, "conditions": conditions, "hostIP": host_ip,
                    "hostIPs": [{"ip": host_ip}],
                    "startTime": previous.get("startTime") or rfc3339(start_time or now),
                    "containerStatuses": statuses}
    if init_specs:
        status["initContainerStatuses"] = init_statuses
    ip = obs.sandbox.ip if obs.sandbox and obs.sandbox.ip else previous.get("podIP")
    if ip:
        status["podIP"], status["podIPs"] = ip, [{"ip": ip}]
    if previous.get("qosClass"):
        status["qosClass"] = previous["qosClass"]
    if the_phase == "Failed" and init_failed(pod, obs):
        status["reason"], status["message"] = "Failed", "an init container failed"
    return status


def is_terminal(status: dict) -> bool:
    return status.get("phase") in ("Succeeded", "Failed")


__all__ = ["pod_status", "phase", "Readiness", "should_restart", "is_terminal"]
