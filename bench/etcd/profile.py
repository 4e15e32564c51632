"""Where a put's CPU goes: per-member CPU per put under load, optionally a py-spy profile.

    .venv/bin/python -m bench.etcd.profile [--impl ours|etcd] [--size 3] [--clients 64]
        [--seconds 5] [--value 256] [--spread] [--spy leader|follower] [--native] [--out FILE]

Starts a local cluster, runs the put load against the leader (or every member with
``--spread``) and prints, for each member and for the load generator, CPU seconds
(user+system from /proc) divided by the puts acknowledged, plus voluntary/involuntary
context switches per put. ``--spy`` runs ``py-spy record`` on that member for the load's
duration (a flame graph SVG, or ``--format raw`` collapsed stacks; py-spy is not a
dependency of the project: ``.venv/bin/pip install py-spy``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request

from agents.etcd.localcluster import LocalCluster
from bench.etcd.load import run_load

TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def ctx_switches(pid: int) -> tuple[int, int]:
    vol = invol = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches"):
                        vol += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches"):
                        invol += int(line.split()[1])
        except FileNotFoundError:
            pass
    return vol, invol


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread, keyed by "tid:name"."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                head, rest = f.read().rsplit(")", 1)
            fields = rest.split()
            out[f"{tid}:{head.split('(', 1)[1]}"] = (int(fields[11]) + int(fields[12])) / TICK
        except (FileNotFoundError, ProcessLookupError):
            pass
    return out


def counters(metrics_url: str) -> dict[str, float]:
    """Our members' own counters (labetcd_*) and a few etcd ones, from /metrics."""
    try:
        with urllib.request.urlopen(metrics_url + "/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name.startswith(("labetcd_", "etcd_server_proposals_committed", "etcd_disk_wal_fsync_duration_seconds_count")):
            out[name] = float(value)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--impl", default="ours")
    ap.add_argument("--size", type=int, default=3)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--value", type=int, default=256, help="value size in bytes")
    ap.add_argument("--spread", action="store_true", help="clients round-robin over all members")
    ap.add_argument("--spy", choices=["leader", "follower"], help="py-spy record this member")
    ap.add_argument("--native", action="store_true", help="py-spy --native (C frames too)")
    ap.add_argument("--format", default="flamegraph", help="py-spy output format (flamegraph, raw, speedscope)")
    ap.add_argument("--out", default="/tmp/etcd-profile.svg")
    args = ap.parse_args()
    with LocalCluster(args.size, impl=args.impl) as c:
        c.start()
        leader = c.wait_ready()
        followers = [m for m in c.members if m is not leader]
        procs = {"leader": leader.proc.pid}
        for i, m in enumerate(followers):
            procs[f"follower{i}"] = m.proc.pid
        spy = None
        if args.spy:
            target = procs["leader" if args.spy == "leader" else "follower0"]
            spy_bin = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
            if not os.path.exists(spy_bin):
                raise SystemExit("--spy needs py-spy (`.venv/bin/pip install py-spy`)")
            cmd = [spy_bin, "record", "-p", str(target), "-d", str(int(args.seconds)), "-r", "200",
                   "-f", args.format, "-o", args.out]
            # --native needs to stop the process for each sample; otherwise do not
            cmd.append("--native" if args.native else "--nonblocking")
            spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            time.sleep(0.3)
        endpoints = [m.endpoint for m in c.members] if args.spread else [leader.endpoint]
        before = {k: (cpu_s(p), ctx_switches(p)) for k, p in procs.items()}
        c0 = counters(leader.metrics_url)
        t0 = thread_cpu(leader.proc.pid)
        me0 = os.times()
        res = asyncio.run(run_load(endpoints, args.clients, args.seconds, args.value))
        me1 = os.times()
        after = {k: (cpu_s(p), ctx_switches(p)) for k, p in procs.items()}
        c1 = counters(leader.metrics_url)
        t1 = thread_cpu(leader.proc.pid)
        if spy is not None:
            _, err = spy.communicate(timeout=60)
            if spy.returncode:
                print("py-spy failed:", err.decode()[-500:])
        n = max(1, res["puts"])
        report = {"load": res, "loadavg": os.getloadavg(), "cpu_us_per_put": {}, "ctx_switches_per_put": {}}
        for k in procs:
            report["cpu_us_per_put"][k] = round((after[k][0] - before[k][0]) / n * 1e6)
            report["ctx_switches_per_put"][k] = [round((after[k][1][i] - before[k][1][i]) / n, 2) for i in (0, 1)]
        gen = (me1.user + me1.system) - (me0.user + me0.system)
        report["cpu_us_per_put"]["load_generator"] = round(gen / n * 1e6)
        report["leader_threads_cpu_us_per_put"] = {
            k: round((v - t0.get(k, 0)) / n * 1e6) for k, v in t1.items() if v - t0.get(k, 0) > 0
        }
        report["leader_counters_per_put"] = {k: round((c1[k] - c0.get(k, 0)) / n, 3) for k in c1}
        print(json.dumps(report, indent=1))
        if spy is not None:
            print("profile:", args.out)


if __name__ == "__main__":
    main()
