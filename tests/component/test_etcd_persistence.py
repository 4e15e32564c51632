"""Persistence of our member: kill -9 loses no acknowledged write, snapshots and WAL
rewrites survive restarts, a lagging member is caught up by snapshot, a torn WAL tail is
repaired and a corrupt WAL middle refuses to start."""

from __future__ import annotations

import os
import threading
import time

import grpc
import pytest

from agents.etcd.localcluster import LocalCluster
from agents.etcdapi import rpc_pb2, rpc_pb2_grpc
from tests.conftest import need_tool

pytestmark = [pytest.mark.component, pytest.mark.timeout(120)]


def _wait(cond, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got = cond()
        except grpc.RpcError:
            got = None
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _put_until_killed(endpoint: str, acked: list[bytes], stop: threading.Event) -> None:
    with grpc.insecure_channel(endpoint) as ch:
        kv = rpc_pb2_grpc.KVStub(ch)
        i = 0
        while not stop.is_set():
            key = b"/p/%06d" % i
            try:
                kv.Put(rpc_pb2.PutRequest(key=key, value=b"v" * 100), timeout=2)
            except grpc.RpcError:
                return
            acked.append(key)
            i += 1


def _count(endpoint: str, prefix: bytes = b"/p/") -> int:
    with grpc.insecure_channel(endpoint) as ch:
        r = rpc_pb2_grpc.KVStub(ch).Range(
            rpc_pb2.RangeRequest(key=prefix, range_end=prefix[:-1] + b"0", count_only=True, serializable=True),
            timeout=5,
        )
    return r.count


@pytest.fixture
def single():
    need_tool("etcdctl")
    c = LocalCluster(1, impl="ours", extra_flags=["--snapshot-count", "200"])
    try:
        yield c
    finally:
        c.stop()


def test_kill_9_keeps_every_acknowledged_write_across_snapshots(single: LocalCluster) -> None:
    c = single
    m = c.members[0]
    total: set[bytes] = set()
    for _ in range(2):
        c.start_member(m)
        c.wait_ready()
        acked: list[bytes] = []
        stop = threading.Event()
        writers = [threading.Thread(target=_put_until_killed, args=(m.endpoint, acked, stop)) for _ in range(3)]
        for w in writers:
            w.start()
        _wait(lambda acked=acked: len(acked) > 300, 30, "writes")  # past a snapshot (every 200)
        c.kill(m)
        stop.set()
        for w in writers:
            w.join(10)
        total |= set(acked)
    snaps = os.listdir(os.path.join(m.data_dir, "member", "snap"))
    assert any(s.endswith(".snap") for s in snaps)
    c.start_member(m)
    c.wait_ready()
    res = c.etcdctl("get", "/p/", "--prefix", "--keys-only")
    have = {line.encode() for line in res.stdout.split("\n") if line}
    missing = sorted(total - have)
    assert not missing, f"{len(missing)} acknowledged writes lost after kill -9, e.g. {missing[:3]}"


def _log(m) -> str:
    with open(m.log_path) as f:
        return f.read()


def _wal_segment(m) -> str:
    d = os.path.join(m.data_dir, "member", "wal")
    return os.path.join(d, sorted(os.listdir(d))[-1])


def test_torn_tail_is_repaired_and_corrupt_middle_refuses_to_start(single: LocalCluster) -> None:
    c = single
    m = c.members[0]
    c.start_member(m)
    c.wait_ready()
    for i in range(20):
        c.etcdctl("put", f"/t/{i}", "v")
    c.kill(m)
    seg = _wal_segment(m)
    with open(seg, "ab") as f:
        f.write(b"\x40\x00\x00\x00\x12\x34")  # a record header whose body never made it
    c.start_member(m)
    c.wait_ready()
    assert c.etcdctl("get", "/t/19").stdout == "/t/19\nv\n"
    assert "torn tail" in _log(m)
    c.kill(m)
    size = os.path.getsize(seg)
    with open(seg, "r+b") as f:
        f.seek(size // 2)
        f.write(b"\xde\xad\xbe\xef")
    c.start_member(m)
    code = m.proc.wait(20)
    assert code != 0
    out = _log(m)
    assert "is corrupt at byte" in out and "refusing to start" in out


def test_lagging_member_is_caught_up_by_snapshot() -> None:
    need_tool("etcdctl")
    with LocalCluster(3, impl="ours", extra_flags=["--snapshot-count", "50"]) as c:
        c.start()
        leader = c.wait_ready()
        lagging = next(m for m in c.members if m is not leader)
        c.kill(lagging)
        with grpc.insecure_channel(leader.endpoint) as ch:
            kv = rpc_pb2_grpc.KVStub(ch)
            for i in range(150):
                kv.Put(rpc_pb2.PutRequest(key=b"/lag/%03d" % i, value=b"v"), timeout=5)
        c.start_member(lagging)
        _wait(lambda: _count(lagging.endpoint, b"/lag/") == 150, 30, "the lagging member to catch up")
        assert "applied snapshot from leader" in _log(lagging)
