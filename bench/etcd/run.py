"""Benchmark: this etcd member and real etcd 3.4 side by side on 127.0.0.1.

    .venv/bin/python -m bench.etcd.run [--quick] [--out bench/results/etcd.json]

Measures, for each implementation: puts/s and p50/p99 latency at 1 and 64 clients on
3 members (to the leader) and on 1 member; failover time (SIGKILL the leader: until a
new leader is seen and until the first acknowledged put) over N rounds; and
`etcdctl check perf --load=s|m` on 3 members. Writes one JSON document.
"""

from __future__ import annotations

import argparse
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


def puts(impl: str, size: int, seconds: float) -> list[dict]:
    with LocalCluster(size, impl=impl) as c:
        c.start()
        leader = c.wait_ready()
        return [put_load(leader.endpoint, n, seconds) for n in (1, 64)]


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
    with LocalCluster(3, impl=impl) as c:
        c.start()
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
    with LocalCluster(3, impl=impl) as c:
        c.start()
        c.wait_ready()
        env = dict(os.environ, ETCDCTL_API="3")
        res = subprocess.run(["etcdctl", "--endpoints", c.endpoints, "check", "perf", f"--load={load}"],
                             capture_output=True, text=True, env=env, timeout=300)
        words = ("PASS", "FAIL", "Throughput", "Slowest", "Stddev")
        lines = [ln.split("\r")[-1].strip() for ln in res.stdout.splitlines()]
        lines = [ln for ln in lines if ln.startswith(words)]
        return {"load": load, "passed": res.returncode == 0, "summary": lines,
                "error": res.stderr.strip()[-300:] if res.returncode and not lines else ""}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench/results/etcd.json")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="puts only, no failover or check perf")
    ap.add_argument("--impls", default="ours,etcd")
    args = ap.parse_args()
    impls = [i for i in args.impls.split(",") if i != "etcd" or shutil.which("etcd")]
    out = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_at_start": os.getloadavg()},
        "results": {},
    }
    for impl in impls:
        r = out["results"][impl] = {}
        r["3_members"] = puts(impl, 3, args.seconds)
        r["1_member"] = puts(impl, 1, args.seconds)
        print(impl, json.dumps(r), flush=True)
        if not args.quick:
            r["failover"] = failover(impl, args.rounds)
            r["check_perf"] = [check_perf(impl, "s"), check_perf(impl, "m")]
            print(impl, json.dumps(r), flush=True)
    if "ours" in out["results"] and "etcd" in out["results"]:
        ours = out["results"]["ours"]["3_members"][1]["puts_per_s"]
        real = out["results"]["etcd"]["3_members"][1]["puts_per_s"]
        out["ours_vs_etcd_64_clients_3_members"] = round(ours / real, 2) if real else None
    out["machine"]["loadavg_at_end"] = os.getloadavg()
    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
