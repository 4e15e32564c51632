"""Leader election: the pure decision table, then candidates campaigning on a FakeApi
with an injected clock."""

import asyncio
from datetime import UTC, datetime

import pytest

from agents.kube.errors import ServerError
from agents.kube.leaderelection import (
    LeaderElector,
    LeaseRecord,
    Observation,
    decide,
    observe,
    parse_microtime,
    released,
)
from agents.kube.testing import FakeApi

pytestmark = pytest.mark.unit

WALL = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
STAMP = "2026-01-02T03:04:05.678901Z"
OLD = "2026-01-02T03:00:00.000000Z"


def rec(holder, transitions=0, duration=15):
    return LeaseRecord(holder, duration, OLD, OLD, transitions)


@pytest.mark.parametrize("case, record, seen_at, now, action, expected", [
    ("no lease: create", None, 0, 0, "create", LeaseRecord("me", 15, STAMP, STAMP, 0)),
    ("ours: renew keeps acquireTime and transitions", rec("me", 3), 0, 100, "renew",
     LeaseRecord("me", 15, OLD, STAMP, 3)),
    ("other, fresh: wait", rec("other", 1), 100, 110, "wait", None),
    ("other, just expired: take", rec("other", 1), 100, 115, "take",
     LeaseRecord("me", 15, STAMP, STAMP, 2)),
    ("other, its own duration counts", rec("other", 1, duration=60), 100, 150, "wait", None),
    ("released: take at once", LeaseRecord("", 1, OLD, OLD, 4), 100, 100, "take",
     LeaseRecord("me", 15, STAMP, STAMP, 5)),
])
def test_decision_table(case, record, seen_at, now, action, expected):
    decision = decide(Observation(record, seen_at), "me", now, WALL, 15)
    assert (decision.action, decision.record) == (action, expected), case


def test_expiry_is_timed_from_our_observation_not_the_holders_timestamps():
    # The holder's renewTime is hours old by its clock, but we only just saw the record:
    # a skewed clock on the holder must not make us steal a live lease.
    first = observe(None, rec("other"), now=1000)
    assert decide(first, "me", 1001, WALL, 15).action == "wait"
    same = observe(first, rec("other"), now=1010)
    assert same.at == 1000
    assert decide(same, "me", 1015, WALL, 15).action == "take"
    renewed = observe(same, LeaseRecord("other", 15, OLD, STAMP, 0), now=1014)
    assert renewed.at == 1014
    assert decide(renewed, "me", 1015, WALL, 15).action == "wait"


def test_release_empties_the_holder_and_shortens_the_lease():
    out = released(rec("me", 2), WALL)
    assert (out.holder, out.lease_duration_seconds, out.transitions, out.renew_time) == \
        ("", 1, 2, STAMP)


def test_microtime_round_trip():
    assert parse_microtime(STAMP) == WALL
    assert parse_microtime("2026-01-02T03:04:05Z") == WALL.replace(microsecond=0)
    with pytest.raises(ValueError, match="not a Kubernetes timestamp"):
        parse_microtime("yesterday")


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def elector(api, identity, clock, events, **kw):
    async def lead():
        events.append(("start", identity))
        await asyncio.Event().wait()   # work until cancelled

    return LeaderElector(api, "kube-system", "kube-scheduler", identity,
                         on_started_leading=lead,
                         on_stopped_leading=lambda: events.append(("stop", identity)),
                         lease_duration=kw.pop("lease_duration", 15),
                         renew_deadline=kw.pop("renew_deadline", 0.2),
                         retry_period=kw.pop("retry_period", 0.01), clock=clock, **kw)


async def until(predicate, timeout=2.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.002)


def lease_spec(api):
    return api.objects("leases", "kube-system")[0]["spec"]


def test_two_candidates_one_leader():
    async def main():
        api, clock, events = FakeApi(), Clock(), []
        a, b = elector(api, "a", clock, events), elector(api, "b", clock, events)
        won_a = await a.try_acquire_or_renew()
        won_b = await b.try_acquire_or_renew()
        renewed_a = await a.try_acquire_or_renew()
        return won_a, won_b, renewed_a, b.leader, api
    won_a, won_b, renewed_a, leader_seen_by_b, api = asyncio.run(main())
    assert (won_a, won_b, renewed_a, leader_seen_by_b) == (True, False, True, "a")
    spec = lease_spec(api)
    assert spec["holderIdentity"] == "a" and spec["leaseTransitions"] == 0
    assert spec["leaseDurationSeconds"] == 15
    assert parse_microtime(spec["renewTime"]) >= parse_microtime(spec["acquireTime"])
    assert [a.verb for a in api.actions] == ["create", "update"]


def test_a_write_based_on_a_stale_read_gets_conflict_and_does_not_win():
    async def main():
        api, clock, events = FakeApi(), Clock(), []
        a, b = elector(api, "a", clock, events), elector(api, "b", clock, events)
        await a.try_acquire_or_renew()
        await b.try_acquire_or_renew()          # b observes a's record at t=0
        clock.now = 20                          # a looks dead to b...
        real_get = api.get

        async def get_then_a_renews(*args, **kwargs):
            lease = await real_get(*args, **kwargs)
            api.get = real_get
            await a.try_acquire_or_renew()      # ...but a renews between b's read and write
            return lease
        api.get = get_then_a_renews
        won = await b.try_acquire_or_renew()
        return won, api
    won, api = asyncio.run(main())
    assert won is False
    assert lease_spec(api)["holderIdentity"] == "a"


def test_failover_when_the_leader_dies_without_releasing():
    async def main():
        api, clock, events = FakeApi(), Clock(), []
        a = elector(api, "a", clock, events, release_on_cancel=False)
        b = elector(api, "b", clock, events)
        run_a = asyncio.create_task(a.run())
        await until(lambda: ("start", "a") in events)
        run_b = asyncio.create_task(b.run())
        await until(lambda: b.leader == "a")
        run_a.cancel()                              # a crashes: no release
        await asyncio.gather(run_a, return_exceptions=True)
        await asyncio.sleep(0.05)
        assert ("start", "b") not in events         # lease still looks alive to b
        clock.now += 15                             # a lease period passes on b's clock
        await until(lambda: ("start", "b") in events)
        spec = lease_spec(api)
        run_b.cancel()
        await asyncio.gather(run_b, return_exceptions=True)
        return events, spec
    events, spec = asyncio.run(main())
    assert events == [("start", "a"), ("stop", "a"), ("start", "b"), ("stop", "b")]
    assert spec["holderIdentity"] == "b" and spec["leaseTransitions"] == 1


def test_a_graceful_stop_releases_so_the_follower_takes_over_at_once():
    async def main():
        api, clock, events = FakeApi(), Clock(), []
        a, b = elector(api, "a", clock, events), elector(api, "b", clock, events)
        run_a = asyncio.create_task(a.run())
        await until(lambda: a.is_leader)
        run_b = asyncio.create_task(b.run())
        await until(lambda: b.leader == "a")
        run_a.cancel()
        await asyncio.gather(run_a, return_exceptions=True)
        released_spec = lease_spec(api)
        await until(lambda: b.is_leader)            # no clock advance needed
        run_b.cancel()
        await asyncio.gather(run_b, return_exceptions=True)
        return released_spec, lease_spec(api)
    released_spec, final = asyncio.run(main())
    assert released_spec["holderIdentity"] == "" and released_spec["leaseDurationSeconds"] == 1
    assert final["holderIdentity"] == "" and final["leaseTransitions"] == 1


def test_a_leader_that_cannot_renew_within_the_deadline_stops_leading():
    async def main():
        api, clock, events = FakeApi(), Clock(), []
        a = elector(api, "a", clock, events, renew_deadline=0.1)
        run_a = asyncio.create_task(a.run())
        await until(lambda: a.is_leader)
        api.fail_next("get", "leases", ServerError(500, {"message": "etcd down"}), times=10**6)
        clock.now += 1                               # past the renew deadline
        await asyncio.wait_for(run_a, 2)             # run() returns: leadership lost
        return events, a
    events, a = asyncio.run(main())
    assert events == [("start", "a"), ("stop", "a")]
    assert not a.is_leader


def test_bad_timing_parameters_are_refused():
    with pytest.raises(ValueError, match="lease_duration > renew_deadline > retry_period"):
        LeaderElector(FakeApi(), "ns", "l", "me", on_started_leading=None,
                      lease_duration=5, renew_deadline=10, retry_period=2)
