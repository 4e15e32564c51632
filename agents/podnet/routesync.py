"""The route-sync controller: a Node informer feeds a work queue with one key (the
routes are a function of the whole Node list, so there is nothing finer to track);
`sync` computes the desired routes from the informer's cache, reads the table and
applies the difference. It also re-syncs periodically, so a route someone deleted by
hand (or a networkd restart flushed) comes back."""

from __future__ import annotations

import asyncio
import logging
import time

from agents.kube.controller import Controller
from agents.kube.informer import Informer

from .errors import PodNetError
from .routes import desired_routes, plan
from .routetable import RouteTable

log = logging.getLogger(__name__)

KEY = "routes"


class RouteSync:
    def __init__(self, api, node_name: str, table: RouteTable, resync_period: float = 30.0):
        self.node_name, self.table, self.resync_period = node_name, table, resync_period
        self.nodes = Informer(api, "nodes")
        self.controller = Controller("podnet-routes", self.sync, [self.nodes], workers=1)
        self.controller.watch(self.nodes, key_func=lambda _obj: KEY)
        self.metrics = {"syncs": 0, "sync_errors": 0, "routes_replaced": 0,
                        "routes_deleted": 0, "routes_desired": 0, "routes_installed": 0,
                        "routes_blocked": 0, "last_sync": 0.0}

    def synced(self) -> bool:
        return self.nodes.has_synced()

    async def sync(self, key: str) -> None:
        desired = desired_routes(self.nodes.store.list(), self.node_name)
        state = await asyncio.to_thread(self.table.read)
        changes = plan(desired, state.owned, state.foreign)
        for route in changes.blocked:
            log.warning("not routing %s via %s: another route already holds %s",
                        route.dst, route.gateway, route.dst)
        for route in changes.replace:
            log.info("route %s via %s", route.dst, route.gateway)
        for dst in changes.delete:
            log.info("delete route %s", dst)
        errors = await asyncio.to_thread(self.table.apply, changes) if not changes.empty \
            else []
        m = self.metrics
        m["syncs"] += 1
        m["routes_replaced"] += len(changes.replace)
        m["routes_deleted"] += len(changes.delete)
        m["routes_desired"], m["routes_blocked"] = len(desired), len(changes.blocked)
        m["routes_installed"] = len(state.owned) + sum(
            r.dst not in state.owned for r in changes.replace) - len(changes.delete)
        if errors:
            m["sync_errors"] += 1
            raise PodNetError("; ".join(errors))  # the queue retries with back-off
        m["last_sync"] = time.time()
        self.controller.queue.add_after(KEY, self.resync_period)

    async def run(self) -> None:
        await self.controller.run()


def metrics_text(sync: RouteSync) -> str:
    m = sync.metrics
    rows = [
        ("podnet_route_syncs_total", "counter", m["syncs"]),
        ("podnet_route_sync_errors_total", "counter", m["sync_errors"]),
        ("podnet_routes_replaced_total", "counter", m["routes_replaced"]),
        ("podnet_routes_deleted_total", "counter", m["routes_deleted"]),
        ("podnet_routes_desired", "gauge", m["routes_desired"]),
        ("podnet_routes_installed", "gauge", m["routes_installed"]),
        ("podnet_routes_blocked", "gauge", m["routes_blocked"]),
        ("podnet_last_sync_timestamp_seconds", "gauge", m["last_sync"]),
        ("podnet_nodes", "gauge", len(sync.nodes.store)),
    ]
    lines = []
    for name, kind, value in rows:
        lines += [f"# TYPE {name} {kind}", f"{name} {value}"]
    return "\n".join(lines) + "\n"
