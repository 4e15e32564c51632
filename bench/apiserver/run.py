"""API server benchmark: pod creates/s and latency at 1 and 32 clients, LIST of 1,000
pods, watch delivery latency to 100 watchers. Writes a JSON result.

    .venv/bin/python bench/apiserver/run.py [--etcd-servers URL] [--out FILE]

Without options it starts a throwaway real etcd 3.4 (/usr/bin/etcd); `--ours` starts our
etcd agent instead; `--etcd-servers URL` uses a running etcd. Run both for side-by-side.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime

import aiohttp

from agents.apiserver import testing


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def pod(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"b": "1"}},
            "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}


async def create_ns(session, base, ns):
    async with session.post(f"{base}/api/v1/namespaces",
                            json={"metadata": {"name": ns}}) as resp:
        assert resp.status in (201, 409), await resp.text()


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU a process has used (a figure that holds up on a busy machine)."""
    if pid is None:
        return 0.0
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def creates(session, base, ns, clients: int, total: int, pids=(None, None)) -> dict:
    latencies: list[float] = []
    counter = iter(range(total))

    async def worker():
        for n in counter:
            started = time.perf_counter()
            async with session.post(f"{base}/api/v1/namespaces/{ns}/pods",
                                    json=pod(f"p{n}")) as resp:
                await resp.read()
                assert resp.status == 201, resp.status
            latencies.append(time.perf_counter() - started)

    cpu0 = [cpu_seconds(p) for p in pids]
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    cpu = [(cpu_seconds(p) - c) / total * 1000 for p, c in zip(pids, cpu0, strict=True)]
    return {"clients": clients, "creates": total, "seconds": round(elapsed, 3),
            "apiserver_cpu_ms_per_create": round(cpu[0], 3),
            "store_cpu_ms_per_create": round(cpu[1], 3) if pids[1] else None,
            "creates_per_s": round(total / elapsed, 1),
            "p50_ms": round(pct(latencies, 50) * 1000, 2),
            "p99_ms": round(pct(latencies, 99) * 1000, 2)}


async def list_pods(session, base, ns, rounds: int = 5, pid=None) -> dict:
    times, count = [], 0
    cpu0 = cpu_seconds(pid)
    for _ in range(rounds):
        started = time.perf_counter()
        async with session.get(f"{base}/api/v1/namespaces/{ns}/pods") as resp:
            body = await resp.json()
        times.append(time.perf_counter() - started)
        count = len(body["items"])
    return {"items": count, "rounds": rounds, "median_ms": round(statistics.median(times) * 1000, 1),
            "max_ms": round(max(times) * 1000, 1),
            "apiserver_cpu_ms_per_list": round((cpu_seconds(pid) - cpu0) / rounds * 1000, 1)}


async def watch_latency(session, base, ns, watchers: int = 100, writes: int = 50,
                        pid=None) -> dict:
    sent: dict[str, float] = {}
    delays: list[float] = []
    ready = 0
    all_ready = asyncio.Event()

    async def watcher():
        nonlocal ready
        url = f"{base}/api/v1/namespaces/{ns}/configmaps?watch=1&resourceVersion=0&timeoutSeconds=120"
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=None)) as resp:
            ready += 1
            if ready == watchers:
                all_ready.set()
            seen = 0
            async for line in resp.content:
                ev = json.loads(line)
                name = ev["object"]["metadata"]["name"]
                if name in sent:
                    delays.append(time.perf_counter() - sent[name])
                    seen += 1
                    if seen == writes:
                        return

    tasks = [asyncio.create_task(watcher()) for _ in range(watchers)]
    await asyncio.wait_for(all_ready.wait(), 60)
    # wait for the server to register every watcher before measuring
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        async with session.get(f"{base}/metrics") as resp:
            text = await resp.text()
        line = next(x for x in text.splitlines()
                    if x.startswith('apiserver_registered_watchers{resource="configmaps"}'))
        if int(line.split()[-1]) >= watchers:
            break
        await asyncio.sleep(0.05)
    cpu0 = cpu_seconds(pid)
    for n in range(writes):
        name = f"w{n}"
        sent[name] = time.perf_counter()
        async with session.post(f"{base}/api/v1/namespaces/{ns}/configmaps",
                                json={"metadata": {"name": name}}) as resp:
            assert resp.status == 201
        await asyncio.sleep(0.02)  # pace the writes: this measures delivery, not throughput
    await asyncio.wait_for(asyncio.gather(*tasks), 120)
    cpu = cpu_seconds(pid) - cpu0
    return {"watchers": watchers, "writes": writes, "deliveries": len(delays),
            "apiserver_cpu_us_per_delivery": round(cpu / max(len(delays), 1) * 1e6, 1),
            "p50_ms": round(pct(delays, 50) * 1000, 2),
            "p99_ms": round(pct(delays, 99) * 1000, 2)}


async def measure(base: str, pids) -> dict:
    conn = aiohttp.TCPConnector(limit=200)
    async with aiohttp.ClientSession(base_url=None, connector=conn) as session:
        for ns in ("bench1", "bench32", "benchlist", "benchwatch"):
            await create_ns(session, base, ns)
        one = await creates(session, base, "bench1", 1, 300, pids)
        many = await creates(session, base, "bench32", 32, 2000, pids)
        await creates(session, base, "benchlist", 32, 1000)
        listing = await list_pods(session, base, "benchlist", pid=pids[0])
        watch = await watch_latency(session, base, "benchwatch", pid=pids[0])
    return {"creates_1_client": one, "creates_32_clients": many, "list_1000_pods": listing,
            "watch_delivery_100_watchers": watch}


def run_one(store: str, etcd_servers: str | None = None) -> dict:
    """One measurement: the API server on a fresh etcd 3.4 ("etcd"), a fresh etcd agent
    of ours ("ours"), or the given ``etcd_servers``."""
    with tempfile.TemporaryDirectory(prefix="bench-apiserver-") as work, \
            contextlib.ExitStack() as stack:
        store_pid = None
        if etcd_servers:
            endpoint = etcd_servers
        else:
            command = [sys.executable, "-m", "agents.etcd"] if store == "ours" else None
            etcd = stack.enter_context(testing.run_etcd(work, command))
            endpoint, store_pid = etcd.endpoint, etcd.proc.pid
        api = stack.enter_context(testing.run_apiserver(work, endpoint))
        load_before = os.getloadavg()[0]
        results = asyncio.run(measure(api.url, (api.proc.pid, store_pid)))
    return {"store": STORES.get(store, store),
            "load_average_1m": [round(load_before, 1), round(os.getloadavg()[0], 1)],
            "results": results}


STORES = {"etcd": "etcd 3.4 (Debian)", "ours": "our etcd agent"}


def summary_line(run: dict) -> str:
    r = run["results"]
    one, many = r["creates_1_client"], r["creates_32_clients"]
    watch = r["watch_delivery_100_watchers"]
    return (f"{run['store']:<20} creates/s 1 client {one['creates_per_s']:>6.0f} "
            f"(p99 {one['p99_ms']:.0f} ms)  32 clients {many['creates_per_s']:>6.0f} "
            f"(p99 {many['p99_ms']:.0f} ms)  LIST 1000 {r['list_1000_pods']['median_ms']:.0f} ms  "
            f"watch p99 {watch['p99_ms']:.0f} ms")


def main() -> int:
    p = argparse.ArgumentParser(description="API server on real etcd 3.4 and on our etcd "
                                            "agent, side by side in one run")
    p.add_argument("--stores", default="etcd,ours",
                   help="comma list of etcd (Debian's 3.4) and ours (agents.etcd)")
    p.add_argument("--etcd-servers", help="benchmark on this etcd instead (one run)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "results",
                                                 "apiserver.json"))
    args = p.parse_args()
    if args.etcd_servers:
        runs = [run_one("external etcd", args.etcd_servers)]
    else:
        runs = [run_one(store.strip()) for store in args.stores.split(",") if store.strip()]
    record = {"benchmark": "apiserver",
              "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
              "host": {"cpus": os.cpu_count(), "python": platform.python_version()},
              "targets": {"creates_per_second_32_clients_on_etcd": 500,
                          "mutating_p99_ms": 100, "watch_delivery_p99_ms": 50},
              "runs": runs}
    out = os.path.normpath(args.out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as fh:
        json.dump(record, fh, indent=2)
    for run in runs:
        print(summary_line(run))
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
