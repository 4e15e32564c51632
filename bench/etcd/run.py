"""Benchmark: this etcd member and real etcd 3.4 side by side on 127.0.0.1.

    .venv/bin/python -m bench.etcd.run [--quick] [--reps 3] [--out bench/results/etcd.json]

Measures, for each implementation: puts/s and p50/p99 latency at 1 and 64 clients on
3 members (to the leader) and on 1 member; failover time (SIGKILL the leader: until a
new leader is seen and until the first acknowledged put) over N rounds; and
`etcdctl check perf --load=s|m` on 3 members. The implementations are interleaved
workload by workload (ours, etcd, etcd, ours, ...) so both see the same machine load,
which is recorded with every sample: the machine is shared, compare within a run.
Writes one JSON document; puts figures are the medians over the repetitions.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import time

import grpc

from agents.etcd.localcluster import LocalCluster
from agents.etcdapi import rpc_pb2, rpc_pb2_grpc
from bench.etcd.load import put_load


@contextlib.contextmanager
def running_cluster(size: int, impl: str, attempts: int = 3):
    """A started cluster; start again on fresh ports if one was taken meanwhile (the
    machine is shared: a port found free can be bound by someone else before we use it)."""
    for attempt in range(attempts):
        c = LocalCluster(size, impl=impl)
        try:
            c.start()
        except AssertionError:
            c.stop()
            if attempt == attempts - 1:
                raise
            continue
        try:
            yield c
        finally:
            c.stop()
        return


def puts(impl: str, size: int, seconds: float, clients: tuple[int, ...] = (1, 64)) -> list[dict]:
    with running_cluster(size, impl) as c:
        leader = c.wait_ready()
        out = []
        for n in clients:
            load = os.getloadavg()[0]
            r = put_load(leader.endpoint, n, seconds)
            r["loadavg_1m"] = round(load, 2)
            out.append(r)
        return out


def _first_put(c: LocalCluster, survivors, deadline: float) -> float | None:
    chans = [grpc.insecure_channel(m.endpoint) for m in survivors]
    try:
        while time.monotonic() < deadline:
            for ch in chans:
                try:
                    rpc_pb2_grpc.KVStub(ch).Put(rpc_pb2.PutRequest(key=b"failover", value=b"x"), timeout=0.5)
                    return time.monotonic()
                except grpc.RpcError:
                    pass
        return None
    finally:
        for ch in chans:
            ch.close()


def failover(impl: str, rounds: int) -> dict:
    leader_s, put_s = [], []
    with running_cluster(3, impl) as c:
        for _ in range(rounds):
            leader = c.wait_ready(30)
            survivors = [m for m in c.members if m is not leader]
            t0 = time.monotonic()
            c.kill(leader)
            first = _first_put(c, survivors, t0 + 20)
            if first is not None:
                put_s.append(first - t0)
            while time.monotonic() < t0 + 20:
                if c.leader(survivors) is not None:
                    leader_s.append(time.monotonic() - t0)
                    break
            c.start_member(leader)
    return {
        "rounds": rounds,
        "first_put_s": [round(x, 3) for x in put_s],
        "first_put_median_s": round(statistics.median(put_s), 3) if put_s else None,
        "new_leader_median_s": round(statistics.median(leader_s), 3) if leader_s else None,
    }


def check_perf(impl: str, load: str) -> dict:
    with running_cluster(3, impl) as c:
        c.wait_ready()
        env = dict(os.environ, ETCDCTL_API="3")
        loadavg = os.getloadavg()[0]
        res = subprocess.run(["etcdctl", "--endpoints", c.endpoints, "check", "perf", f"--load={load}"],
                             capture_output=True, text=True, env=env, timeout=300)
        words = ("PASS", "FAIL", "Throughput", "Slowest", "Stddev")
        lines = [ln.split("\r")[-1].strip() for ln in res.stdout.splitlines()]
        lines = [ln for ln in lines if ln.startswith(words)]
        return {"load": load, "passed": res.returncode == 0, "summary": lines,
                "loadavg_1m_at_start": round(loadavg, 2), "loadavg_1m_at_end": round(os.getloadavg()[0], 2),
                "error": res.stderr.strip()[-300:] if res.returncode and not lines else ""}


def _median_runs(runs: list[list[dict]]) -> list[dict]:
    """Per client count: the median puts/s, p50, p99 over repetitions, plus every run."""
    out = []
    for i in range(len(runs[0])):
        samples = [r[i] for r in runs]
        out.append({
            "clients": samples[0]["clients"],
            "puts_per_s": round(statistics.median(s["puts_per_s"] for s in samples), 1),
            "p50_ms": round(statistics.median(s["p50_ms"] for s in samples), 2),
            "p99_ms": round(statistics.median(s["p99_ms"] for s in samples), 2),
            "runs": samples,
        })
    return out


def interleaved(impls: list[str], work, reps: int) -> dict[str, list]:
    """Run work(impl) reps times per implementation, alternating the order each round."""
    got: dict[str, list] = {i: [] for i in impls}
    for rep in range(reps):
        for impl in impls if rep % 2 == 0 else list(reversed(impls)):
            got[impl].append(work(impl))
    return got


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench/results/etcd.json")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--reps", type=int, default=3, help="repetitions of each puts workload")
    ap.add_argument("--quick", action="store_true", help="puts only, no failover or check perf")
    ap.add_argument("--check-perf", default="s,m", help="etcdctl check perf loads to run ('' for none)")
    ap.add_argument("--impls", default="ours,etcd")
    args = ap.parse_args()
    impls = [i for i in args.impls.split(",") if i != "etcd" or shutil.which("etcd")]
    out = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_at_start": os.getloadavg()},
        "results": {i: {} for i in impls},
    }
    for size, name in ((3, "3_members"), (1, "1_member")):
        runs = interleaved(impls, lambda impl, size=size: puts(impl, size, args.seconds), args.reps)
        for impl in impls:
            out["results"][impl][name] = _median_runs(runs[impl])
            print(impl, name, json.dumps([(r["clients"], r["puts_per_s"], r["p50_ms"]) for r in
                                          out["results"][impl][name]]), flush=True)
    if not args.quick:
        for impl, r in interleaved(impls, lambda impl: failover(impl, args.rounds), 1).items():
            out["results"][impl]["failover"] = r[0]
            print(impl, "failover", json.dumps(r[0]), flush=True)
        out_cp: dict[str, list] = {i: [] for i in impls}
        for load in [x for x in args.check_perf.split(",") if x]:
            for impl, r in interleaved(impls, lambda impl, load=load: check_perf(impl, load), 1).items():
                out_cp[impl].append(r[0])
                print(impl, "check perf", json.dumps(r[0]), flush=True)
        for impl in impls:
            out["results"][impl]["check_perf"] = out_cp[impl]
    if "ours" in out["results"] and "etcd" in out["results"]:
        ours = out["results"]["ours"]["3_members"][1]["runs"]
        real = out["results"]["etcd"]["3_members"][1]["runs"]
        ratios = [a["puts_per_s"] / b["puts_per_s"] for a, b in zip(ours, real, strict=True) if b["puts_per_s"]]
        out["ours_vs_etcd_64_clients_3_members"] = round(statistics.median(ratios), 2) if ratios else None
        out["ours_vs_etcd_64_clients_3_members_per_rep"] = [round(x, 2) for x in ratios]
    out["machine"]["loadavg_at_end"] = os.getloadavg()
    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)
    print(json.dumps({k: v for k, v in out.items() if k != "results"}, indent=2))


if __name__ == "__main__":
    main()
