"""Faults on a 3-member cluster: kill -9 the leader under load, partition a member,
and a linearizability check of a concurrent history recorded across a leader kill."""

from __future__ import annotations

import json
import random
import threading
import time
import urllib.request

import grpc
import pytest

from agents.etcd.localcluster import LocalCluster, Member
from agents.etcdapi import rpc_pb2, rpc_pb2_grpc
from labctl.chaos.linearizability import check
from tests.conftest import need_tool

pytestmark = [pytest.mark.component, pytest.mark.timeout(180)]


@pytest.fixture
def ours():
    need_tool("etcdctl")
    c = LocalCluster(3, impl="ours", extra_flags=["--experimental-fault-injection"])
    try:
        c.start()
        yield c
    finally:
        c.stop()


@pytest.fixture(params=["ours", "etcd"])
def any_cluster(request):
    need_tool("etcdctl")
    if request.param == "etcd":
        need_tool("etcd")
    c = LocalCluster(3, impl=request.param)
    try:
        c.start()
        yield c
    finally:
        c.stop()


class Clients:
    """One gRPC channel per member; calls fail over to the next member on error."""

    def __init__(self, members: list[Member]) -> None:
        self.channels = [grpc.insecure_channel(m.endpoint) for m in members]
        self.kv = [rpc_pb2_grpc.KVStub(ch) for ch in self.channels]

    def close(self) -> None:
        for ch in self.channels:
            ch.close()


def _load(cluster: LocalCluster, acked: list[bytes], stop: threading.Event, n: int) -> None:
    clients = Clients(cluster.members)
    i = 0
    target = n % 3
    try:
        while not stop.is_set():
            key = b"/load/%d/%06d" % (n, i)
            try:
                clients.kv[target].Put(rpc_pb2.PutRequest(key=key, value=b"x" * 64), timeout=2)
                acked.append(key)
                i += 1
            except grpc.RpcError:
                target = (target + 1) % 3
    finally:
        clients.close()


def _wait(cond, timeout: float, what: str, cluster: LocalCluster | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got = cond()
        except grpc.RpcError:
            got = None  # not serving yet
        if got:
            return got
        time.sleep(0.05)
    logs = cluster.log_tails(8) if cluster is not None else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{logs}")


def _keys(member: Member, prefix: bytes, serializable: bool = False) -> set[bytes]:
    with grpc.insecure_channel(member.endpoint) as ch:
        resp = rpc_pb2_grpc.KVStub(ch).Range(
            rpc_pb2.RangeRequest(key=prefix, range_end=prefix[:-1] + bytes([prefix[-1] + 1]),
                                 keys_only=True, serializable=serializable), timeout=5)
    return {kv.key for kv in resp.kvs}


def test_kill_leader_under_load_then_restart_catches_up(any_cluster: LocalCluster) -> None:
    c = any_cluster
    old = c.wait_ready()
    acked: list[bytes] = []
    stop = threading.Event()
    writers = [threading.Thread(target=_load, args=(c, acked, stop, n)) for n in range(4)]
    for w in writers:
        w.start()
    try:
        _wait(lambda: len(acked) > 50, 20, "writes before the kill")
        c.kill(old)
        killed_at = time.monotonic()
        survivors = [m for m in c.members if m is not old]
        before = len(acked)
        new = _wait(lambda: c.leader(survivors), 30, "a new leader", c)
        assert new is not old
        _wait(lambda: len(acked) > before + 50, 20, "writes after the kill")
        failover = time.monotonic() - killed_at
    finally:
        stop.set()
        for w in writers:
            w.join(10)
    have = _keys(new, b"/load/")
    lost = [k for k in acked if k not in have]
    assert not lost, f"{len(lost)} acknowledged writes lost, e.g. {lost[:3]}"
    assert failover < 10
    c.start_member(old)
    everything = set(acked)
    _wait(lambda: everything <= _keys(old, b"/load/", serializable=True), 30, "the restarted member to catch up")
    hashes = json.loads(c.etcdctl("endpoint", "hashkv", "-w", "json").stdout)
    assert len({h["HashKV"]["hash"] for h in hashes}) == 1


def _partition(m: Member, peers: str) -> None:
    urllib.request.urlopen(f"{m.metrics_url}/debug/partition?peers={peers}", timeout=5).read()


def test_partitioned_member_refuses_writes_and_majority_serves(ours: LocalCluster) -> None:
    c = ours
    leader = c.wait_ready()
    lonely = next(m for m in c.members if m is not leader)
    others = [m for m in c.members if m is not lonely]
    ids = ",".join(f"{c.member_id(m):x}" for m in others)
    c.etcdctl("put", "/part/k", "before")
    _partition(lonely, ids)
    try:
        with grpc.insecure_channel(lonely.endpoint) as ch:
            kv = rpc_pb2_grpc.KVStub(ch)

            def refused() -> bool:
                try:
                    kv.Put(rpc_pb2.PutRequest(key=b"/part/minority", value=b"x"), timeout=3)
                except grpc.RpcError as e:
                    return e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
                return False

            _wait(refused, 20, "the minority member to refuse writes")
            with pytest.raises(grpc.RpcError):
                kv.Range(rpc_pb2.RangeRequest(key=b"/part/k"), timeout=3)  # linearizable read
        majority = ",".join(m.endpoint for m in others)
        c.etcdctl("put", "/part/k", "during", endpoints=majority)
        assert c.etcdctl("get", "/part/k", endpoints=majority).stdout == "/part/k\nduring\n"
    finally:
        _partition(lonely, "")

    def converged() -> bool:
        res = c.etcdctl("get", "/part/k", "--consistency=s", endpoints=lonely.endpoint, check=False)
        return res.stdout == "/part/k\nduring\n"

    _wait(converged, 20, "the healed member to converge")
    assert c.etcdctl("get", "/part/minority").stdout == ""  # the refused write never happened
    c.wait_ready()


def test_linearizable_history_across_a_leader_kill(ours: LocalCluster) -> None:
    c = ours
    old = c.wait_ready()
    history: list[dict] = []
    lock = threading.Lock()
    t0 = time.monotonic()
    stop = threading.Event()
    keys = [b"/lin/a", b"/lin/b"]

    def record(**e) -> None:
        with lock:
            history.append({**e, "time": time.monotonic() - t0})

    def worker(p: int) -> None:
        rnd = random.Random(p)
        clients = Clients(c.members)
        n = 0
        try:
            while not stop.is_set():
                kv = clients.kv[rnd.randrange(3)]
                key = rnd.choice(keys)
                r = rnd.random()
                if r < 0.4:
                    record(process=p, type="invoke", f="read", key=key)
                    try:
                        resp = kv.Range(rpc_pb2.RangeRequest(key=key), timeout=2)
                    except grpc.RpcError:
                        record(process=p, type="fail", f="read", key=key)
                        continue
                    value = resp.kvs[0].value.decode() if resp.kvs else None
                    rev = resp.kvs[0].mod_revision if resp.kvs else 0
                    record(process=p, type="ok", f="read", key=key, value=value, revision=rev)
                elif r < 0.7:
                    value = f"{p}-{n}"
                    n += 1
                    record(process=p, type="invoke", f="write", key=key, value=value)
                    try:
                        resp = kv.Put(rpc_pb2.PutRequest(key=key, value=value.encode()), timeout=2)
                    except grpc.RpcError:
                        record(process=p, type="info", f="write", key=key, value=value)
                        continue
                    record(process=p, type="ok", f="write", key=key, value=value, revision=resp.header.revision)
                else:
                    try:
                        cur = kv.Range(rpc_pb2.RangeRequest(key=key, serializable=True), timeout=2)
                    except grpc.RpcError:
                        continue  # nothing invoked yet
                    expect = cur.kvs[0].mod_revision if cur.kvs else 0
                    value = f"{p}-{n}"
                    n += 1
                    record(process=p, type="invoke", f="cas_revision", key=key, value=(expect, value))
                    cmp = rpc_pb2.Compare(key=key, target=rpc_pb2.Compare.MOD, result=rpc_pb2.Compare.EQUAL,
                                          mod_revision=expect)
                    put = rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key, value=value.encode()))
                    try:
                        resp = kv.Txn(rpc_pb2.TxnRequest(compare=[cmp], success=[put]), timeout=2)
                    except grpc.RpcError:
                        record(process=p, type="info", f="cas_revision", key=key, value=(expect, value))
                        continue
                    if resp.succeeded:
                        record(process=p, type="ok", f="cas_revision", key=key, value=(expect, value),
                               revision=resp.header.revision)
                    else:
                        record(process=p, type="fail", f="cas_revision", key=key, value=(expect, value))
        finally:
            clients.close()

    threads = [threading.Thread(target=worker, args=(p,)) for p in range(5)]
    for t in threads:
        t.start()
    try:
        _wait(lambda: len(history) > 200, 40, "some history")
        c.kill(old)
        survivors = [m for m in c.members if m is not old]
        _wait(lambda: c.leader(survivors), 30, "a new leader", c)
        mark = len(history)
        _wait(lambda: len(history) > mark + 200, 40, "history after the kill")
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    result = check(history)
    assert result.linearizable is not False, f"not linearizable on {result.key!r}: {result.failing_op}"
    assert result.ops_checked > 150
