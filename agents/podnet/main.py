"""The route-sync daemon: `python -m agents.podnet --kubeconfig F --node-name N`.

Turns IP forwarding on, then keeps a route to every other node's pod CIDR via that
node's InternalIP (host-gw) from a watch of the Nodes; serves /healthz and /metrics;
SIGTERM stops it (routes stay: pods keep talking while it restarts)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from aiohttp import web

from agents.kube.client import KubeClient
from agents.kube.kubeconfig import KubeconfigError
from agents.kube.signals import cancel_on_stop_signals

from .errors import CommandError, PodNetError
from .iproute import Commands
from .routesync import RouteSync, metrics_text
from .routetable import DEFAULT_PROTO, RouteTable

log = logging.getLogger("agents.podnet")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m agents.podnet",
                                description="Keeps host-gw routes to every other node's "
                                "pod CIDR in sync with the Node objects.")
    p.add_argument("--kubeconfig", required=True, help="kubeconfig allowed to list and "
                   "watch Nodes (a kubelet's or kube-proxy's identity)")
    p.add_argument("--node-name", required=True,
                   help="this host's Node name (its own pod CIDR is on its bridge)")
    p.add_argument("--route-proto", type=int, default=DEFAULT_PROTO,
                   help="protocol number marking the routes this daemon owns (1-255)")
    p.add_argument("--resync-period", type=float, default=30.0,
                   help="seconds between full re-syncs of the routing table")
    p.add_argument("--netns", default=None,
                   help="program routes in this network namespace (name or path) instead "
                   "of the daemon's own; for tests")
    p.add_argument("--bind-address", default="127.0.0.1")
    p.add_argument("--port", type=int, default=10264,
                   help="plain-HTTP /healthz and /metrics port; 0 disables")
    args = p.parse_args(argv)
    if not 1 <= args.route_proto <= 255:
        p.error("--route-proto must be between 1 and 255")
    if args.resync_period <= 0:
        p.error("--resync-period must be positive")
    return args


async def serve_health(args, sync: RouteSync) -> web.AppRunner | None:
    if not args.port:
        return None

    async def healthz(_):
        if not sync.synced():
            return web.Response(status=503, text="node informer not synced yet")
        return web.Response(text="ok")

    async def metrics(_):
        return web.Response(text=metrics_text(sync), content_type="text/plain")
    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, args.bind_address, args.port).start()
    return runner


def prepare_host(commands: Commands) -> None:
    """Forwarding on (per netns: an nspawn host's own setting, not the lab machine's);
    bridged pod traffic through the node's netfilter hooks, so that kube-proxy's DNAT of
    a Service answered by a pod on the same bridge is undone on the way back (a VM must
    load br_netfilter; an nspawn host sees the lab machine's module)."""
    commands.sysctl("net.ipv4.ip_forward", "1")
    try:
        if not os.path.exists("/proc/sys/net/bridge"):
            commands.run("modprobe", "br_netfilter")
        commands.sysctl("net.bridge.bridge-nf-call-iptables", "1")
    except CommandError as exc:
        log.warning("bridged pod traffic bypasses netfilter: %s", exc)


async def run(args) -> int:
    commands = Commands(args.netns)
    await asyncio.to_thread(prepare_host, commands)
    async with KubeClient.from_kubeconfig(args.kubeconfig, user_agent="labctl-podnet") as api:
        sync = RouteSync(api, args.node_name, RouteTable(commands, args.route_proto),
                         args.resync_period)
        runner = await serve_health(args, sync)
        task = cancel_on_stop_signals(asyncio.create_task(sync.run()))
        log.info("syncing routes for node %s (proto %d)", args.node_name, args.route_proto)
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
    except (KubeconfigError, PodNetError) as exc:
        print(f"podnet: {exc}", file=sys.stderr)
        return 2
