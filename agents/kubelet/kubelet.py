"""The kubelet: node registration and heartbeat, pod workers, probes, the HTTPS API.

Shape (client-go style): an informer over the pods bound to this node
(fieldSelector spec.nodeName=<node>) enqueues pod keys; workers run the level-triggered
`sync(key)`: observe the pod's sandbox and containers in the runtime, `plan_pod` (pure),
carry the plan out (runtime calls in threads), write the computed status when it
changed, and come back when the plan says (back-off expiry) or at the resync period.
A relist of the runtime every second ("PLEG") enqueues pods whose containers changed
state and cleans up sandboxes of pods that no longer exist. Probes run one task per
container and enqueue the pod when a verdict flips.

After a restart nothing is recreated blindly: sync reads the runtime first, so running
containers that carry the pod's uid and container name are adopted as they are.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import shutil
import time
from collections.abc import Callable

from agents.kube.controller import process_next
from agents.kube.errors import AlreadyExists, ApiError, Conflict, NotFound
from agents.kube.informer import Informer
from agents.kube.resources import meta_namespace_key
from agents.kube.workqueue import ExponentialBackoff, WorkQueue

from . import crilog, nodestatus, podconfig, volumes
from .backoff import Backoff, PullState
from .config import KubeletConfig
from .cri import POD_UID, labels_of
from .envvars import ConfigError, PodFacts, container_env
from .events import WARNING, EventRecorder
from .observed import CState, Observed, observe
from .plan import Plan, Start, plan_pod
from .podstatus import Readiness, is_terminal, pod_status
from .prober import run_probe
from .probes import LIVENESS, READINESS, STARTUP, ProbeSpec, ProbeTracker
from .server import KubeletServer, NotFoundError

log = logging.getLogger("agents.kubelet")

ORPHAN = "orphan:"
PROBE_FIELDS = {LIVENESS: "livenessProbe", READINESS: "readinessProbe",
                STARTUP: "startupProbe"}


def sandbox_uid(sandbox) -> str | None:
    uid = labels_of(sandbox).get(POD_UID) or getattr(sandbox, "uid", None)
    if uid is None:
        meta = getattr(sandbox, "metadata", None)
        uid = getattr(meta, "uid", None) if meta is not None else None
    return uid


class ProbeWorker:
    def __init__(self, key: str, uid: str, cid: str, container: dict, pod_ip: str,
                 trackers: dict[str, ProbeTracker]):
        self.key, self.uid, self.cid, self.container = key, uid, cid, container
        self.pod_ip, self.trackers = pod_ip, trackers
        self.task: asyncio.Task | None = None

    def active(self) -> list[ProbeTracker]:
        startup = self.trackers.get(STARTUP)
        if startup is not None and startup.result is not True:
            return [startup]
        return [t for kind, t in self.trackers.items() if kind != STARTUP]


class Kubelet:
    def __init__(self, config: KubeletConfig, api, runtime_factory: Callable[[str], object],
                 facts: nodestatus.HostFacts | None = None, serve: bool = True,
                 relist_period: float | None = None, workers: int | None = None):
        self.config, self.api = config, api
        self.node = config.node_name
        self.runtime_factory = runtime_factory
        self.facts = facts or nodestatus.read_host_facts()
        self.serve = serve
        self.workers = workers or config.sync_workers
        self.relist_period = relist_period or config.relist_seconds
        self.runtime = None
        self.pod_cidr = config.pod_cidr
        self.backoff = Backoff(config.backoff_initial_seconds, config.backoff_max_seconds)
        self.pods = Informer(api, "pods", field_selector=f"spec.nodeName={self.node}")
        self.queue = WorkQueue("kubelet", backoff=ExponentialBackoff(base=0.2, cap=10.0))
        self.pods.add_handler(self._enqueue, self._on_update, self._enqueue)
        self.events = EventRecorder(api, self.node)
        self.server = KubeletServer(self)
        self.port: int | None = None
        self.node_uid: str | None = None
        self._lease: dict | None = None
        self.pulls: dict[str, dict[str, PullState]] = {}      # uid → container → pulls
        self.errors: dict[str, dict[str, tuple[str, str]]] = {}  # uid → name → waiting
        self.probes: dict[str, ProbeWorker] = {}              # container id → worker
        self.failed_probes: dict[str, str] = {}               # container id → probe kind
        self._seen: dict[str, str] = {}                        # container id → state
        self._announced: set[tuple] = set()                   # BackOff events sent
        self._terminating: dict[str, asyncio.Task] = {}        # pod uid → its termination
        self.metrics = {"syncs": 0, "containers_started": 0, "pods_deleted": 0,
                        "lease_renewals": 0}

    # ---------------------------------------------------------------- runtime calls

    async def rt(self, method: str, *args):
        return await asyncio.to_thread(getattr(self.runtime, method), *args)

    @property
    def ready(self) -> bool:
        return self.runtime is not None

    # ---------------------------------------------------------------- the node

    def runtime_version(self) -> str:
        version = getattr(self.runtime, "version", None)
        if callable(version):
            with contextlib.suppress(Exception):
                return str(version())
        return "lab-runtime://0.1"

    def node_status(self, previous: dict | None = None) -> dict:
        message = "" if self.ready else \
            "container runtime network not ready: waiting for node.spec.podCIDR"
        return nodestatus.node_status(
            self.facts, node_ip=self.config.node_ip, hostname=self.node,
            port=self.port or self.config.port, max_pods=self.config.max_pods,
            runtime_version=self.runtime_version(), now=nodestatus.now_rfc3339(),
            ready=self.ready, ready_message=message, previous=previous)

    async def register_node(self) -> dict:
        desired = nodestatus.node_object(self.node, self.facts, self.config.labels)
        try:
            node = await self.api.create("nodes", desired)
            log.info("node %s registered", self.node)
        except AlreadyExists:
            node = await self.api.get("nodes", self.node)
            labels = (node["metadata"].get("labels") or {})
            missing = {k: v for k, v in desired["metadata"]["labels"].items()
                       if labels.get(k) != v}
            if missing:
                node = await self.api.patch("nodes", self.node,
                                            {"metadata": {"labels": missing}})
        self.node_uid = node["metadata"].get("uid")
        node = await self.post_node_status(node)
        await self.renew_lease()
        return node

    async def _register_until_done(self) -> None:
        delay = 0.5
        while True:
            try:
                await self.register_node()
                return
            except Exception as exc:  # noqa: BLE001 - the API server may not be up yet
                log.warning("registering node %s failed: %s; retrying in %.1fs", self.node,
                            exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def post_node_status(self, node: dict | None = None) -> dict:
        if node is None:
            node = await self.api.get("nodes", self.node)
        status = self.node_status(node.get("status"))
        return await self.api.patch("nodes", self.node, {"status": status},
                                    subresource="status")

    async def renew_lease(self) -> None:
        ns = nodestatus.NODE_LEASE_NAMESPACE
        duration = self.config.lease_duration_seconds
        try:
            if self._lease is None:
                try:
                    self._lease = await self.api.create("leases", nodestatus.lease_object(
                        self.node, duration, self.node_uid), ns)
                    return
                except AlreadyExists:
                    self._lease = await self.api.get("leases", self.node, ns)
            renewed = {**self._lease, "spec": {**(self._lease.get("spec") or {}),
                                               **nodestatus.lease_spec(self.node, duration)}}
            self._lease = await self.api.update("leases", renewed)
            self.metrics["lease_renewals"] += 1
        except (Conflict, NotFound):
            self._lease = None  # re-read or re-create next time
            raise

    async def _heartbeat(self) -> None:
        last_status = time.monotonic()
        while True:
            await asyncio.sleep(self.config.lease_renew_seconds)
            try:
                await self.renew_lease()
                node = await self.api.get("nodes", self.node)
                stale = time.monotonic() - last_status >= self.config.node_status_seconds
                if stale or not _node_ready(node):
                    await self.post_node_status(node)
                    last_status = time.monotonic()
            except ApiError as exc:
                log.warning("heartbeat: %s", exc)
            except Exception as exc:  # noqa: BLE001 - keep beating through outages
                log.warning("heartbeat: cannot reach the API server: %s", exc)

    async def wait_for_pod_cidr(self, poll: float = 1.0) -> str:
        while not self.pod_cidr:
            try:
                node = await self.api.get("nodes", self.node)
                self.pod_cidr = (node.get("spec") or {}).get("podCIDR") or ""
            except Exception as exc:  # noqa: BLE001 - the API server may be away a while
                log.warning("waiting for podCIDR: %s", exc)
            if not self.pod_cidr:
                await asyncio.sleep(poll)
        log.info("node %s: pod CIDR %s", self.node, self.pod_cidr)
        return self.pod_cidr

    # ---------------------------------------------------------------- running

    async def start_server(self) -> int | None:
        if not self.serve:
            return None
        ctx = None
        if self.config.tls_cert_file:
            from .server import server_ssl_context
            ctx = server_ssl_context(self.config.tls_cert_file, self.config.tls_key_file,
                                     self.config.client_ca_file)
        self.port = await self.server.start(self.config.serve_address, self.config.port, ctx)
        log.info("serving on %s:%s", self.config.serve_address, self.port)
        return self.port

    async def run(self) -> None:
        tasks: list[asyncio.Task] = []
        # Runtime calls block in threads (runc, ip): enough of them for every worker plus
        # probes, the relist and the log/exec server.
        executor = concurrent.futures.ThreadPoolExecutor(self.workers + 16,
                                                         thread_name_prefix="kubelet-rt")
        asyncio.get_running_loop().set_default_executor(executor)
        try:
            await self.start_server()
            await self._register_until_done()
            tasks.append(asyncio.create_task(self._heartbeat(), name="kubelet-heartbeat"))
            cidr = await self.wait_for_pod_cidr()
            self.runtime = await asyncio.to_thread(self.runtime_factory, cidr)
            try:
                await self.post_node_status()
            except Exception as exc:  # noqa: BLE001 - the heartbeat posts it again
                log.warning("posting the Ready status failed: %s", exc)
            tasks.append(asyncio.create_task(self.pods.run(), name="kubelet-pods"))
            await self.pods.wait_for_sync()
            log.info("pods synced: %d bound to %s", len(self.pods.store), self.node)
            tasks += [asyncio.create_task(self._worker(), name=f"kubelet-worker-{i}")
                      for i in range(self.workers)]
            tasks.append(asyncio.create_task(self._relist_loop(), name="kubelet-relist"))
            await asyncio.gather(*tasks)
        finally:
            self.queue.shutdown()
            for worker in self.probes.values():
                if worker.task:
                    worker.task.cancel()
            tasks += list(self._terminating.values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, *(w.task for w in self.probes.values() if w.task),
                                 return_exceptions=True)
            await self.events.drain()
            await self.server.stop()
            executor.shutdown(wait=False, cancel_futures=True)

    async def _worker(self) -> None:
        while await process_next(self.queue, self.sync, max_retries=1000, name="kubelet"):
            pass

    def _enqueue(self, pod: dict) -> None:
        self.queue.add(meta_namespace_key(pod))

    def _on_update(self, old: dict, new: dict) -> None:
        if podconfig.needs_sync(old, new):
            self._enqueue(new)

    # ---------------------------------------------------------------- relist (PLEG)

    async def relist(self) -> None:
        sandboxes = await self.rt("list_pod_sandboxes")
        containers = await self.rt("list_containers")
        uid_of = {s.id: sandbox_uid(s) for s in sandboxes}
        keys = {p["metadata"].get("uid"): meta_namespace_key(p) for p in self.pods.store.list()}
        current = {c.id: c.state for c in containers}
        changed: set[str | None] = set()
        for c in containers:
            if self._seen.get(c.id) != c.state:
                changed.add(uid_of.get(c.sandbox_id))
        if set(self._seen) - set(current):
            changed |= set(keys)  # something vanished: cheap enough to look at all
        self._seen = current
        for uid in changed:
            if uid in keys:
                self.queue.add(keys[uid])
        for uid in set(uid_of.values()) - set(keys) - {None}:
            self.queue.add(ORPHAN + uid)

    async def _relist_loop(self) -> None:
        while True:
            try:
                await self.relist()
            except Exception as exc:  # noqa: BLE001 - the next relist tries again
                log.warning("relist: %s", exc)
            await asyncio.sleep(self.relist_period)

    # ---------------------------------------------------------------- pod sync

    async def observe_pod(self, uid: str) -> Observed:
        sandboxes = [s for s in await self.rt("list_pod_sandboxes", uid)
                     if sandbox_uid(s) == uid]
        containers = []
        for s in sandboxes:  # only this pod's containers: each one is a file to read
            containers += await self.rt("list_containers", s.id)
        return observe(sandboxes, containers)

    async def images_of(self, pod: dict) -> dict[str, str | None]:
        """image → its id in the node's store (None: not there)."""
        spec = pod.get("spec") or {}
        images = {c.get("image", "") for c in (spec.get("initContainers") or [])
                  + (spec.get("containers") or [])}
        found = {}
        for image in images:
            info = await self.rt("image_status", image)
            found[image] = (getattr(info, "id", "") or image) if info is not None else None
        return found

    async def sync(self, key: str) -> None:
        self.metrics["syncs"] += 1
        if key.startswith(ORPHAN):
            await self.cleanup_orphan(key[len(ORPHAN):])
            return
        pod = self.pods.store.get(key)
        if pod is None:
            return  # the relist cleans up what it ran
        uid = pod["metadata"]["uid"]
        obs = await self.observe_pod(uid)
        if pod["metadata"].get("deletionTimestamp"):
            # Its own task: a grace period must not hold a worker other pods need.
            if uid not in self._terminating:
                task = asyncio.create_task(self._terminate_or_retry(key, pod, obs),
                                           name=f"terminate-{uid}")
                self._terminating[uid] = task
                task.add_done_callback(lambda _t, uid=uid: self._terminating.pop(uid, None))
            return
        if is_terminal(pod.get("status") or {}):
            await self._release(pod, obs)
            return
        now = time.time()
        plan = Plan()
        image_ids = await self.images_of(pod)
        for _ in range(3):
            plan = plan_pod(pod, obs, images={i: v is not None for i, v in image_ids.items()},
                            pulls=self.pulls.get(uid, {}),
                            failed_probes=set(self.failed_probes),
                            backoff=self.backoff, now=now)
            if not await self.execute(pod, obs, plan):
                break
            obs = await self.observe_pod(uid)
            if not plan.create_sandbox:
                break
            now = time.time()
        self._ensure_probes(key, pod, obs)
        waiting = {**self.errors.get(uid, {}), **plan.waiting}
        for name in list(waiting):
            latest = obs.latest(name)
            if latest is not None and latest.state == "running":
                del waiting[name]
        status = pod_status(pod, obs, waiting=waiting, readiness=self.readiness(obs),
                            host_ip=self.config.node_ip, now=time.time(),
                            image_ids={i: v for i, v in image_ids.items() if v})
        if (pod.get("spec") or {}).get("hostNetwork") and not status.get("podIP"):
            status["podIP"], status["podIPs"] = self.config.node_ip, [
                {"ip": self.config.node_ip}]
        await self.write_status(pod, status)
        if is_terminal(status):
            await self._release(pod, obs)
            return
        delay = self.config.resync_seconds
        if plan.requeue_at is not None:
            delay = min(delay, max(0.05, plan.requeue_at - time.time()))
        self.queue.add_after(key, delay)

    async def write_status(self, pod: dict, status: dict) -> None:
        current = pod.get("status") or {}
        if all(current.get(k) == v for k, v in status.items()):
            return
        body = dict(status)
        for stale in ("reason", "message"):
            if stale in current and stale not in status:
                body[stale] = None
        meta = pod["metadata"]
        with contextlib.suppress(NotFound):  # deleted meanwhile
            await self.api.patch("pods", meta["name"], {"status": body}, meta["namespace"],
                                 subresource="status")

    def readiness(self, obs: Observed) -> Readiness:
        out = Readiness()
        for c in obs.all():
            worker = self.probes.get(c.id)
            if worker is None:
                continue
            if READINESS in worker.trackers:
                out.ready[c.id] = worker.trackers[READINESS].effective
            if STARTUP in worker.trackers:
                out.started[c.id] = worker.trackers[STARTUP].result is True
        return out

    # ---------------------------------------------------------------- carrying out a plan

    async def execute(self, pod: dict, obs: Observed, plan: Plan) -> bool:
        """Do what the plan says; True if the runtime state changed."""
        uid = pod["metadata"]["uid"]
        changed = False
        grace = podconfig.termination_grace(pod)
        for cid in plan.remove:
            with contextlib.suppress(Exception):
                await self.rt("remove_container", cid)
            changed = True
        for cid, why in plan.kill:
            c = next((c for c in obs.all() if c.id == cid), None)
            if c is not None:
                kind = self.failed_probes.get(cid, "")
                if kind:
                    message = f"Container {c.name} failed {kind} probe, will be restarted"
                elif why == "definition changed":
                    message = f"Container {c.name} definition changed, will be restarted"
                else:
                    message = f"Stopping container {c.name}"
                self.events.emit(pod, "Killing", message, container=c.name)
            await self.rt("stop_container", cid, grace)
            self.failed_probes.pop(cid, None)
            changed = True
        now = time.time()
        for name in plan.pull_failed:
            state = self.pulls.setdefault(uid, {}).setdefault(name, PullState())
            state.failures += 1
            state.last_failure = now
            image = podconfig.find_container(pod, name, _is_init(pod, name)).get("image")
            self.events.emit(pod, "Failed", f'Failed to pull image "{image}": '
                             f"{plan.waiting[name][1]}", WARNING, name)
            self.events.emit(pod, "Failed", "Error: ErrImagePull", WARNING, name)
        for name, (reason, _message) in plan.waiting.items():
            latest = obs.latest(name)
            mark = (uid, name, reason, latest.attempt if latest else -1)
            if mark in self._announced:
                continue  # one BackOff event per wait, not one per sync
            self._announced.add(mark)
            if reason == "ImagePullBackOff":
                image = podconfig.find_container(pod, name, _is_init(pod, name)).get("image")
                self.events.emit(pod, "BackOff", f'Back-off pulling image "{image}"',
                                 container=name)
            elif reason == "CrashLoopBackOff":
                self.events.emit(pod, "BackOff", f"Back-off restarting failed container "
                                 f"{name} in pod {pod['metadata']['name']}", WARNING, name)
        if plan.create_sandbox:
            await self._new_sandbox(pod, obs)
            return True
        if plan.stop_sandbox and obs.sandbox:
            await self.rt("stop_pod_sandbox", obs.sandbox.id)
            changed = True
        for sid in plan.remove_sandboxes:
            await self.rt("remove_pod_sandbox", sid)
            changed = True
        for start in plan.start:
            changed |= await self._start(pod, obs, start)
        return changed

    async def _fetch(self, resource: str, namespace: str, names: set[str]) -> dict:
        found = {}
        for name in names:
            try:
                found[name] = await self.api.get(resource, name, namespace)
            except NotFound:
                found[name] = None
        return found

    async def _render(self, pod: dict, pod_ip: str):
        ns = pod["metadata"]["namespace"]
        cm_names, secret_names = podconfig.referenced_objects(pod)
        cms = await self._fetch("configmaps", ns, cm_names)
        secrets = await self._fetch("secrets", ns, secret_names)
        facts = PodFacts(pod_ip=pod_ip, host_ip=self.config.node_ip, node_name=self.node,
                         kubernetes_service=self.config.kubernetes_service)
        plans = volumes.plan_volumes(pod, self.config.state_dir, facts, cms.get,
                                     secrets.get)
        return facts, cms, secrets, plans

    async def _new_sandbox(self, pod: dict, obs: Observed) -> None:
        uid = pod["metadata"]["uid"]
        # The old sandbox is stopped, not removed: its containers' records keep the
        # restart counts (removed later, when no longer needed).
        if obs.sandbox is not None:
            await self.rt("stop_pod_sandbox", obs.sandbox.id)
        try:
            _, _, _, plans = await self._render(pod, "")
            await asyncio.to_thread(volumes.materialize, plans)
        except (ConfigError, OSError) as exc:
            self.events.emit(pod, "FailedMount", f"MountVolume.SetUp failed: {exc}", WARNING)
            raise
        resolv = ""
        with contextlib.suppress(OSError), open("/etc/resolv.conf") as fh:
            resolv = fh.read()
        config = podconfig.sandbox_config(pod, self.config, resolv)
        try:
            await self.rt("run_pod_sandbox", config)
        except Exception as exc:
            self.events.emit(pod, "FailedCreatePodSandBox",
                             f"Failed to create pod sandbox: {exc}", WARNING)
            raise
        self.errors.pop(uid, None)

    async def _start(self, pod: dict, obs: Observed, start: Start) -> bool:
        uid = pod["metadata"]["uid"]
        errors = self.errors.setdefault(uid, {})
        container = podconfig.find_container(pod, start.name, start.init)
        pod_ip = obs.sandbox.ip if obs.sandbox else ""
        try:
            facts, cms, secrets, plans = await self._render(pod, pod_ip)
            env = container_env(pod, container, facts, cms.get, secrets.get)
            await asyncio.to_thread(volumes.materialize, plans)
            mounts = volumes.container_mounts(container, plans)
        except (ConfigError, OSError) as exc:
            errors[start.name] = ("CreateContainerConfigError", str(exc))
            self.events.emit(pod, "Failed", f"Error: {exc}", WARNING, start.name)
            self.queue.add_after(meta_namespace_key(pod), self.config.backoff_initial_seconds)
            return False
        config = podconfig.container_config(pod, container, attempt=start.attempt,
                                            init=start.init, env=env, mounts=mounts)
        image = container.get("image", "")
        policy = container.get("imagePullPolicy") or "IfNotPresent"
        note = "" if policy != "Always" else \
            " (pull policy Always: there is no registry, the node's store is the source)"
        self.events.emit(pod, "Pulled", f'Container image "{image}" already present on '
                         f"machine{note}", container=start.name)
        cid = None
        try:
            cid = await self.rt("create_container", obs.sandbox.id, config)
            self.events.emit(pod, "Created", f"Created container {start.name}",
                             container=start.name)
            await self.rt("start_container", cid)
        except Exception as exc:  # noqa: BLE001 - reported in the pod's status
            reason = "CreateContainerError" if cid is None else "RunContainerError"
            errors[start.name] = (reason, str(exc))
            self.events.emit(pod, "Failed", f"Error: {exc}", WARNING, start.name)
            if cid is not None:
                with contextlib.suppress(Exception):
                    await self.rt("remove_container", cid)
            self.queue.add_after(meta_namespace_key(pod), self.config.backoff_initial_seconds)
            return cid is not None
        errors.pop(start.name, None)
        self.pulls.get(uid, {}).pop(start.name, None)
        self.events.emit(pod, "Started", f"Started container {start.name}",
                         container=start.name)
        self.metrics["containers_started"] += 1
        return True

    # ---------------------------------------------------------------- probes

    def _ensure_probes(self, key: str, pod: dict, obs: Observed) -> None:
        uid = pod["metadata"]["uid"]
        running = {c.id: c for c in obs.all() if c.state == "running" and not c.init}
        for cid, c in running.items():
            if cid in self.probes:
                continue
            container = podconfig.find_container(pod, c.name, False)
            specs = [ProbeSpec.from_k8s(kind, container.get(field))
                     for kind, field in PROBE_FIELDS.items()]
            trackers = {s.kind: ProbeTracker(s, c.started_at or time.time())
                        for s in specs if s is not None}
            if not trackers:
                continue
            worker = ProbeWorker(key, uid, cid, container,
                                 obs.sandbox.ip if obs.sandbox else "", trackers)
            worker.task = asyncio.create_task(self._probe_loop(pod, worker),
                                              name=f"probe-{cid}")
            self.probes[cid] = worker
        for cid, worker in list(self.probes.items()):
            if worker.uid == uid and cid not in running:
                self._drop_probe(cid)

    def _drop_probe(self, cid: str) -> None:
        worker = self.probes.pop(cid, None)
        if worker and worker.task:
            worker.task.cancel()
        self.failed_probes.pop(cid, None)

    async def _probe_loop(self, pod: dict, worker: ProbeWorker) -> None:
        while True:
            active = worker.active()
            due = min(t.due_at() for t in active)
            await asyncio.sleep(max(0.0, due - time.time()))
            for tracker in worker.active():
                if not tracker.is_due(time.time()):
                    continue
                ok, message = await run_probe(tracker.spec, runtime=self.runtime,
                                              container_id=worker.cid,
                                              pod_ip=worker.pod_ip,
                                              container=worker.container)
                changed = tracker.record(ok, time.time(), message)
                kind = tracker.spec.kind
                if not ok:
                    self.events.emit(pod, "Unhealthy",
                                     f"{kind.capitalize()} probe failed: {message}", WARNING,
                                     worker.container["name"])
                if changed:
                    if kind in (LIVENESS, STARTUP) and tracker.result is False:
                        self.failed_probes[worker.cid] = kind
                    self.queue.add(worker.key)

    # ---------------------------------------------------------------- ending pods

    async def _release(self, pod: dict, obs: Observed) -> None:
        """A finished pod keeps its containers (for logs) but not its sandbox."""
        for c in obs.all():
            self._drop_probe(c.id)
            if c.state == "running":
                await self.rt("stop_container", c.id, podconfig.termination_grace(pod))
        if obs.sandbox and obs.sandbox.ready:
            await self.rt("stop_pod_sandbox", obs.sandbox.id)

    async def _terminate_or_retry(self, key: str, pod: dict, obs: Observed) -> None:
        try:
            await self.terminate(pod, obs)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - try again from a fresh look
            log.warning("terminating %s failed: %s; retrying", key, exc)
            self.queue.add_after(key, 1.0)

    async def terminate(self, pod: dict, obs: Observed) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        grace = podconfig.termination_grace(pod)
        running = [c for c in obs.all() if c.state == "running"]
        for c in obs.all():
            self._drop_probe(c.id)
        for c in running:
            self.events.emit(pod, "Killing", f"Stopping container {c.name}",
                             container=c.name)
        await asyncio.gather(*(self.rt("stop_container", c.id, grace) for c in running))
        await self._remove_everything(uid)
        try:
            await self.api.delete("pods", meta["name"], meta["namespace"],
                                  grace_period_seconds=0, preconditions={"uid": uid})
            self.metrics["pods_deleted"] += 1
        except (NotFound, Conflict):
            pass
        log.info("pod %s/%s terminated (grace %ds)", meta["namespace"], meta["name"], grace)

    async def _remove_everything(self, uid: str) -> None:
        for s in await self.rt("list_pod_sandboxes"):
            if sandbox_uid(s) == uid:
                # the runtime keeps logs (like CRI runtimes do); the pod's go with it
                log_dir = os.path.join(self.config.pod_log_dir, f"{s.namespace}_{s.name}_{uid}")
                await asyncio.to_thread(shutil.rmtree, log_dir, True)
                for c in await self.rt("list_containers", s.id):
                    if c.state == "running":
                        await self.rt("stop_container", c.id, 2)
                    await self.rt("remove_container", c.id)
                await self.rt("stop_pod_sandbox", s.id)
                await self.rt("remove_pod_sandbox", s.id)
        await asyncio.to_thread(volumes.remove_pod_dir, self.config.state_dir, uid)
        self.pulls.pop(uid, None)
        self.errors.pop(uid, None)
        self.events.forget(uid)
        self._announced = {m for m in self._announced if m[0] != uid}

    async def cleanup_orphan(self, uid: str) -> None:
        if any(p["metadata"].get("uid") == uid for p in self.pods.store.list()):
            return
        log.info("removing the sandbox of pod uid %s, which no longer exists", uid)
        for cid, worker in list(self.probes.items()):
            if worker.uid == uid:
                self._drop_probe(cid)
        await self._remove_everything(uid)

    # ---------------------------------------------------------------- for the server

    def metrics_snapshot(self) -> dict[str, float]:
        out: dict[str, float] = {f"{k}_total": v for k, v in self.metrics.items()}
        out["pods"] = len(self.pods.store)
        out["running_containers"] = sum(1 for s in self._seen.values() if s == "running")
        out["probe_workers"] = len(self.probes)
        out["ready"] = 1 if self.ready else 0
        return out

    async def locate(self, namespace: str, name: str, container: str,
                     previous: bool) -> tuple[CState, str]:
        if not self.ready:
            raise NotFoundError("the kubelet's runtime is not ready yet")
        pod = self.pods.store.get(f"{namespace}/{name}")
        if pod is None:
            raise NotFoundError(f'pod "{name}" in namespace "{namespace}" is not on '
                                f"node {self.node}")
        uid = pod["metadata"]["uid"]
        obs = await self.observe_pod(uid)
        c = obs.previous(container) if previous else obs.latest(container)
        if c is None:
            which = "previous terminated container" if previous else "container"
            raise NotFoundError(f'{which} "{container}" in pod "{name}" not found')
        path = c.log_path or crilog.log_path(self.config.pod_log_dir, namespace, name, uid,
                                             container, c.attempt)
        return c, path

    async def is_running(self, cid: str) -> bool:
        try:
            return (await self.rt("container_status", cid)).state == "running"
        except Exception:  # noqa: BLE001 - gone means not running
            return False


def _node_ready(node: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (node.get("status") or {}).get("conditions") or [])


def _is_init(pod: dict, name: str) -> bool:
    return any(c["name"] == name for c in (pod.get("spec") or {}).get("initContainers") or [])
