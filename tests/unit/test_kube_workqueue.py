"""The work queue's rules, on the pure core with a fake clock, then the asyncio front end."""

import asyncio

import pytest

from agents.kube.workqueue import ExponentialBackoff, QueueCore, WorkQueue

pytestmark = pytest.mark.unit


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def q(clock):
    return QueueCore(clock)


def drain(q):
    keys = []
    while (key := q.get()) is not None:
        keys.append(key)
    return keys


def test_keys_come_out_in_order_added(q):
    for key in ("a", "b", "c"):
        q.add(key)
    assert drain(q) == ["a", "b", "c"]


def test_a_key_added_many_times_while_queued_is_handed_out_once(q):
    for _ in range(5):
        q.add("a")
    q.add("b")
    q.add("a")
    assert len(q) == 2
    assert drain(q) == ["a", "b"]


def test_a_key_being_processed_is_not_handed_to_a_second_worker(q):
    q.add("a")
    assert q.get() == "a"
    q.add("a")                 # changed again while worker 1 holds it
    assert q.get() is None     # worker 2 must not get it
    assert q.is_processing("a")
    q.done("a")                # worker 1 finishes: the re-add now surfaces
    assert q.get() == "a"
    q.done("a")
    assert q.get() is None


def test_done_without_readd_does_not_requeue(q):
    q.add("a")
    key = q.get()
    q.done(key)
    assert q.get() is None and len(q) == 0


def test_rate_limited_adds_back_off_exponentially_per_key(clock):
    q = QueueCore(clock, ExponentialBackoff(base=1.0, cap=100.0))
    delays = []
    for _ in range(4):
        q.add_rate_limited("a")
        start = clock.now
        while q.get() is None:
            clock.now += 0.5
        delays.append(clock.now - start)
        q.done("a")
    assert delays == [1.0, 2.0, 4.0, 8.0]
    assert q.num_requeues("a") == 4
    assert q.num_requeues("b") == 0


def test_back_off_is_capped():
    backoff = ExponentialBackoff(base=0.005, cap=1000.0)
    delays = [backoff.when("k") for _ in range(80)]
    assert delays[0] == 0.005 and delays[1] == 0.01
    assert max(delays) == 1000.0 and delays[-1] == 1000.0


def test_forget_resets_the_back_off(clock):
    q = QueueCore(clock, ExponentialBackoff(base=1.0))
    q.add_rate_limited("a")
    q.add_rate_limited("a")
    q.forget("a")
    assert q.num_requeues("a") == 0
    q.add_rate_limited("a")
    assert q.next_due_in() == 1.0


def test_delayed_add_appears_only_when_due(q, clock):
    q.add_after("a", 10)
    assert q.get() is None
    assert q.next_due_in() == 10
    clock.now += 9.9
    assert q.get() is None
    clock.now += 0.1
    assert q.get() == "a"


def test_earliest_of_several_delays_for_a_key_wins_and_it_is_added_once(q, clock):
    q.add_after("a", 10)
    q.add_after("a", 3)
    q.add_after("a", 20)
    clock.now += 3
    assert drain(q) == ["a"]
    clock.now += 30
    assert drain(q) == []


def test_delayed_add_of_a_queued_key_is_deduplicated(q, clock):
    q.add("a")
    q.add_after("a", 1)
    clock.now += 1
    assert drain(q) == ["a"]


def test_zero_delay_adds_now(q):
    q.add_after("a", 0)
    assert q.get() == "a"


def test_shutdown_drains_then_reports_none_and_ignores_adds(q):
    q.add("a")
    q.add_after("b", 1)
    q.shutdown()
    q.add("c")
    assert not q.drained
    assert q.get() == "a"
    assert q.get() is None
    assert q.drained


def test_async_queue_wakes_a_waiting_worker_on_add():
    async def main():
        wq = WorkQueue()
        waiter = asyncio.create_task(wq.get())
        await asyncio.sleep(0)
        assert not waiter.done()
        wq.add("x")
        return await asyncio.wait_for(waiter, 1)
    assert asyncio.run(main()) == "x"


def test_async_queue_delivers_delayed_key_and_shutdown_releases_workers():
    async def main():
        wq = WorkQueue()
        wq.add_after("later", 0.02)
        got = await asyncio.wait_for(wq.get(), 1)
        wq.done(got)
        workers = [asyncio.create_task(wq.get()) for _ in range(3)]
        await asyncio.sleep(0)
        wq.shutdown()
        return got, await asyncio.wait_for(asyncio.gather(*workers), 1)
    got, ends = asyncio.run(main())
    assert got == "later"
    assert ends == [None, None, None]


def test_async_queue_never_gives_one_key_to_two_workers_at_once():
    async def main():
        wq = WorkQueue()
        active, overlaps, processed = set(), [], []

        async def worker():
            while (key := await wq.get()) is not None:
                if key in active:
                    overlaps.append(key)
                active.add(key)
                await asyncio.sleep(0)          # let others run while we hold the key
                if len(processed) < 40:
                    wq.add(key)                 # the object changed meanwhile
                processed.append(key)
                active.discard(key)
                wq.done(key)

        tasks = [asyncio.create_task(worker()) for _ in range(4)]
        for i in range(10):
            wq.add(f"k{i % 3}")
        deadline = asyncio.get_running_loop().time() + 2
        while (len(processed) < 40 or len(wq) or any(wq.core.is_processing(f"k{i}")
                                                     for i in range(3))):
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.001)
        wq.shutdown()
        await asyncio.gather(*tasks)
        return overlaps, processed
    overlaps, processed = asyncio.run(main())
    assert overlaps == []
    assert len(processed) >= 40
