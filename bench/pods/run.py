"""bench/pods: the whole default lab, up to verified, and pod startup latency on it.

For each provider: `labctl up -i inventory/default.yml` (image cached) with its phases
(image, network, create, ready, deploy, verify incl. the cluster smoke test), then 50
pods of `lab/busybox` (`sleep 3600`) created at once and timed from POST to the first
watch event that shows them Running (p50/p99), then `down`. Each provider runs in a
throwaway LABCTL_HOME whose images/ and wheelhouse/ link to the machine's caches, as
for a user's second `up` (a first one also builds the agents' dependency wheels).

    .venv/bin/python -m bench.pods.run [--providers nspawn,libvirt] [--pods 50] [--out bench/results/pods.json]

`--reuse NAME --lab-network CIDR` times the pods on a default lab that is already up
(`labctl up -i inventory/default.yml -e lab_name=NAME -e lab_network=CIDR`) and leaves
it up: back-to-back runs on the same lab, e.g. before/after a change to the agents
(redeploy with `labctl deploy` in between).

Anchors: Kubernetes' pod startup SLO is p99 <= 5 s (no image pull); kind creates a
single-node cluster in ~12-17 s. Targets: p99 <= 2 s; default lab up and verified
<= 60 s on nspawn, <= 4 min on TCG VMs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from labctl import lifecycle  # noqa: E402
from labctl.errors import LabError  # noqa: E402
from labctl.inventory import load_inventory  # noqa: E402
from labctl.state import images_dir, labctl_home  # noqa: E402

TARGETS = {"pod_p99_s": 2.0, "up_verified_s": {"nspawn": 60.0, "libvirt": 240.0}}
NAMESPACE = "bench-pods"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))  # nearest rank
    return ordered[index]


def bench_pod(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"bench": "pods"}},
            "spec": {"terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "sleep", "image": "lab/busybox:latest",
                                     "imagePullPolicy": "IfNotPresent",
                                     "command": ["sleep", "3600"],
                                     "resources": {"requests": {"cpu": "1m", "memory": "1Mi"}}}]}}


async def no_pod_terminating(kube, timeout: float) -> float:
    """Wait until no pod of the cluster is terminating (the smoke test deletes its
    namespace as it ends): pods on their way out still count on their node, and would
    steer the scheduler's choices. Seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        pods = (await kube.list("pods")).get("items") or []
        if not any(p["metadata"].get("deletionTimestamp") for p in pods):
            break
        await asyncio.sleep(0.25)
    return round(time.monotonic() - t0, 3)


async def pod_startup(inv, count: int, timeout: float) -> dict:
    """Create ``count`` pods at once; seconds from each POST to seeing it Running."""
    from agents.kube.client import KubeClient
    from labctl.verify.cluster import admin_config

    async with KubeClient(admin_config(inv), user_agent="bench-pods") as kube:
        settle_s = await no_pod_terminating(kube, timeout)
        await kube.create("namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                         "metadata": {"name": NAMESPACE}})
        listed = await kube.list("pods", NAMESPACE)
        rv = listed["metadata"]["resourceVersion"]
        running: dict[str, float] = {}
        posted: dict[str, float] = {}

        async def watch() -> None:
            async for kind, obj in kube.watch("pods", NAMESPACE, resource_version=rv,
                                              timeout_seconds=int(timeout)):
                if kind not in ("ADDED", "MODIFIED"):
                    continue  # bookmarks, deletions
                name = obj["metadata"]["name"]
                if (obj.get("status") or {}).get("phase") == "Running" and name not in running:
                    running[name] = time.monotonic()
                    if len(running) == count:
                        return

        watcher = asyncio.create_task(watch())

        async def post(i: int) -> None:
            name = f"p{i:03d}"
            posted[name] = time.monotonic()
            await kube.create("pods", bench_pod(name), NAMESPACE)

        t0 = time.monotonic()
        await asyncio.gather(*(post(i) for i in range(count)))
        with contextlib.suppress(TimeoutError):  # report what ran by then
            await asyncio.wait_for(watcher, timeout)
        latencies = [running[n] - posted[n] for n in posted if n in running]
        with_nodes = (await kube.list("pods", NAMESPACE)).get("items") or []
        nodes: dict[str, int] = {}
        for pod in with_nodes:
            node = (pod.get("spec") or {}).get("nodeName") or "(unscheduled)"
            nodes[node] = nodes.get(node, 0) + 1
        await kube.delete("namespaces", NAMESPACE)
        return {"pods": count, "running": len(latencies), "waited_for_terminating_s": settle_s,
                "all_running_s": round(max(running.values()) - t0, 3) if running else None,
                "p50_s": round(percentile(latencies, 50), 3),
                "p99_s": round(percentile(latencies, 99), 3),
                "max_s": round(max(latencies), 3) if latencies else None,
                "per_node": nodes,
                "meets_target": bool(latencies) and len(latencies) == count
                and percentile(latencies, 99) <= TARGETS["pod_p99_s"]}


def scenario(provider: str, pods: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-pods-", dir="/var/tmp") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        for d in (Path(tmp), home):
            d.chmod(0o711)
        (home / "images").symlink_to(images_dir())
        shared_wheels = labctl_home() / "wheelhouse"
        shared_wheels.mkdir(parents=True, exist_ok=True)
        (home / "wheelhouse").symlink_to(shared_wheels)
        old_home = os.environ.get("LABCTL_HOME")
        os.environ["LABCTL_HOME"] = str(home)
        lab = f"bp{random.randrange(16**4):04x}"
        inv = load_inventory(ROOT / "inventory" / "default.yml",
                             {"lab_name": lab, "lab_provider": provider,
                              "lab_network": f"10.{random.randint(200, 249)}.{random.randint(0, 255)}.0/24"})
        assert not inv.errors(), inv.errors()
        result: dict = {"provider": provider, "hosts": len(inv.hosts)}
        try:
            t0 = time.monotonic()
            up = lifecycle.up(inv, lifecycle.UpOptions(progress=lambda line: print(f"   {line}", file=sys.stderr)))
            result["up_verified_s"] = round(time.monotonic() - t0, 3)
            result["phases"] = {k: round(v, 3) for k, v in up.phases.items()}
            result["verified"] = up.verified
            target = TARGETS["up_verified_s"][provider]
            result["target_up_verified_s"] = target
            result["meets_up_target"] = bool(up.verified) and result["up_verified_s"] <= target
            result["pod_startup"] = asyncio.run(pod_startup(inv, pods, 300.0))
        except LabError as exc:  # a failed up/verify is a result too: keep the others
            result["error"] = str(exc)
            result["failed_after_s"] = round(time.monotonic() - t0, 3)
        finally:
            t0 = time.monotonic()
            lifecycle.down(lab, progress=None)
            result["down_s"] = round(time.monotonic() - t0, 3)
            if old_home is None:
                os.environ.pop("LABCTL_HOME", None)
            else:
                os.environ["LABCTL_HOME"] = old_home
        return result


def reuse_scenario(lab: str, network: str, pods: int) -> dict:
    """Pod startup only, on the existing default lab ``lab`` (not brought up nor down)."""
    inv = load_inventory(ROOT / "inventory" / "default.yml",
                         {"lab_name": lab, "lab_network": network})
    assert not inv.errors(), inv.errors()
    result: dict = {"provider": inv.hosts[next(iter(inv.hosts))].vars.get("lab_provider"),
                    "hosts": len(inv.hosts), "reused_lab": lab}
    try:
        result["pod_startup"] = asyncio.run(pod_startup(inv, pods, 300.0))
    except LabError as exc:
        result["error"] = str(exc)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--providers", default="nspawn,libvirt")
    parser.add_argument("--pods", type=int, default=50)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "pods.json")
    parser.add_argument("--reuse", metavar="NAME",
                        help="time the pods on this already-up default lab; leave it up")
    parser.add_argument("--lab-network", metavar="CIDR",
                        help="the reused lab's lab_network (as given to labctl up)")
    args = parser.parse_args(argv)
    if args.reuse and not args.lab_network:
        parser.error("--reuse NAME needs --lab-network CIDR (the lab's lab_network)")
    if os.geteuid() != 0:
        print("bench/pods needs root", file=sys.stderr)
        return 2
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    runs = []
    providers = [] if args.reuse else [p for p in args.providers.split(",") if p]
    for provider in providers or [None]:
        if provider is None:
            print(f"== reused lab {args.reuse}", file=sys.stderr)
            run = reuse_scenario(args.reuse, args.lab_network, args.pods)
        else:
            print(f"== default lab on {provider}", file=sys.stderr)
            run = scenario(provider, args.pods)
        runs.append(run)
        pod = run.get("pod_startup") or {}
        up = "" if provider is None else (f"up+verified {run.get('up_verified_s')}s (target "
                                           f"{run.get('target_up_verified_s')}), ")
        print(f"   {up}pods {pod.get('running')}/{pod.get('pods')} running, p50 {pod.get('p50_s')}s "
              f"p99 {pod.get('p99_s')}s{' ' + run['error'] if run.get('error') else ''}",
              file=sys.stderr)
    report = {"benchmark": "pods", "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "machine": {"cpus": os.cpu_count(),
                          "load_avg_1_5_15_at_start": load_at_start,
                          "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()],
                          "kernel": platform.release()},
              "targets": TARGETS, "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"saved {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
