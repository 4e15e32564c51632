"""The per-pod sync decision: desired containers vs what the runtime runs → actions.

A pure function (`plan_pod`) of the pod, the `Observed` runtime state, image presence,
pull and probe verdicts and the time; the executor in podworker.py carries it out.

Rules (the kubelet's computePodActions, simplified):
1. No ready sandbox → create one (after stopping any old one), unless the pod is done
   (restartPolicy Never and a container has already run; or it finished).
2. Init containers run one at a time, in order; each must exit 0 before the next
   starts. A failed one is restarted per the restart policy (Always counts as
   OnFailure for init containers) with back-off; with Never the pod fails.
3. Once every init container succeeded, every app container that has no attempt yet is
   started; one that exited is restarted per restartPolicy (Always: always; OnFailure:
   non-zero exit; Never: never) once its back-off has passed (CrashLoopBackOff meanwhile).
4. A running container whose liveness or startup probe failed is killed; rule 3 then
   decides about its restart. A running container whose image is no longer the spec's
   (the one mutable part of a pod's containers) is killed and started again at once,
   whatever the restart policy.
5. An image missing from the store gives ErrImagePull, then ImagePullBackOff until the
   next try (pullPolicy Never: ErrImageNeverPull). There is no registry: Always and
   IfNotPresent are both satisfied by the local store.
6. Exited attempts older than the previous one are removed (the previous one is kept
   for `logs --previous` and lastState). A sandbox that was replaced (it died: its
   network namespace is gone) is stopped, and removed once none of its containers is
   among those kept, so restart counts carry over to the new sandbox.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .backoff import Backoff, PullState
from .observed import CState, Observed


@dataclass(frozen=True)
class Start:
    name: str
    attempt: int
    init: bool = False


@dataclass
class Plan:
    create_sandbox: bool = False
    stop_sandbox: bool = False              # the pod is done: release its sandbox
    start: list[Start] = field(default_factory=list)
    kill: list[tuple[str, str]] = field(default_factory=list)      # (container id, why)
    remove: list[str] = field(default_factory=list)                # old container ids
    remove_sandboxes: list[str] = field(default_factory=list)      # replaced, unneeded
    waiting: dict[str, tuple[str, str]] = field(default_factory=dict)  # name → (reason, msg)
    pull_failed: list[str] = field(default_factory=list)          # names: record a failure
    init_failed: bool = False               # an init container failed under Never
    requeue_at: float | None = None

    def wake_at(self, when: float) -> None:
        self.requeue_at = when if self.requeue_at is None else min(self.requeue_at, when)


def canonical_image(ref: str) -> str:
    """`lab/busybox` → `lab/busybox:latest` (runtimes report references either way)."""
    last = ref.rsplit("/", 1)[-1]
    return ref if ":" in last or "@" in last else f"{ref}:latest"


def same_image(a: str, b: str) -> bool:
    return canonical_image(a) == canonical_image(b)


def restart_policy(pod: dict) -> str:
    return (pod.get("spec") or {}).get("restartPolicy") or "Always"


def should_restart(policy: str, c: CState, init: bool = False) -> bool:
    if policy == "Always" and not init:
        return True
    if policy == "Never":
        return False
    return (c.exit_code or 0) != 0


def _image_ok(container: dict, images: dict[str, bool], pulls: dict[str, PullState],
              backoff: Backoff, now: float, plan: Plan) -> bool:
    name, image = container["name"], container.get("image", "")
    if images.get(image):
        return True
    policy = container.get("imagePullPolicy") or "IfNotPresent"
    msg = (f'image "{image}" is not in this node\'s image store and there is no registry '
           "to pull it from (add it to the node's image store)")
    if policy == "Never":
        plan.waiting[name] = ("ErrImageNeverPull", f'Container image "{image}" is not '
                              'present with pull policy of Never')
        return False
    state = pulls.get(name)
    if state and state.failures and now < state.retry_at(backoff):
        plan.waiting[name] = ("ImagePullBackOff", f'Back-off pulling image "{image}"')
        plan.wake_at(state.retry_at(backoff))
        return False
    plan.pull_failed.append(name)
    plan.waiting[name] = ("ErrImagePull", msg)
    # Look again halfway through the wait, so that ImagePullBackOff is shown for its
    # second half (the kubelet's own status writes do not wake it).
    plan.wake_at(now + backoff.delay((state.failures if state else 0) + 1) / 2)
    return False


def _try_start(container: dict, attempt: int, init: bool, images, pulls, backoff, now,
               plan: Plan) -> None:
    if _image_ok(container, images, pulls, backoff, now, plan):
        plan.start.append(Start(container["name"], attempt, init))


def _restart_or_wait(container: dict, latest: CState, init: bool, images, pulls,
                     backoff: Backoff, now: float, plan: Plan) -> None:
    at = backoff.restart_at(latest.attempt, latest.started_at, latest.finished_at)
    if now >= at:
        _try_start(container, latest.attempt + 1, init, images, pulls, backoff, now, plan)
    else:
        plan.waiting[container["name"]] = (
            "CrashLoopBackOff", f"back-off {backoff.delay(latest.attempt):.0f}s restarting "
            f"failed container={container['name']}")
        plan.wake_at(at)


def _garbage(obs: Observed, plan: Plan) -> None:
    for attempts in obs.containers.values():
        for c in attempts[:-2]:
            if c.state != "running":
                plan.remove.append(c.id)
    # A replaced sandbox goes once none of its containers is worth keeping: until then
    # its containers carry the pod's restart counts and last states.
    kept = {c.sandbox_id for c in obs.all() if c.id in obs.kept()}
    plan.remove_sandboxes = [sid for sid in obs.stale_sandboxes if sid not in kept]


def pod_finished(pod: dict, obs: Observed) -> bool:
    """Every app container exited for good (so the pod is Succeeded or Failed)."""
    policy = restart_policy(pod)
    containers = (pod.get("spec") or {}).get("containers") or []
    if not containers:
        return False
    for container in containers:
        latest = obs.latest(container["name"])
        if latest is None or latest.state != "exited" or should_restart(policy, latest):
            return False
    return True


def init_failed(pod: dict, obs: Observed) -> bool:
    if restart_policy(pod) != "Never":
        return False
    for container in (pod.get("spec") or {}).get("initContainers") or []:
        latest = obs.latest(container["name"])
        if latest is not None and latest.state == "exited" and latest.exit_code != 0:
            return True
    return False


def plan_pod(pod: dict, obs: Observed, *, images: dict[str, bool],
             pulls: dict[str, PullState], failed_probes: set[str], backoff: Backoff,
             now: float) -> Plan:
    """images: image → present in the store; pulls: container name → its failed pulls;
    failed_probes: ids of running containers a liveness/startup probe failed."""
    plan = Plan()
    spec = pod.get("spec") or {}
    policy = restart_policy(pod)
    _garbage(obs, plan)
    if init_failed(pod, obs):
        plan.init_failed = True
        plan.stop_sandbox = bool(obs.sandbox and obs.sandbox.ready)
        return plan
    if pod_finished(pod, obs):
        plan.stop_sandbox = bool(obs.sandbox and obs.sandbox.ready)
        return plan
    if obs.sandbox is None or not obs.sandbox.ready:
        ran = any(c.started_at for c in obs.all())
        if policy == "Never" and ran:
            return plan  # the sandbox died under containers that must not run again
        plan.create_sandbox = True
        return plan

    # Rule 2: init containers, one at a time.
    for container in spec.get("initContainers") or []:
        latest = obs.latest(container["name"])
        if latest is None:
            if any(obs.latest(c["name"]) for c in spec.get("containers") or []):
                continue  # app containers already ran: init was done before (rule 2)
            _try_start(container, 0, True, images, pulls, backoff, now, plan)
            return plan
        if latest.state != "exited":
            if latest.state == "created":
                plan.kill.append((latest.id, "left created, never started"))
            return plan  # still running: wait for it
        if latest.exit_code == 0:
            continue
        _restart_or_wait(container, latest, True, images, pulls, backoff, now, plan)
        return plan

    # Rules 3 and 4: app containers.
    for container in spec.get("containers") or []:
        name = container["name"]
        latest = obs.latest(name)
        if latest is None:
            _try_start(container, 0, False, images, pulls, backoff, now, plan)
        elif latest.state == "running":
            if latest.id in failed_probes:
                plan.kill.append((latest.id, "probe failed"))
            elif latest.image and not same_image(latest.image, container.get("image", "")):
                plan.kill.append((latest.id, "definition changed"))
                _try_start(container, latest.attempt + 1, False, images, pulls, backoff,
                           now, plan)
        elif latest.state == "created":
            plan.kill.append((latest.id, "left created, never started"))
            _try_start(container, latest.attempt + 1, False, images, pulls, backoff, now,
                       plan)
        elif should_restart(policy, latest):
            _restart_or_wait(container, latest, False, images, pulls, backoff, now, plan)
    return plan
