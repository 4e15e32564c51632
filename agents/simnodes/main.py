"""The simulated-nodes daemon: flags, /healthz and /metrics, SIGTERM handling. The nodes
stay registered after exit (like kwok's); their Leases simply stop being renewed."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from aiohttp import web

from agents.kube.client import KubeClient
from agents.kube.kubeconfig import KubeconfigError
from agents.kube.signals import cancel_on_stop_signals

from .simulator import SimNodes

log = logging.getLogger("agents.simnodes")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m agents.simnodes",
                                description="Registers fake nodes that run pods instantly.")
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--nodes", type=int, required=True, help="how many nodes")
    p.add_argument("--prefix", default="sim-", help="node names are PREFIX0, PREFIX1, …")
    p.add_argument("--first-index", type=int, default=0,
                   help="number of the first node (to run several processes side by side)")
    p.add_argument("--cpu", default="32", help="cpu capacity of each node")
    p.add_argument("--memory", default="256Gi", help="memory capacity of each node")
    p.add_argument("--max-pods", default="110", help="pods capacity of each node")
    p.add_argument("--lease-duration", type=int, default=40)
    p.add_argument("--renew-interval", type=float, default=10.0)
    p.add_argument("--workers", type=int, default=16,
                   help="pod status writes in flight")
    p.add_argument("--bind-address", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="/healthz and /metrics; 0: none")
    args = p.parse_args(argv)
    if args.nodes < 0 or args.first_index < 0:
        p.error("--nodes and --first-index must be 0 or more")
    return args


async def serve_health(args, sim: SimNodes) -> web.AppRunner | None:
    if not args.port:
        return None

    async def healthz(_):
        return web.Response(text="ok")

    async def metrics(_):
        lines = []
        for name, value in sim.metrics.items():
            lines += [f"# TYPE simnodes_{name}_total counter", f"simnodes_{name}_total {value}"]
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")
    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, args.bind_address, args.port).start()
    return runner


async def run(args) -> int:
    async with KubeClient.from_kubeconfig(args.kubeconfig,
                                          user_agent="labctl-simnodes") as api:
        sim = SimNodes(api, args.nodes, prefix=args.prefix, first_index=args.first_index,
                       cpu=args.cpu, memory=args.memory, pods=args.max_pods,
                       lease_duration=args.lease_duration,
                       renew_interval=args.renew_interval, workers=args.workers)
        runner = await serve_health(args, sim)
        task = cancel_on_stop_signals(asyncio.create_task(sim.run()))
        try:
            await task
        except asyncio.CancelledError:
            pass
        finally:
            if runner:
                await runner.cleanup()
        return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(stream=sys.stdout, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        return asyncio.run(run(args))
    except KubeconfigError as exc:
        print(f"simnodes: {exc}", file=sys.stderr)
        return 2
