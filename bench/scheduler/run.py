"""Scheduler benchmark: N pods onto M simulated nodes through the real API server and a
real etcd 3.4, all on 127.0.0.1. Writes bench/results/scheduler.json.

    .venv/bin/python bench/scheduler/run.py [--quick] [--sizes 1000x100,5000x500]
        [--profile DIR] [--out FILE]

For each size: fresh etcd + API server + simulated nodes (all Ready first), then the pods
are created *before* the scheduler starts (so the create rate does not cap the result),
then the scheduler starts. A watch in this process timestamps each pod's first sight
bound (spec.nodeName) and Running. Reported:

- bind_rate: pods bound per second from the first to the last binding seen;
- time_to_all_bound / time_to_all_running: from scheduler start (its cache sync included);
- running_after_bind p50/p99: the simulated kubelet's part;
- time_to_all_scheduled_events: until the scheduler's last Scheduled event is written
  (they go out in the background, yielding to bindings), with the CPU every process
  used until then (`cpu_ms_per_pod_until_all_events`: the whole cost of a pod);
- the create rate of the preload (the API server + etcd on their own) for comparison.

Then a Deployment of `--deployment` replicas (100) through the controller manager, the
scheduler and 20 simulated nodes: time from its POST until all its pods are Running.

Every result carries the CPU seconds each process (etcd, API server, scheduler, simulated
nodes) used from scheduler start until all pods ran: which one saturates a core is the
first clue to where the time goes. `--profile DIR` runs the API server, the scheduler and
the simulated nodes under cProfile for that phase (bench/scheduler/profiled.py) and
writes their stats (`*.prof`) and top functions (`*.txt`) there. cProfile slows the
profiled processes down (~1.5-2x): profiled runs measure where, not how fast.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from agents.apiserver import testing  # noqa: E402
from agents.kube.client import KubeClient  # noqa: E402
from agents.kube.errors import Gone  # noqa: E402


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def pod(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": "bench"},
                         "ownerReferences": []},
            "spec": {"containers": [{"name": "c", "image": "lab/python", "resources": {
                "requests": {"cpu": "10m", "memory": "16Mi"}}}]}}


def cpu_seconds(pid: int) -> float:
    """user + system CPU time of a process so far."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


PROFILED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "profiled.py")


def agent_command(module: str, profile: str | None = None, now: bool = False) -> list[str]:
    """`python -m MODULE`, or under bench/scheduler/profiled.py writing cProfile stats to
    `profile` (profiling from the start with `now`, else between SIGUSR1 and SIGUSR2)."""
    if profile is None:
        return [sys.executable, "-m", module]
    return [sys.executable, PROFILED, *(["--now"] if now else []), profile, module]


def profile_summary(stats_path: str, out_path: str, top: int = 40) -> None:
    """The top functions by own time and by cumulative time, as text."""
    import io
    import pstats
    buf = io.StringIO()
    stats = pstats.Stats(stats_path, stream=buf)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    with open(out_path, "w") as fh:
        fh.write(buf.getvalue())


def wait_file(path: str, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path) and os.path.getsize(path) > 0:
            return True
        time.sleep(0.1)
    return False


def write_kubeconfig(path: str, server: str) -> None:
    doc = {"apiVersion": "v1", "kind": "Config", "current-context": "bench",
           "clusters": [{"name": "bench", "cluster": {"server": server}}],
           "users": [{"name": "bench", "user": {}}],
           "contexts": [{"name": "bench", "context": {"cluster": "bench", "user": "bench"}}]}
    with open(path, "w") as fh:
        json.dump(doc, fh)


def start(args: list[str], log_path: str) -> subprocess.Popen:
    with open(log_path, "wb") as log:
        return subprocess.Popen(args, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                cwd=ROOT)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


async def wait_nodes_ready(api: KubeClient, count: int, timeout: float) -> float:
    t0 = time.monotonic()
    while True:
        nodes = (await api.list("nodes"))["items"]
        ready = sum(1 for n in nodes for c in (n.get("status") or {}).get("conditions") or []
                    if c.get("type") == "Ready" and c.get("status") == "True")
        if ready >= count:
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"only {ready}/{count} simulated nodes Ready after {timeout}s")
        await asyncio.sleep(0.2)


async def create_pods(api: KubeClient, ns: str, count: int, clients: int) -> float:
    names = iter(range(count))
    t0 = time.monotonic()

    async def client():
        for i in names:
            await api.create("pods", pod(f"p-{i:05d}"), ns)
    await asyncio.gather(*(client() for _ in range(clients)))
    return count / (time.monotonic() - t0)


async def watch_progress(api: KubeClient, ns: str, rv: str, count: int,
                         bound: dict, running: dict, done: asyncio.Event) -> None:
    while True:
        try:
            async for kind, obj in api.watch("pods", ns, resource_version=rv,
                                             timeout_seconds=600):
                if kind == "BOOKMARK":
                    rv = obj["metadata"]["resourceVersion"]
                    continue
                rv = obj["metadata"]["resourceVersion"]
                name, now = obj["metadata"]["name"], time.monotonic()
                if obj["spec"].get("nodeName"):
                    bound.setdefault(name, now)
                if (obj.get("status") or {}).get("phase") == "Running":
                    running.setdefault(name, now)
                if len(running) >= count:
                    done.set()
                    return
        except Gone:
            rv = (await api.list("pods", ns, limit=1))["metadata"]["resourceVersion"]


async def measure(work: str, server: str, pods: int, nodes: int, timeout: float,
                  profile_dir: str | None, scheduler_args: list[str],
                  others: dict[str, int]) -> dict:
    kubeconfig = os.path.join(work, "kubeconfig")
    write_kubeconfig(kubeconfig, server)
    prof = {}
    if profile_dir:
        os.makedirs(profile_dir, exist_ok=True)
        prof = {name: os.path.join(profile_dir, f"{name}-{pods}x{nodes}.prof")
                for name in ("apiserver", "scheduler", "simnodes")}
    sim = start([*agent_command("agents.simnodes", prof.get("simnodes")), "--kubeconfig",
                 kubeconfig, "--nodes", str(nodes), "--cpu", "32", "--memory", "256Gi"],
                os.path.join(work, "simnodes.log"))
    sched = None
    try:
        async with KubeClient.from_kubeconfig(kubeconfig, timeout=120) as api:
            nodes_ready_s = await wait_nodes_ready(api, nodes, timeout)
            ns = "bench"
            await api.create("namespaces", {"metadata": {"name": ns}})
            create_rate = await create_pods(api, ns, pods, clients=16)
            rv = (await api.list("pods", ns, limit=1))["metadata"]["resourceVersion"]
            bound, running, done = {}, {}, asyncio.Event()
            watcher = asyncio.create_task(
                watch_progress(api, ns, rv, pods, bound, running, done))
            cmd = [*agent_command("agents.scheduler", prof.get("scheduler"), now=True),
                   "--kubeconfig", kubeconfig, "--port", "0", *scheduler_args]
            pids = {**others, "simnodes": sim.pid}
            if prof:
                for name in ("apiserver", "simnodes"):
                    os.kill(pids[name], signal.SIGUSR1)
            t_start = time.monotonic()
            sched = start(cmd, os.path.join(work, "scheduler.log"))
            pids["scheduler"] = sched.pid
            cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
            cpu_before["scheduler"] = 0.0  # it started with the phase
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), timeout)
            elapsed = time.monotonic() - t_start
            cpu = {name: round(cpu_seconds(pid) - cpu_before[name], 2)
                   for name, pid in pids.items()}
            # The scheduler writes its Scheduled events in the background, yielding to
            # bindings: count the work until the last one is written too.
            events_s = await wait_scheduled_events(api, ns, pods, t_start, timeout)
            cpu_events = {name: round(cpu_seconds(pid) - cpu_before[name], 2)
                          for name, pid in pids.items()}
            for name, path in prof.items():
                os.kill(pids[name], signal.SIGUSR2)
                if wait_file(path):
                    profile_summary(path, path[:-len(".prof")] + ".txt")
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            binds = sorted(bound.values())
            run_lat = [running[n] - bound[n] for n in running if n in bound]
            result = {
                "pods": pods, "nodes": nodes,
                "nodes_ready_s": round(nodes_ready_s, 2),
                "create_rate_pods_per_s": round(create_rate, 1),
                "bound": len(bound), "running": len(running),
                "bind_rate_pods_per_s": round((len(binds) - 1) / (binds[-1] - binds[0]), 1)
                if len(binds) > 1 and binds[-1] > binds[0] else None,
                "first_bind_after_start_s": round(binds[0] - t_start, 2) if binds else None,
                "time_to_all_bound_s": round(binds[-1] - t_start, 2)
                if len(binds) == pods else None,
                "time_to_all_running_s": round(max(running.values()) - t_start, 2)
                if len(running) == pods else None,
                "running_after_bind_p50_s": _round(pct(run_lat, 50)),
                "running_after_bind_p99_s": _round(pct(run_lat, 99)),
                "phase_s": round(elapsed, 2),
                "cpu_s_during_phase": cpu,
                "time_to_all_scheduled_events_s": events_s,
                "cpu_s_until_all_events": cpu_events,
                "cpu_ms_per_pod_until_all_events": {
                    name: round(1000 * c / pods, 2) for name, c in cpu_events.items()},
            }
            return result
    finally:
        if sched is not None:
            stop(sched)
        stop(sim)


async def wait_scheduled_events(api: KubeClient, ns: str, count: int, t_start: float,
                                timeout: float) -> float | None:
    """Seconds from t_start until `count` Scheduled events exist in ns (None: timed out)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen, token = 0, None
        while True:  # in pages, as kubectl lists
            page = await api.list("events", ns, limit=500, continue_token=token)
            seen += sum(1 for e in page["items"] if e.get("reason") == "Scheduled")
            token = page["metadata"].get("continue")
            if not token:
                break
        if seen >= count:
            return round(time.monotonic() - t_start, 2)
        await asyncio.sleep(0.5)
    return None


def _round(x):
    return None if x is None else round(x, 3)


async def measure_deployment(work: str, server: str, replicas: int, nodes: int,
                             timeout: float) -> dict:
    """A Deployment of `replicas` through the controller manager, the scheduler and the
    simulated nodes: time from the POST until every pod is Running."""
    kubeconfig = os.path.join(work, "kubeconfig")
    write_kubeconfig(kubeconfig, server)
    py = sys.executable
    procs = [start([py, "-m", "agents.simnodes", "--kubeconfig", kubeconfig, "--nodes",
                    str(nodes)], os.path.join(work, "simnodes.log")),
             start([py, "-m", "agents.scheduler", "--kubeconfig", kubeconfig, "--port", "0"],
                   os.path.join(work, "scheduler.log")),
             start([py, "-m", "agents.controller_manager", "--kubeconfig", kubeconfig,
                    "--port", "0"], os.path.join(work, "controller-manager.log"))]
    try:
        async with KubeClient.from_kubeconfig(kubeconfig, timeout=120) as api:
            await wait_nodes_ready(api, nodes, timeout)
            # Let both daemons finish starting (imports, cache sync) before the clock runs.
            deadline = time.monotonic() + timeout
            while not all(_log_says(os.path.join(work, f), "synced")
                          for f in ("scheduler.log", "controller-manager.log")):
                if time.monotonic() > deadline:
                    raise TimeoutError("scheduler / controller manager did not start")
                await asyncio.sleep(0.1)
            rv = (await api.list("pods", "default", limit=1))["metadata"]["resourceVersion"]
            bound, running, done = {}, {}, asyncio.Event()
            watcher = asyncio.create_task(
                watch_progress(api, "default", rv, replicas, bound, running, done))
            t0 = time.monotonic()
            await api.create("deployments", {
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "bench", "namespace": "default"},
                "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "bench"}},
                         "template": {"metadata": {"labels": {"app": "bench"}},
                                      "spec": {"containers": [{"name": "c",
                                                               "image": "lab/python"}]}}}},
                "default")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), timeout)
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            return {"deployment_replicas": replicas, "nodes": nodes, "running": len(running),
                    "time_to_all_running_s": round(max(running.values()) - t0, 2)
                    if len(running) == replicas else None,
                    "time_to_all_bound_s": round(max(bound.values()) - t0, 2)
                    if len(bound) == replicas else None}
    finally:
        for proc in procs:
            stop(proc)


def _log_says(path: str, text: str) -> bool:
    try:
        with open(path) as fh:
            return text in fh.read()
    except OSError:
        return False


def run_deployment(replicas: int, nodes: int, timeout: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-deploy-") as work, \
            testing.run_etcd(work) as etcd, testing.run_apiserver(work, etcd.endpoint) as apis:
        load_before = os.getloadavg()[0]
        result = asyncio.run(measure_deployment(work, apis.url, replicas, nodes, timeout))
        result["load_1m_before"] = round(load_before, 1)
        return result


def run_size(pods: int, nodes: int, timeout: float, profile_dir: str | None,
             scheduler_args: list[str]) -> dict:
    api_cmd = agent_command("agents.apiserver", os.path.join(
        profile_dir, f"apiserver-{pods}x{nodes}.prof") if profile_dir else None)
    with tempfile.TemporaryDirectory(prefix="bench-sched-") as work, \
            testing.run_etcd(work) as etcd, \
            testing.run_apiserver(work, etcd.endpoint, command=api_cmd) as apis:
        load_before = os.getloadavg()[0]
        result = asyncio.run(measure(work, apis.url, pods, nodes, timeout, profile_dir,
                                     scheduler_args, {"etcd": etcd.proc.pid,
                                                      "apiserver": apis.proc.pid}))
        result["load_1m_before"] = round(load_before, 1)
        result["load_1m_after"] = round(os.getloadavg()[0], 1)
        return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="200 pods onto 20 nodes only")
    p.add_argument("--sizes", default="1000x100,5000x500", help="PODSxNODES,…")
    p.add_argument("--deployment", type=int, default=100,
                   help="replicas of the Deployment startup run (0: skip it)")
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("--profile", metavar="DIR", help="cProfile stats (*.prof) and their top functions (*.txt) of the API "
                   "server, scheduler and simulated nodes during the binding phase go here")
    p.add_argument("--scheduler-args", default="", help="extra flags for the scheduler")
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "scheduler.json"))
    args = p.parse_args(argv)
    need = testing.ETCD
    if not os.path.exists(need):
        print(f"needs {need} (Debian package etcd-server)", file=sys.stderr)
        return 2
    sizes = "200x20" if args.quick else args.sizes
    results = []
    for size in filter(None, sizes.split(",")):
        pods, _, nodes = size.partition("x")
        result = run_size(int(pods), int(nodes), args.timeout, args.profile,
                          args.scheduler_args.split())
        print(json.dumps(result), flush=True)
        results.append(result)
    if args.deployment:
        result = run_deployment(args.deployment, 5 if args.quick else 20, args.timeout)
        print(json.dumps(result), flush=True)
        results.append(result)
    doc = {"benchmark": "scheduler", "date": datetime.now(UTC).isoformat(timespec="seconds"),
           "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
           "anchors": {"kube_scheduler_ci_pods_per_s_at_5000_nodes": "680-810 (Go)",
                       "targets": {"100_nodes": ">= 200 pods/s", "500_nodes": ">= 100 pods/s",
                                   "deployment_100": "all Running within 3 s"}},
           "results": results}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(doc, fh, indent=2)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
