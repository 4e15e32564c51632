"""The kubelet daemon: config, logging, the real runtime and pod network, signals."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from agents.kube.client import KubeClient
from agents.kube.kubeconfig import KubeconfigError
from agents.kube.signals import cancel_on_stop_signals

from .config import ConfigError, KubeletConfig, load_config
from .kubelet import Kubelet

log = logging.getLogger("agents.kubelet")


def real_runtime_factory(cfg: KubeletConfig):
    """Build the runtime on the node's pod network once the pod CIDR is known."""
    def make(pod_cidr: str):
        from agents.podnet import BridgeNetwork
        from agents.runtime import Runtime
        for path in (cfg.runtime_root, cfg.image_store, cfg.pod_log_dir, cfg.state_dir,
                     cfg.podnet_state_dir):
            os.makedirs(path, exist_ok=True)
        network = BridgeNetwork(pod_cidr=pod_cidr, bridge=cfg.pod_bridge,
                                state_dir=cfg.podnet_state_dir,
                                unreachable=cfg.pod_unreachable)
        return Runtime(root=cfg.runtime_root, image_store=cfg.image_store, network=network,
                       log_root=cfg.pod_log_dir)
    return make


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m agents.kubelet",
                                description="Runs the pods bound to this node.")
    p.add_argument("--config", required=True, help="the kubelet's YAML config file")
    return p.parse_args(argv)


def leave_now(code: int) -> None:
    """Exit at once, not after the runtime calls still running in worker threads: a
    container's stop waits out its grace period, asyncio.run and the interpreter would
    join it, and systemd would SIGKILL the kubelet after TimeoutStopSec (holding up a
    node's poweroff). Their state is on disk; the next kubelet redoes what is unfinished."""
    log.info("stopping; containers keep running")
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


async def until_signalled(work) -> None:
    """Run the coroutine ``work`` until SIGTERM or SIGINT, then leave at once."""
    task = cancel_on_stop_signals(asyncio.create_task(work))
    try:
        await task
    except asyncio.CancelledError:
        leave_now(0)


async def run(cfg: KubeletConfig) -> int:
    async with KubeClient.from_kubeconfig(cfg.kubeconfig,
                                          user_agent=f"kubelet/{cfg.node_name}") as api:
        await until_signalled(Kubelet(cfg, api, real_runtime_factory(cfg)).run())
        return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(stream=sys.stdout, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        cfg = load_config(args.config)
        return asyncio.run(run(cfg))
    except (ConfigError, KubeconfigError) as exc:
        print(f"kubelet: {exc}", file=sys.stderr)
        return 2
