"""The sync loop: informers on Services and Endpoints; any change marks the rules dirty;
one sync at a time computes the model from the caches and applies only the difference
to what was applied last.

A failed apply forgets what was applied, so the next attempt (after a back-off) rebuilds
from the host's actual state; every `sync_period` a full rebuild repairs rules someone
else changed. Counters for /metrics: sync durations and the delay from a change seen by
the informers to rules programmed for it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from agents.kube.informer import Informer

from .model import NodeInfo, ProxyModel, compute_model

log = logging.getLogger(__name__)


@dataclass
class SyncMetrics:
    syncs: int = 0
    errors: int = 0
    last_duration: float = 0.0
    duration_sum: float = 0.0
    # from the first change not yet programmed to the rules programmed for it
    change_to_rules_sum: float = 0.0
    change_to_rules_count: int = 0
    change_to_rules_max: float = 0.0
    last_success: float = 0.0   # monotonic
    last_success_wall: float = 0.0
    service_ports: int = 0
    last_error: str = ""
    buckets: dict[float, int] = field(default_factory=lambda: dict.fromkeys(
        (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0), 0))

    def observe(self, duration: float, change_delay: float | None) -> None:
        self.syncs += 1
        self.last_duration = duration
        self.duration_sum += duration
        for bound in self.buckets:
            if duration <= bound:
                self.buckets[bound] += 1
        if change_delay is not None:
            self.change_to_rules_sum += change_delay
            self.change_to_rules_count += 1
            self.change_to_rules_max = max(self.change_to_rules_max, change_delay)


class Proxier:
    def __init__(self, api, node: NodeInfo, backend, *, sync_period: float = 30.0,
                 retry_delay: float = 1.0):
        self.node, self.backend = node, backend
        self.sync_period, self.retry_delay = sync_period, retry_delay
        self.services = Informer(api, "services")
        self.endpoints = Informer(api, "endpoints")
        self.metrics = SyncMetrics()
        self._dirty = asyncio.Event()
        self._changed_at: float | None = None
        self._applied_state = None
        self._applied_model: ProxyModel | None = None
        for informer in (self.services, self.endpoints):
            informer.add_handler(on_add=self._on_change,
                                 on_update=lambda _old, _new: self._on_change(),
                                 on_delete=self._on_change)

    def _on_change(self, *_args) -> None:
        if self._changed_at is None:
            self._changed_at = time.monotonic()
        self._dirty.set()

    def healthy(self, now: float | None = None) -> bool:
        """Rules programmed, and recently enough (a stuck loop turns unhealthy)."""
        now = time.monotonic() if now is None else now
        return self.metrics.syncs > 0 and \
            now - self.metrics.last_success < max(2 * self.sync_period, 60.0)

    async def sync_once(self, force_full: bool = False) -> bool:
        """Program the current caches. True if rules were written."""
        changed_at, self._changed_at = self._changed_at, None
        started = time.monotonic()
        model = compute_model(self.services.store.list(), self.endpoints.store.list(),
                              self.node)
        for problem in model.problems:
            log.warning("%s", problem)
        if force_full:
            self._applied_state = await self.backend.existing_state()
            self._applied_model = None
        wrote = False
        if model != self._applied_model or force_full:
            new_state = self.backend.desired_state(model)
            text = self.backend.render_changes(self._applied_state, new_state)
            if text:
                try:
                    await self.backend.apply(text)
                except Exception:
                    # Unknown what is on the host now: rebuild from it next time.
                    self._applied_state, self._applied_model = None, None
                    if changed_at is not None:
                        self._changed_at = changed_at
                    raise
                wrote = True
            self._applied_state, self._applied_model = new_state, model
        done = time.monotonic()
        self.metrics.observe(done - started,
                             done - changed_at if changed_at is not None else None)
        self.metrics.last_success, self.metrics.last_success_wall = done, time.time()
        self.metrics.service_ports = len(model.service_ports)
        if wrote:
            log.info("programmed %d service ports in %.1f ms (%s)", len(model.service_ports),
                     (done - started) * 1000, self.backend.name)
        return wrote

    async def run(self) -> None:
        tasks = [asyncio.create_task(inf.run(), name=f"kube-proxy-informer-{inf.resource}")
                 for inf in (self.services, self.endpoints)]
        try:
            await asyncio.gather(self.services.wait_for_sync(),
                                 self.endpoints.wait_for_sync())
            log.info("caches synced; programming %s rules", self.backend.name)
            await self._loop()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _loop(self) -> None:
        full, last_full = True, 0.0
        while True:
            self._dirty.clear()
            try:
                await self.sync_once(force_full=full)
                if full:
                    last_full = time.monotonic()
                full = False
                self.metrics.last_error = ""
            except Exception as exc:  # noqa: BLE001 - keep proxying; retry
                self.metrics.errors += 1
                self.metrics.last_error = str(exc)
                log.error("sync failed: %s; retrying in %.1fs", exc, self.retry_delay)
                full = True
                await asyncio.sleep(self.retry_delay)
                continue
            until_full = self.sync_period - (time.monotonic() - last_full)
            try:
                await asyncio.wait_for(self._dirty.wait(), max(until_full, 0.0))
            except TimeoutError:
                full = True


def metrics_text(proxier: Proxier) -> str:
    m = proxier.metrics
    lines = ["# TYPE labproxy_sync_proxy_rules_duration_seconds histogram"]
    for bound, count in m.buckets.items():  # observe() counts cumulatively
        lines.append(f'labproxy_sync_proxy_rules_duration_seconds_bucket{{le="{bound}"}} '
                     f"{count}")
    lines += [
        f'labproxy_sync_proxy_rules_duration_seconds_bucket{{le="+Inf"}} {m.syncs}',
        f"labproxy_sync_proxy_rules_duration_seconds_sum {m.duration_sum:.6f}",
        f"labproxy_sync_proxy_rules_duration_seconds_count {m.syncs}",
        "# TYPE labproxy_sync_proxy_rules_last_duration_seconds gauge",
        f"labproxy_sync_proxy_rules_last_duration_seconds {m.last_duration:.6f}",
        "# TYPE labproxy_change_to_rules_seconds summary",
        f"labproxy_change_to_rules_seconds_sum {m.change_to_rules_sum:.6f}",
        f"labproxy_change_to_rules_seconds_count {m.change_to_rules_count}",
        "# TYPE labproxy_change_to_rules_max_seconds gauge",
        f"labproxy_change_to_rules_max_seconds {m.change_to_rules_max:.6f}",
        "# TYPE labproxy_sync_proxy_rules_last_timestamp_seconds gauge",
        f"labproxy_sync_proxy_rules_last_timestamp_seconds {m.last_success_wall:.3f}",
        "# TYPE labproxy_sync_errors_total counter",
        f"labproxy_sync_errors_total {m.errors}",
        "# TYPE labproxy_service_ports gauge",
        f"labproxy_service_ports {m.service_ports}",
    ]
    return "\n".join(lines) + "\n"
