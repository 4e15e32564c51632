"""The controller-manager daemon: shared informers, the controllers, leader election,
/healthz and /metrics, SIGTERM handling (stop, release the lease, exit 0)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import sys
import uuid

from aiohttp import web

from agents.kube.client import KubeClient
from agents.kube.informer import Informer, by_namespace, by_owner_uid, pods_by_node
from agents.kube.kubeconfig import KubeconfigError
from agents.kube.leaderelection import run_leader_elected

from .base import EventRecorder
from .deployment import DeploymentController
from .endpoints import EndpointsController
from .garbagecollector import GarbageCollector
from .namespace import NamespaceController
from .nodeipam import CidrPlan, NodeIpamController
from .nodelifecycle import NodeLifecycleController
from .replicaset import ReplicaSetController

log = logging.getLogger("agents.controller_manager")

CONTROLLERS = ("replicaset", "deployment", "endpoints", "nodelifecycle", "garbagecollector",
               "namespace", "nodeipam")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m agents.controller_manager",
                                description="Runs the workload controllers.")
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--leader-elect", action="store_true")
    p.add_argument("--leader-elect-lease-duration", type=int, default=15)
    p.add_argument("--leader-elect-renew-deadline", type=float, default=10.0)
    p.add_argument("--leader-elect-retry-period", type=float, default=2.0)
    p.add_argument("--leader-elect-resource-namespace", default="kube-system")
    p.add_argument("--leader-elect-resource-name", default="kube-controller-manager")
    p.add_argument("--controllers", default=",".join(CONTROLLERS),
                   help=f"comma-separated subset of: {', '.join(CONTROLLERS)}")
    p.add_argument("--concurrent-syncs", type=int, default=5,
                   help="workers per controller")
    p.add_argument("--node-monitor-grace-period", type=float, default=40.0,
                   help="seconds without a node heartbeat before it is marked Unknown")
    p.add_argument("--node-monitor-period", type=float, default=5.0)
    p.add_argument("--default-toleration-seconds", type=int, default=300,
                   help="how long pods stay on an unreachable/not-ready node when they "
                   "do not say (as the DefaultTolerationSeconds admission plugin)")
    p.add_argument("--allocate-node-cidrs", action="store_true",
                   help="give every Node a pod CIDR from --cluster-cidr (the nodeipam "
                   "controller runs only with this)")
    p.add_argument("--cluster-cidr", default=None, help="the pods' range, e.g. 10.244.0.0/16")
    p.add_argument("--node-cidr-mask-size", type=int, default=24,
                   help="prefix length of each node's pod CIDR")
    p.add_argument("--bind-address", default="127.0.0.1")
    p.add_argument("--port", type=int, default=10257, help="/healthz and /metrics; 0: none")
    p.add_argument("--identity", default=None)
    args = p.parse_args(argv)
    unknown = set(args.controllers.split(",")) - set(CONTROLLERS)
    if unknown:
        p.error(f"unknown controllers {', '.join(sorted(unknown))}; known: "
                f"{', '.join(CONTROLLERS)}")
    args.cidr_plan = None
    if args.allocate_node_cidrs:
        if not args.cluster_cidr:
            p.error("--allocate-node-cidrs needs --cluster-cidr (e.g. 10.244.0.0/16)")
        try:
            args.cidr_plan = CidrPlan.parse(args.cluster_cidr, args.node_cidr_mask_size)
        except ValueError as exc:
            p.error(str(exc))
    return args


class Manager:
    def __init__(self, api, controllers=CONTROLLERS, workers: int = 5,
                 node_options: dict | None = None, cidr_plan: CidrPlan | None = None):
        self.api, self.workers = api, workers
        index = {"namespace": by_namespace, "owner": by_owner_uid}
        self.pods = Informer(api, "pods", indexers={**index, "node": pods_by_node})
        self.replicasets = Informer(api, "replicasets", indexers=index)
        self.deployments = Informer(api, "deployments", indexers=index)
        self.services = Informer(api, "services", indexers={"namespace": by_namespace})
        self.endpoints = Informer(api, "endpoints")
        self.nodes = Informer(api, "nodes")
        self.namespaces = Informer(api, "namespaces")
        self.leases = Informer(api, "leases", "kube-node-lease",
                               indexers={"owner": by_owner_uid})
        events = EventRecorder(api, "controller-manager")
        self.controllers = []
        if "replicaset" in controllers:
            self.controllers.append(ReplicaSetController(api, self.pods, self.replicasets,
                                                         events))
        if "deployment" in controllers:
            self.controllers.append(DeploymentController(api, self.deployments,
                                                         self.replicasets, self.pods, events))
        if "endpoints" in controllers:
            self.controllers.append(EndpointsController(api, self.services, self.endpoints,
                                                        self.pods, events))
        if "garbagecollector" in controllers:
            self.controllers.append(GarbageCollector(api, {
                "pods": self.pods, "replicasets": self.replicasets,
                "deployments": self.deployments, "nodes": self.nodes,
                "leases": self.leases}, events))
        if "nodelifecycle" in controllers:
            self.controllers.append(NodeLifecycleController(
                api, self.nodes, self.leases, self.pods, events, **(node_options or {})))
        if "namespace" in controllers:
            self.controllers.append(NamespaceController(api, self.namespaces, events=events))
        if "nodeipam" in controllers and cidr_plan is not None:
            # As kube-controller-manager: node IPAM only with --allocate-node-cidrs.
            self.controllers.append(NodeIpamController(api, self.nodes, cidr_plan, events))

    async def run(self) -> None:
        informers = [self.pods, self.replicasets, self.deployments, self.services,
                     self.endpoints, self.nodes, self.leases, self.namespaces]
        tasks = [asyncio.create_task(inf.run()) for inf in informers]
        try:
            await asyncio.gather(*(inf.wait_for_sync() for inf in informers))
            log.info("caches synced; running %s",
                     ", ".join(c.name for c in self.controllers))
            tasks += [asyncio.create_task(c.run(self.workers)) for c in self.controllers]
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def serve_health(args, is_leader) -> web.AppRunner | None:
    if not args.port:
        return None

    async def healthz(_):
        return web.Response(text="ok")

    async def metrics(_):
        return web.Response(text="# TYPE leader_election_master_status gauge\n"
                            f"leader_election_master_status {int(is_leader())}\n",
                            content_type="text/plain")
    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, args.bind_address, args.port).start()
    return runner


async def run(args) -> int:
    identity = args.identity or f"{socket.gethostname()}_{uuid.uuid4()}"
    async with KubeClient.from_kubeconfig(args.kubeconfig,
                                          user_agent="labctl-controller-manager") as api:
        manager = Manager(api, args.controllers.split(","), args.concurrent_syncs, {
            "grace_period": args.node_monitor_grace_period,
            "monitor_period": args.node_monitor_period,
            "default_toleration_seconds": args.default_toleration_seconds}, args.cidr_plan)
        return await run_leader_elected(api, args, identity, manager.run,
                                        lambda is_leader: serve_health(args, is_leader), log)

def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(stream=sys.stdout, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        return asyncio.run(run(args))
    except KubeconfigError as exc:
        print(f"controller-manager: {exc}", file=sys.stderr)
        return 2
