"""Put load against etcd v3 endpoints: puts/s and latency percentiles.

Each client is its own gRPC channel doing sequential puts (8-byte keys, 256-byte values
by default), so 64 clients means 64 connections with one request in flight each. With
several endpoints the clients are spread over them round-robin.
"""

from __future__ import annotations

import asyncio
import os
import time

import grpc

from agents.etcdapi import rpc_pb2, rpc_pb2_grpc


async def _client(endpoint: str, n: int, stop_at: float, lat: list[float], value: bytes) -> None:
    async with grpc.aio.insecure_channel(endpoint) as ch:
        kv = rpc_pb2_grpc.KVStub(ch)
        await kv.Range(rpc_pb2.RangeRequest(key=b"warm", serializable=True))
        i = 0
        while time.monotonic() < stop_at:
            key = b"%02x%06d" % (n % 256, i % 1000000)
            t0 = time.perf_counter()
            await kv.Put(rpc_pb2.PutRequest(key=key, value=value))
            lat.append(time.perf_counter() - t0)
            i += 1


async def run_load(endpoints: list[str], clients: int, seconds: float, value_size: int = 256) -> dict:
    lat: list[float] = []
    value = os.urandom(value_size // 2 + 1).hex().encode()[:value_size]
    t0 = time.monotonic()
    stop_at = t0 + seconds
    await asyncio.gather(
        *(_client(endpoints[n % len(endpoints)], n, stop_at, lat, value) for n in range(clients))
    )
    elapsed = time.monotonic() - t0
    lat.sort()
    n = len(lat)
    return {
        "clients": clients,
        "puts": n,
        "puts_per_s": round(n / elapsed, 1),
        "p50_ms": round(lat[n // 2] * 1000, 2) if n else None,
        "p99_ms": round(lat[min(n - 1, int(n * 0.99))] * 1000, 2) if n else None,
    }


def put_load(endpoint: str, clients: int, seconds: float = 5.0) -> dict:
    return asyncio.run(run_load([endpoint], clients, seconds))
