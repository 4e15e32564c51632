"""The kube-proxy daemon: flags, /healthz and /metrics, SIGTERM handling.

Rules stay in place when the daemon stops (connections keep working across a restart);
`--cleanup` removes them and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
import subprocess
import sys

from aiohttp import web

from agents.kube.client import KubeClient
from agents.kube.kubeconfig import KubeconfigError
from agents.kube.signals import cancel_on_stop_signals

from .iptables import IptablesBackend
from .model import NodeInfo
from .nft import NftBackend
from .proxier import Proxier, metrics_text
from .runner import BackendError

log = logging.getLogger("agents.kube_proxy")

BRIDGE_NF = "/proc/sys/net/bridge/bridge-nf-call-iptables"


def _cidr(value: str) -> str:
    try:
        return str(ipaddress.IPv4Network(value, strict=False))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r} is not an IPv4 CIDR: {exc}") from None


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m agents.kube_proxy",
                                description="Programs Service ClusterIPs and NodePorts.")
    p.add_argument("--kubeconfig", help="kubeconfig with this component's identity")
    p.add_argument("--node-name", default=socket.gethostname())
    p.add_argument("--mode", choices=("nftables", "iptables"), default="nftables")
    p.add_argument("--nodeport-addresses", type=_cidr, nargs="*", default=[],
                   metavar="CIDR", help="only local addresses in these CIDRs accept "
                   "NodePort traffic (default: every non-loopback local address)")
    p.add_argument("--sync-period", type=float, default=30.0,
                   help="seconds between full rebuilds of the rules")
    p.add_argument("--bind-address", default="127.0.0.1")
    p.add_argument("--port", type=int, default=10256,
                   help="plain-HTTP /healthz and /metrics port; 0 disables")
    p.add_argument("--cleanup", action="store_true",
                   help="remove this proxy's rules (both modes) and exit")
    args = p.parse_args(argv)
    if not args.cleanup and not args.kubeconfig:
        p.error("--kubeconfig is required (except with --cleanup)")
    return args


def make_backend(mode: str):
    return NftBackend() if mode == "nftables" else IptablesBackend()


def ensure_bridge_netfilter() -> None:
    """Pod → Service → pod on the same bridge needs bridged frames to pass netfilter, or
    the answer skips the reverse NAT. Best effort: the setting is per network namespace."""
    if not os.path.exists(BRIDGE_NF):
        # A VM's kernel has br_netfilter as a module (nspawn hosts share the host's).
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            subprocess.run(["modprobe", "br_netfilter"], capture_output=True, check=False,
                           timeout=10)
    try:
        with open(BRIDGE_NF) as fh:
            if fh.read().strip() == "1":
                return
        with open(BRIDGE_NF, "w") as fh:
            fh.write("1\n")
        log.info("enabled %s", BRIDGE_NF)
    except OSError as exc:
        log.warning("cannot ensure %s (%s): same-node pod-to-service traffic through a "
                    "bridge may fail (load br_netfilter)", BRIDGE_NF, exc)


async def serve_http(args, proxier: Proxier) -> web.AppRunner | None:
    if not args.port:
        return None

    async def healthz(_):
        if proxier.healthy():
            return web.Response(text="ok")
        why = proxier.metrics.last_error or "rules not programmed yet"
        return web.Response(status=503, text=f"unhealthy: {why}")

    async def metrics(_):
        return web.Response(text=metrics_text(proxier), content_type="text/plain")
    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, args.bind_address, args.port).start()
    return runner


async def run(args) -> int:
    if args.cleanup:
        for backend in (NftBackend(), IptablesBackend()):
            try:
                await backend.cleanup()
            except BackendError as exc:
                log.info("%s cleanup: %s", backend.name, exc)
        return 0
    ensure_bridge_netfilter()
    node = NodeInfo(args.node_name, tuple(args.nodeport_addresses))
    async with KubeClient.from_kubeconfig(args.kubeconfig,
                                          user_agent="labctl-kube-proxy") as api:
        proxier = Proxier(api, node, make_backend(args.mode), sync_period=args.sync_period)
        runner = await serve_http(args, proxier)
        main_task = cancel_on_stop_signals(asyncio.create_task(proxier.run()))
        try:
            with contextlib.suppress(asyncio.CancelledError):
                await main_task
        finally:
            if runner:
                await runner.cleanup()
    log.info("stopped (rules left in place)")
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(stream=sys.stdout, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        return asyncio.run(run(args))
    except KubeconfigError as exc:
        print(f"kube-proxy: {exc}", file=sys.stderr)
        return 2
