"""The cluster smoke test: what `labctl verify` proves after the roles' own suites.

A user's app, end to end, through the lab's real components: a 3-replica Deployment
of `lab/python` serving HTTP and a Service in front of it. Its pods spread over the
workers; the Service answers through its ClusterIP from every worker and, by DNS name,
from inside a pod; a deleted pod is replaced; a stopped worker's pods come back on the
other workers; on labs with several control planes, stopping one leaves the cluster
serving. Every step is one check result, in the same form as the roles' checks.

Where steps are independent they overlap (the ClusterIP fetches from every worker and
the in-cluster DNS fetch run at once; a worker's stop runs while its pods are watched
for), and waits poll the API every quarter second, so the test takes about as long as
the cluster needs, not a multiple of a poll period.

The API is reached from the lab machine with the admin credentials of the lab's PKI;
commands on hosts go through the lab's SSH connection pool. The pure parts (objects,
what a step concludes from what it saw) are separate functions, tested without a lab.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shlex
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from labctl.verify.results import FAILED, PASSED, SKIPPED, CheckResult

ROLE = "cluster"
NAMESPACE = "lab-smoke"
APP = "web"
REPLICAS = 3
APP_PORT = 8000
SERVICE_PORT = 80
IMAGE = "lab/python:latest"
# The app's pods leave a NotReady/unreachable node this many seconds after the node
# lifecycle controller taints it (a pod without a toleration stays for the cluster's
# default, 30 s on labs, 300 s in Kubernetes): the test still proves that a dead
# worker is detected, its pods evicted and replaced elsewhere, without waiting out
# the default.
EVICT_AFTER_SECONDS = 1
NODE_GONE_TAINTS = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")


@dataclass
class SmokeOptions:
    disrupt: bool = True  # stop a worker (and a control plane on HA labs) and start them again
    timeout: float = 240.0  # per step: pods starting on TCG VMs take a while
    keep: bool = False  # leave the smoke namespace behind to look at
    interval: float = 0.25  # between polls (reads of the API from the lab machine: cheap)


@dataclass
class SmokeContext:
    """What the steps need, as callables (so tests can give fakes)."""

    kube: Any  # agents.kube.client.KubeClient
    workers: list[str]
    control_planes: list[str]
    run_on: Callable[[str, str], tuple[int, str]]  # (host, command) -> (rc, output)
    stop_host: Callable[[str], None]
    start_host: Callable[[str], None]
    domain: str = "cluster.local"
    options: SmokeOptions = field(default_factory=SmokeOptions)
    # Blocks until hosts may be stopped (the roles' suites run alongside the first
    # steps and must not see a worker go away); raises when verify is being abandoned.
    before_disrupting: Callable[[], None] = lambda: None


# ----------------------------------------------------------------- objects (pure)


def labels() -> dict[str, str]:
    return {"app": APP, "lab.labctl/smoke": "true"}


def deployment() -> dict:
    container = {
        "name": APP, "image": IMAGE, "imagePullPolicy": "IfNotPresent",
        "command": ["python3", "-m", "http.server", str(APP_PORT)],
        "ports": [{"name": "http", "containerPort": APP_PORT}],
        "readinessProbe": {"httpGet": {"path": "/", "port": APP_PORT},
                           "periodSeconds": 2, "failureThreshold": 3},
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
    }
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": APP, "namespace": NAMESPACE, "labels": labels()},
        "spec": {"replicas": REPLICAS, "selector": {"matchLabels": {"app": APP}},
                 "template": {"metadata": {"labels": labels()},
                              "spec": {"containers": [container],
                                       "tolerations": node_gone_tolerations(),
                                       "terminationGracePeriodSeconds": 2}}},
    }


def node_gone_tolerations() -> list[dict]:
    return [{"key": key, "operator": "Exists", "effect": "NoExecute",
             "tolerationSeconds": EVICT_AFTER_SECONDS} for key in NODE_GONE_TAINTS]


def service() -> dict:
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": APP, "namespace": NAMESPACE, "labels": labels()},
        "spec": {"selector": {"app": APP},
                 "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": APP_PORT}]},
    }


def fetch_command(url: str) -> list[str]:
    """A Python one-liner that GETs ``url`` and prints the status (hosts and the app
    image have Python, not curl)."""
    code = ("import sys,urllib.request;"
            f"r=urllib.request.urlopen({url!r},timeout=5);print(r.status);"
            "sys.exit(0 if r.status==200 else 1)")
    return ["python3", "-c", code]


def client_pod(name: str, url: str) -> dict:
    """A run-once pod that fetches ``url`` from inside the cluster."""
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"lab.labctl/smoke": "true"}},
        "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "fetch", "image": IMAGE,
                                 "imagePullPolicy": "IfNotPresent",
                                 "command": fetch_command(url)}]},
    }


def service_dns_name(domain: str) -> str:
    return f"{APP}.{NAMESPACE}.svc.{domain}"


# ----------------------------------------------------------------- conclusions (pure)


def is_ready(pod: dict) -> bool:
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    if meta.get("deletionTimestamp") or status.get("phase") != "Running":
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in status.get("conditions") or [])


def ready_pods(pods: list[dict]) -> list[dict]:
    return [p for p in pods if is_ready(p)]


def nodes_of(pods: list[dict]) -> set[str]:
    return {(p.get("spec") or {}).get("nodeName") or "" for p in pods} - {""}


def spread_problem(pods: list[dict], workers: list[str]) -> str | None:
    """Why the ready pods are not spread over the workers (None: they are)."""
    used = nodes_of(pods)
    want = set(workers) if len(pods) >= len(workers) else None
    if want is not None and used != want:
        missing = ", ".join(sorted(want - used))
        return f"pods run on {', '.join(sorted(used)) or 'no node'}; none on {missing}"
    return None


def node_is_ready(node: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (node.get("status") or {}).get("conditions") or [])


def busiest_worker(pods: list[dict], workers: list[str]) -> str:
    """The worker running most of ``pods`` (the one whose loss shows rescheduling best)."""
    counts = {w: 0 for w in workers}
    for pod in pods:
        node = (pod.get("spec") or {}).get("nodeName")
        if node in counts:
            counts[node] += 1
    return max(workers, key=lambda w: (counts[w], w))


# ----------------------------------------------------------------- the run (I/O)


class StepFailed(AssertionError):
    pass


async def poll(what: str, probe: Callable[[], Awaitable[Any]], timeout: float,
               interval: float = 1.0) -> Any:
    """Call ``probe`` until it returns something truthy; StepFailed naming ``what`` and
    the last thing seen after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = await probe()
        except Exception as exc:  # noqa: BLE001 - a failing probe is retried until the deadline
            last = f"{type(exc).__name__}: {exc}"
        else:
            if last and not isinstance(last, str):
                return last
        if time.monotonic() >= deadline:
            raise StepFailed(f"timed out after {timeout:.0f}s waiting for {what}"
                             + (f" (last: {last})" if last else ""))
        await asyncio.sleep(interval)


class Smoke:
    def __init__(self, ctx: SmokeContext) -> None:
        self.ctx = ctx
        self.kube = ctx.kube
        self.results: list[CheckResult] = []
        self.cluster_ip = ""

    async def poll(self, what: str, probe, timeout: float) -> Any:
        return await poll(what, probe, timeout, self.ctx.options.interval)

    async def pods(self) -> list[dict]:
        found = await self.kube.list("pods", NAMESPACE, label_selector=f"app={APP}")
        return found.get("items") or []

    async def ready(self, count: int, avoid: str | None = None) -> list[dict] | str:
        pods = ready_pods(await self.pods())
        if avoid:
            pods = [p for p in pods if p["spec"].get("nodeName") != avoid]
        if len(pods) >= count:
            return pods
        return f"{len(pods)}/{count} ready pods" + (f" off {avoid}" if avoid else "")

    async def checked(self, name: str, body: Callable[[], Awaitable[str]],
                      host: str = "-") -> CheckResult:
        """Run one step's ``body``: its result (failed with the message when it raised)."""
        t0 = time.monotonic()
        try:
            message = await body()
            outcome = PASSED
        except StepFailed as exc:
            message, outcome = str(exc), FAILED
        except Exception as exc:  # noqa: BLE001 - reported as the step's failure
            message, outcome = f"{type(exc).__name__}: {exc}", FAILED
        return CheckResult(ROLE, host, f"smoke::{name}", outcome, time.monotonic() - t0, message)

    async def step(self, name: str, body: Callable[[], Awaitable[str]], host: str = "-") -> bool:
        result = await self.checked(name, body, host)
        self.results.append(result)
        return result.outcome == PASSED

    async def steps_at_once(self, steps: list[tuple[str, Callable[[], Awaitable[str]], str]]) -> None:
        """Run independent steps concurrently; their results keep the order of ``steps``."""
        self.results += await asyncio.gather(
            *(self.checked(name, body, host) for name, body, host in steps))

    def skip(self, name: str, why: str) -> None:
        self.results.append(CheckResult(ROLE, "-", f"smoke::{name}", SKIPPED, 0.0, why))

    # -- steps ---------------------------------------------------------------------

    async def nodes_ready(self) -> str:
        async def probe():
            items = (await self.kube.list("nodes")).get("items") or []
            ready = {n["metadata"]["name"] for n in items if node_is_ready(n)}
            missing = sorted(set(self.ctx.workers) - ready)
            return True if not missing else f"not Ready: {', '.join(missing)}"
        await self.poll("every worker's Node to be Ready", probe, self.ctx.options.timeout)
        return f"{len(self.ctx.workers)} worker node(s) Ready"

    async def fresh_namespace(self) -> None:
        with contextlib.suppress(Exception):  # absent is fine
            await self.kube.delete("namespaces", NAMESPACE)

        async def gone():
            try:
                await self.kube.get("namespaces", NAMESPACE)
            except Exception as exc:  # noqa: BLE001
                return "NotFound" in type(exc).__name__ or getattr(exc, "code", 0) == 404
            return "namespace still terminating"
        await self.poll(f"an old {NAMESPACE} namespace to go away", gone, self.ctx.options.timeout)
        await self.kube.create("namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                              "metadata": {"name": NAMESPACE}})

    async def deploy_app(self) -> str:
        await self.fresh_namespace()
        await self.kube.create("deployments", deployment(), NAMESPACE)
        svc = await self.kube.create("services", service(), NAMESPACE)
        self.cluster_ip = svc["spec"]["clusterIP"]
        pods = await self.poll(f"{REPLICAS} ready pods of the {APP} Deployment",
                          lambda: self.ready(REPLICAS), self.ctx.options.timeout)
        return f"{len(pods)} pods ready on {', '.join(sorted(nodes_of(pods)))}"

    async def spread(self) -> str:
        pods = ready_pods(await self.pods())
        problem = spread_problem(pods, self.ctx.workers)
        if problem:
            raise StepFailed(problem)
        return f"pods on {', '.join(sorted(nodes_of(pods)))}"

    async def cluster_ip_from(self, host: str) -> str:
        url = f"http://{self.cluster_ip}:{SERVICE_PORT}/"
        command = shlex.join(fetch_command(url))

        async def probe():
            rc, out = await asyncio.to_thread(self.ctx.run_on, host, command)
            return True if rc == 0 else f"rc {rc}: {out.strip()[-200:]}"
        await self.poll(f"{url} to answer from {host}", probe, 30)
        return f"{url} answered 200"

    async def dns_from_pod(self) -> str:
        url = f"http://{service_dns_name(self.ctx.domain)}:{SERVICE_PORT}/"
        name = "fetch-by-dns"
        await self.kube.create("pods", client_pod(name, url), NAMESPACE)

        async def finished():
            pod = await self.kube.get("pods", name, NAMESPACE)
            phase = (pod.get("status") or {}).get("phase")
            return pod if phase in ("Succeeded", "Failed") else f"phase {phase}"
        pod = await self.poll(f"pod {name} to fetch {url}", finished, self.ctx.options.timeout)
        if pod["status"]["phase"] != "Succeeded":
            states = [c.get("state") for c in pod["status"].get("containerStatuses") or []]
            raise StepFailed(f"pod {name} could not fetch {url}: {json.dumps(states)[:300]}")
        return f"{url} answered inside pod {name} on {pod['spec'].get('nodeName')}"

    async def replace_deleted_pod(self) -> str:
        before = ready_pods(await self.pods())
        victim = before[0]["metadata"]["name"]
        await self.kube.delete("pods", victim, NAMESPACE)

        async def replaced():
            pods = await self.ready(REPLICAS)
            if isinstance(pods, str):
                return pods
            names = {p["metadata"]["name"] for p in pods}
            return pods if victim not in names else f"{victim} still counted"
        await self.poll(f"a replacement for deleted pod {victim}", replaced, self.ctx.options.timeout)
        return f"{victim} deleted and replaced"

    async def survive_worker_stop(self) -> str:
        pods = ready_pods(await self.pods())
        worker = busiest_worker(pods, self.ctx.workers)
        t0 = time.monotonic()
        # The pods are watched for while the host goes down (a provider's stop can take
        # as long as the cluster needs to notice): they cannot be ready elsewhere before
        # the node is gone, since the Deployment already has all its replicas.
        stopping = asyncio.create_task(asyncio.to_thread(self.ctx.stop_host, worker))
        moved = asyncio.create_task(self.poll(
            f"{REPLICAS} ready pods off the stopped worker {worker}",
            lambda: self.ready(REPLICAS, avoid=worker), self.ctx.options.timeout))
        await asyncio.wait({stopping, moved}, return_when=asyncio.FIRST_EXCEPTION)
        if stopping.done() and stopping.exception() is not None:
            moved.cancel()
            await asyncio.gather(moved, return_exceptions=True)
            exc = stopping.exception()
            raise StepFailed(f"stopping {worker} failed: {type(exc).__name__}: {exc}")
        try:
            await moved
            took = time.monotonic() - t0
        finally:
            await stopping  # down before it can start again
            await asyncio.to_thread(self.ctx.start_host, worker)
        await self.nodes_ready()
        return f"stopped {worker}: its pods ran elsewhere after {took:.0f}s; {worker} is back"

    async def survive_control_plane_stop(self) -> str:
        victim = self.ctx.control_planes[-1]  # the admin kubeconfig talks to the first
        await asyncio.to_thread(self.ctx.stop_host, victim)
        try:
            name = "fetch-with-cp-down"
            url = f"http://{service_dns_name(self.ctx.domain)}:{SERVICE_PORT}/"
            await self.kube.create("pods", client_pod(name, url), NAMESPACE)

            async def finished():
                pod = await self.kube.get("pods", name, NAMESPACE)
                phase = (pod.get("status") or {}).get("phase")
                return pod if phase == "Succeeded" else f"phase {phase}"
            await self.poll(f"a new pod to run and fetch {url} with {victim} stopped", finished,
                       self.ctx.options.timeout)
        finally:
            await asyncio.to_thread(self.ctx.start_host, victim)
        return f"with {victim} stopped a new pod was scheduled, ran and reached the Service"

    async def run(self) -> list[CheckResult]:
        ctx = self.ctx
        if not ctx.workers:
            self.skip("app", "the lab has no workers")
            return self.results
        if not await self.step("nodes-ready", self.nodes_ready):
            return self.results
        if not await self.step("deployment-and-service", self.deploy_app):
            return self.results
        await self.step("pods-spread-over-workers", self.spread)
        await self.steps_at_once(
            [("cluster-ip-from-node", lambda h=host: self.cluster_ip_from(h), host)
             for host in ctx.workers]
            + [("service-by-dns-from-pod", self.dns_from_pod, "-")])
        await self.step("deleted-pod-replaced", self.replace_deleted_pod)
        disrupts = ctx.options.disrupt and (len(ctx.workers) >= 2 or len(ctx.control_planes) > 1)
        if disrupts:
            await asyncio.to_thread(ctx.before_disrupting)
        if not ctx.options.disrupt:
            self.skip("worker-stopped", "--no-disrupt")
        elif len(ctx.workers) < 2:
            self.skip("worker-stopped", "needs two workers")
        else:
            await self.step("worker-stopped-pods-recreated", self.survive_worker_stop)
        if ctx.options.disrupt and len(ctx.control_planes) > 1:
            await self.step("control-plane-stopped-cluster-serves",
                            self.survive_control_plane_stop)
        if not ctx.options.keep:
            with contextlib.suppress(Exception):  # best effort: the next run starts fresh
                await self.kube.delete("namespaces", NAMESPACE)
        return self.results
