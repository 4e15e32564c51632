"""Concurrent puts on 3 members: proposals are batched, and every acknowledged put is there.

Clients write through every member (followers forward to the leader), like
`etcdctl check perf` does; the leader's own counters show the batching.
"""

from __future__ import annotations

import asyncio
import urllib.request

import grpc
import pytest

from agents.etcd.localcluster import LocalCluster
from agents.etcdapi import rpc_pb2, rpc_pb2_grpc
from tests.conftest import need_tool

pytestmark = [pytest.mark.component, pytest.mark.timeout(120)]

CLIENTS = 24
PUTS_EACH = 15


@pytest.fixture
def cluster():
    need_tool("etcdctl")
    c = LocalCluster(3, impl="ours")
    try:
        c.start()
        yield c
    finally:
        c.stop()


def counter(metrics_url: str, name: str) -> float:
    with urllib.request.urlopen(metrics_url + "/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"{name} not in {metrics_url}/metrics")


async def _write_all(endpoints: list[str]) -> list[tuple[bytes, bytes]]:
    async def client(n: int) -> list[tuple[bytes, bytes]]:
        done = []
        async with grpc.aio.insecure_channel(endpoints[n % len(endpoints)]) as ch:
            kv = rpc_pb2_grpc.KVStub(ch)
            for i in range(PUTS_EACH):
                key, value = b"batch/%02d/%02d" % (n, i), b"v%d" % i
                await kv.Put(rpc_pb2.PutRequest(key=key, value=value), timeout=20)
                done.append((key, value))
        return done

    results = await asyncio.gather(*(client(n) for n in range(CLIENTS)))
    return [kv for r in results for kv in r]


def test_concurrent_puts_are_batched_and_all_acknowledged_puts_are_readable(cluster) -> None:
    leader = cluster.wait_ready()
    before = counter(leader.metrics_url, "labetcd_proposal_batches_total")
    acked = asyncio.run(_write_all([m.endpoint for m in cluster.members]))
    assert len(acked) == CLIENTS * PUTS_EACH
    # Proposals made on the leader went to Raft in fewer batches than there were puts
    # to it (a third of them; the rest were forwarded by the followers, also batched).
    batches = counter(leader.metrics_url, "labetcd_proposal_batches_total") - before
    on_leader = CLIENTS * PUTS_EACH / 3
    assert batches < 0.8 * on_leader, f"{batches} batches for {on_leader:.0f} puts: no batching"
    follower = next(m for m in cluster.members if m is not leader)
    with grpc.insecure_channel(follower.endpoint) as ch:
        resp = rpc_pb2_grpc.KVStub(ch).Range(
            rpc_pb2.RangeRequest(key=b"batch/", range_end=b"batch0"), timeout=10
        )
    assert sorted((kv.key, kv.value) for kv in resp.kvs) == sorted(acked)
