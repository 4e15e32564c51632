"""Leader election through a coordination.k8s.io/v1 Lease, as client-go does it.

Rules (the pure `decide` below):
1. No Lease yet → create it naming ourselves (leaseTransitions 0).
2. We hold it → renew: new renewTime, same acquireTime and transitions.
3. Someone else holds it and its record has not changed for leaseDurationSeconds of *our*
   clock (we time from when we first observed that record, never from the renewTime it
   carries: clocks of different hosts disagree) → take it over: acquireTime = renewTime =
   now, leaseTransitions + 1.
4. The holder is empty (released) → take it over likewise.
5. Otherwise wait and look again after retryPeriod.
Every write carries the resourceVersion we read, so of two candidates racing only one
wins (the other gets 409 Conflict / AlreadyExists and waits). A leader that cannot renew
within renewDeadline stops leading; on shutdown it releases the Lease (holder "",
leaseDurationSeconds 1) so a follower takes over at once instead of after a lease period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from .errors import AlreadyExists, ApiError, Conflict, NotFound

log = logging.getLogger(__name__)

MICROTIME = "%Y-%m-%dT%H:%M:%S.%fZ"


def format_microtime(t: datetime) -> str:
    return t.astimezone(UTC).strftime(MICROTIME)


def parse_microtime(text: str | None) -> datetime | None:
    if not text:
        return None
    for fmt in (MICROTIME, "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise ValueError(f"not a Kubernetes timestamp: {text!r}")


@dataclass(frozen=True)
class LeaseRecord:
    holder: str
    lease_duration_seconds: int
    acquire_time: str | None
    renew_time: str | None
    transitions: int

    @classmethod
    def from_lease(cls, lease: dict | None) -> LeaseRecord | None:
        if lease is None:
            return None
        spec = lease.get("spec") or {}
        return cls(spec.get("holderIdentity") or "", int(spec.get("leaseDurationSeconds") or 0),
                   spec.get("acquireTime"), spec.get("renewTime"),
                   int(spec.get("leaseTransitions") or 0))

    def spec(self) -> dict:
        return {"holderIdentity": self.holder,
                "leaseDurationSeconds": self.lease_duration_seconds,
                "acquireTime": self.acquire_time, "renewTime": self.renew_time,
                "leaseTransitions": self.transitions}


@dataclass(frozen=True)
class Observation:
    """The last record we saw and when (on our monotonic clock) it last changed."""
    record: LeaseRecord | None
    at: float


def observe(previous: Observation | None, record: LeaseRecord | None,
            now: float) -> Observation:
    if previous is not None and previous.record == record:
        return previous
    return Observation(record, now)


@dataclass(frozen=True)
class Decision:
    action: str                      # "create" | "renew" | "take" | "wait"
    record: LeaseRecord | None       # what to write (None for "wait")
    reason: str = ""


def decide(observation: Observation, identity: str, now: float, wall_now: datetime,
           lease_duration: int) -> Decision:
    """Pure: what this candidate should do given the Lease it just read."""
    stamp = format_microtime(wall_now)
    record = observation.record
    if record is None:
        return Decision("create", LeaseRecord(identity, lease_duration, stamp, stamp, 0),
                        "no lease yet")
    if record.holder == identity:
        return Decision("renew", replace(record, renew_time=stamp,
                                         lease_duration_seconds=lease_duration), "we hold it")
    if not record.holder:
        return Decision("take", LeaseRecord(identity, lease_duration, stamp, stamp,
                                            record.transitions + 1), "lease released")
    if observation.at + record.lease_duration_seconds <= now:
        return Decision("take", LeaseRecord(identity, lease_duration, stamp, stamp,
                                            record.transitions + 1),
                        f"{record.holder} stopped renewing")
    return Decision("wait", None, f"held by {record.holder}")


def released(record: LeaseRecord, wall_now: datetime) -> LeaseRecord:
    stamp = format_microtime(wall_now)
    return replace(record, holder="", lease_duration_seconds=1, acquire_time=stamp,
                   renew_time=stamp)


def _wall_now() -> datetime:
    return datetime.now(UTC)


class LeaderElector:
    """Campaign for a Lease; while leading, run `on_started_leading()` (a coroutine that
    is cancelled when leadership is lost); call `on_stopped_leading()` after."""

    def __init__(self, api, namespace: str, name: str, identity: str, *,
                 on_started_leading: Callable[[], Awaitable[None]],
                 on_stopped_leading: Callable[[], None] | None = None,
                 on_new_leader: Callable[[str], None] | None = None,
                 lease_duration: int = 15, renew_deadline: float = 10.0,
                 retry_period: float = 2.0, release_on_cancel: bool = True,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], datetime] = _wall_now):
        if not lease_duration > renew_deadline > retry_period > 0:
            raise ValueError("need lease_duration > renew_deadline > retry_period > 0 "
                             f"(got {lease_duration}, {renew_deadline}, {retry_period})")
        self.api, self.namespace, self.name, self.identity = api, namespace, name, identity
        self.on_started_leading, self.on_stopped_leading = on_started_leading, \
            on_stopped_leading
        self.on_new_leader = on_new_leader
        self.lease_duration, self.renew_deadline, self.retry_period = \
            lease_duration, renew_deadline, retry_period
        self.release_on_cancel = release_on_cancel
        self.clock, self.wall_clock = clock, wall_clock
        self.observation: Observation | None = None
        self._lease: dict | None = None
        self.is_leader = False
        self.leader: str = ""

    async def try_acquire_or_renew(self) -> bool:
        try:
            lease = await self.api.get("leases", self.name, self.namespace)
        except NotFound:
            lease = None
        record = LeaseRecord.from_lease(lease)
        self.observation = observe(self.observation, record, self.clock())
        self._note_leader(record.holder if record else "")
        decision = decide(self.observation, self.identity, self.clock(), self.wall_clock(),
                          self.lease_duration)
        if decision.action == "wait":
            return False
        try:
            if decision.action == "create":
                written = await self.api.create("leases", {
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": decision.record.spec()}, self.namespace)
            else:
                written = await self.api.update("leases", {
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {**lease["metadata"]},  # carries our resourceVersion
                    "spec": decision.record.spec()})
        except (Conflict, AlreadyExists):
            return False  # another candidate wrote first; look again next period
        self._lease = written
        self.observation = Observation(decision.record, self.clock())
        if decision.action != "renew":
            log.info("%s became leader of lease %s/%s (%s)", self.identity, self.namespace,
                     self.name, decision.reason)
        self._note_leader(self.identity)
        return True

    def _note_leader(self, holder: str) -> None:
        if holder and holder != self.leader:
            self.leader = holder
            if self.on_new_leader:
                self.on_new_leader(holder)

    async def release(self) -> bool:
        """Give the lease up if we hold it (best effort)."""
        if self._lease is None or self.observation is None or \
                self.observation.record is None or \
                self.observation.record.holder != self.identity:
            return False
        record = released(self.observation.record, self.wall_clock())
        try:
            await self.api.update("leases", {**self._lease, "spec": record.spec()})
        except ApiError as exc:
            log.warning("could not release lease %s/%s: %s", self.namespace, self.name, exc)
            return False
        self.observation = Observation(record, self.clock())
        return True

    def _jittered(self) -> float:
        return self.retry_period * (1 + random.random() * 0.2)

    async def _attempt(self, timeout: float) -> bool:
        try:
            return await asyncio.wait_for(self.try_acquire_or_renew(), max(timeout, 0.01))
        except (TimeoutError, ApiError, OSError) as exc:
            log.warning("lease %s/%s: %s", self.namespace, self.name, exc or "timeout")
            return False
        except Exception as exc:  # noqa: BLE001 - transport errors (aiohttp) are retried
            log.warning("lease %s/%s: %s", self.namespace, self.name, exc)
            return False

    async def _acquire(self) -> None:
        while not await self._attempt(self.renew_deadline):
            await asyncio.sleep(self._jittered())

    async def _renew_until_lost(self, work: asyncio.Task) -> bool:
        """Renew every retry period; True if the lease was lost, False if the work ended."""
        last_renew = self.clock()
        while True:
            done, _ = await asyncio.wait({work}, timeout=self.retry_period)
            if done:
                return False
            remaining = last_renew + self.renew_deadline - self.clock()
            if await self._attempt(remaining):
                last_renew = self.clock()
            elif self.clock() - last_renew >= self.renew_deadline:
                log.warning("%s lost lease %s/%s: no renewal within %.1fs", self.identity,
                            self.namespace, self.name, self.renew_deadline)
                return True

    async def run(self) -> None:
        """Campaign, lead until the lease is lost or the work ends, then return.
        Cancelling run() stops the work and releases the lease."""
        await self._acquire()
        self.is_leader = True
        work = asyncio.create_task(self.on_started_leading(), name=f"leading-{self.name}")
        lost = False
        try:
            lost = await self._renew_until_lost(work)
        finally:
            self.is_leader = False
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await work
            if self.release_on_cancel and not lost:
                await asyncio.shield(self.release())
            if self.on_stopped_leading:
                self.on_stopped_leading()
        if work.done() and not work.cancelled() and work.exception() is not None:
            raise work.exception()


async def run_leader_elected(api, args, identity: str, work: Callable[[], Awaitable[None]],
                             start_health: Callable[[Callable[[], bool]], Awaitable[object]],
                             log: logging.Logger) -> int:
    """Run a component like its Kubernetes counterpart: ``work`` directly, or, with
    ``args.leader_elect``, only while holding the Lease named by the
    ``args.leader_elect_*`` options. ``start_health(is_leader)`` serves /healthz and
    returns an aiohttp runner (or None). SIGTERM/SIGINT stop it (exit 0); losing the
    Lease ends it with 1 so that a fresh process campaigns again."""
    elector = None
    if args.leader_elect:
        elector = LeaderElector(
            api, args.leader_elect_resource_namespace, args.leader_elect_resource_name,
            identity, on_started_leading=work,
            on_new_leader=lambda who: log.info("leader is now %s", who),
            lease_duration=args.leader_elect_lease_duration,
            renew_deadline=args.leader_elect_renew_deadline,
            retry_period=args.leader_elect_retry_period)
    runner = await start_health(lambda: elector is None or elector.is_leader)
    main_task = asyncio.create_task(elector.run() if elector else work())
    stopping = False

    def stop() -> None:
        nonlocal stopping
        stopping = True
        main_task.cancel()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    try:
        await main_task
    except asyncio.CancelledError:
        pass
    finally:
        if runner:
            await runner.cleanup()
    if elector is not None and not stopping:
        log.error("lost the lease %s/%s; exiting so that a fresh process campaigns again",
                  args.leader_elect_resource_namespace, args.leader_elect_resource_name)
        return 1
    return 0
