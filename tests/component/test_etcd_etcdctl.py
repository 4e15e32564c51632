"""etcdctl (Debian's etcd-client 3.4) against a 3-member cluster: ours and real etcd 3.4.

Every test runs twice with the same assertions: once against agents.etcd, once against
/usr/bin/etcd started with the same flags. Tests share one cluster per implementation
and use their own key prefixes.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time

import grpc
import pytest

from agents.etcd.localcluster import LocalCluster
from agents.etcdapi import rpc_pb2, rpc_pb2_grpc
from tests.conftest import need_tool

pytestmark = [pytest.mark.component, pytest.mark.timeout(120)]


@pytest.fixture(scope="module", params=["ours", "etcd"])
def cluster(request):
    need_tool("etcdctl")
    if request.param == "etcd":
        need_tool("etcd")
    c = LocalCluster(3, impl=request.param)
    try:
        c.start()
        yield c
    finally:
        c.stop()


def ctl(c: LocalCluster, *args: str, **kw) -> str:
    return c.etcdctl(*args, **kw).stdout


def test_put_get_prefix_revision_delete(cluster: LocalCluster) -> None:
    assert ctl(cluster, "put", "/kv/a", "1") == "OK\n"
    rev_a = json.loads(ctl(cluster, "get", "/kv/a", "-w", "json"))["kvs"][0]["mod_revision"]
    ctl(cluster, "put", "/kv/a", "2")
    ctl(cluster, "put", "/kv/b", "3")
    assert ctl(cluster, "get", "/kv/", "--prefix") == "/kv/a\n2\n/kv/b\n3\n"
    assert ctl(cluster, "get", "/kv/", "--prefix", "--keys-only") == "/kv/a\n\n/kv/b\n\n"
    assert ctl(cluster, "get", "/kv/", "--prefix", "--limit=1") == "/kv/a\n2\n"
    assert ctl(cluster, "get", "/kv/", "--prefix", "--sort-by=KEY", "--order=DESCEND") == "/kv/b\n3\n/kv/a\n2\n"
    assert json.loads(ctl(cluster, "get", "/kv/", "--prefix", "--limit=1", "-w", "json"))["count"] == 2
    assert ctl(cluster, "get", "/kv/a", f"--rev={rev_a}") == "/kv/a\n1\n"
    assert ctl(cluster, "get", "/kv/a", "--consistency=s") == "/kv/a\n2\n"
    kv = json.loads(ctl(cluster, "get", "/kv/a", "-w", "json"))["kvs"][0]
    assert (kv["version"], kv["create_revision"]) == (2, rev_a)
    assert ctl(cluster, "del", "/kv/", "--prefix") == "2\n"
    assert ctl(cluster, "get", "/kv/", "--prefix") == ""
    assert ctl(cluster, "del", "/kv/none") == "0\n"


def test_writes_through_every_member_are_seen_by_all(cluster: LocalCluster) -> None:
    for i, m in enumerate(cluster.members):
        assert ctl(cluster, "put", f"/each/{i}", m.name, endpoints=m.endpoint) == "OK\n"
    for m in cluster.members:
        out = ctl(cluster, "get", "/each/", "--prefix", endpoints=m.endpoint)
        assert out == "".join(f"/each/{i}\n{x.name}\n" for i, x in enumerate(cluster.members))


def test_txn_compare_then_else(cluster: LocalCluster) -> None:
    ctl(cluster, "put", "/txn/k", "v1")
    script = 'value("/txn/k") = "v1"\n\nput /txn/k v2\n\nget /txn/k\n\n'
    assert ctl(cluster, "txn", input=script) == "SUCCESS\n\nOK\n"
    assert ctl(cluster, "txn", input=script) == "FAILURE\n\n/txn/k\nv2\n"
    script = 'mod("/txn/new") = "0"\n\nput /txn/new created\n\n\n'
    assert ctl(cluster, "txn", input=script) == "SUCCESS\n\nOK\n"
    assert ctl(cluster, "txn", input=script) == "FAILURE\n"
    script = 'version("/txn/k") > "1"\ncreate("/txn/k") != "0"\n\nget /txn/new\n\n\n'
    assert ctl(cluster, "txn", input=script) == "SUCCESS\n\n/txn/new\ncreated\n"


class WatchOutput:
    """Collects an `etcdctl watch` process's output lines on a thread."""

    def __init__(self, cluster: LocalCluster, *args: str) -> None:
        env = dict(os.environ, ETCDCTL_API="3")
        self.proc = subprocess.Popen(
            ["etcdctl", "--endpoints", cluster.members[1].endpoint, "watch", *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        )
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def text(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, fragment: str, timeout: float = 10.0, poke=None) -> str:
        deadline = time.monotonic() + timeout
        while fragment not in self.text():
            if time.monotonic() > deadline:
                raise AssertionError(f"watch output lacks {fragment!r}: {self.lines}")
            if poke is not None:
                poke()
            time.sleep(0.1)
        return self.text()

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.thread.join(5)


def test_watch_prefix_with_prev_kv(cluster: LocalCluster) -> None:
    ctl(cluster, "put", "/w/a", "0")
    w = WatchOutput(cluster, "/w/", "--prefix", "--prev-kv")
    try:
        # the watch is established once a put made after it shows up
        w.wait_for("/w/ready", poke=lambda: ctl(cluster, "put", "/w/ready", "x"))
        ctl(cluster, "put", "/w/a", "1")
        ctl(cluster, "put", "/w/b", "2")
        ctl(cluster, "del", "/w/a")
        ctl(cluster, "put", "/other", "x")
        ctl(cluster, "put", "/w/end", "x")
        text = w.wait_for("PUT\n/w/end")
        assert "PUT\n/w/a\n0\n/w/a\n1\n" in text  # prev kv, then kv
        assert "PUT\n/w/b\n2\n" in text
        assert "DELETE\n/w/a\n1\n/w/a\n" in text  # prev kv, then the deleted key
        assert "/other" not in text
    finally:
        w.close()


def test_watch_from_revision_and_compacted_error(cluster: LocalCluster) -> None:
    ctl(cluster, "put", "/wr/k", "1")
    rev = json.loads(ctl(cluster, "get", "/wr/k", "-w", "json"))["kvs"][0]["mod_revision"]
    ctl(cluster, "put", "/wr/k", "2")
    w = WatchOutput(cluster, "/wr/k", f"--rev={rev}")
    try:
        assert w.wait_for("/wr/k\n2").splitlines() == ["PUT", "/wr/k", "1", "PUT", "/wr/k", "2"]
    finally:
        w.close()
    ctl(cluster, "put", "/wr/k", "3")
    head = json.loads(ctl(cluster, "get", "/wr/k", "-w", "json"))["header"]["revision"]
    assert ctl(cluster, "compaction", str(head)) == f"compacted revision {head}\n"
    res = cluster.etcdctl("get", "/wr/k", f"--rev={rev}", check=False)
    assert res.returncode != 0 and "required revision has been compacted" in res.stderr
    res = cluster.etcdctl("watch", "/wr/k", f"--rev={rev}", check=False)
    assert "required revision has been compacted" in res.stdout + res.stderr


def test_lease_grant_attach_keepalive_revoke_and_expiry(cluster: LocalCluster) -> None:
    out = ctl(cluster, "lease", "grant", "30")
    lease = out.split()[1]
    assert out == f"lease {lease} granted with TTL(30s)\n"
    ctl(cluster, "put", "/lease/k", "v", f"--lease={lease}")
    ttl = ctl(cluster, "lease", "timetolive", lease, "--keys")
    assert ttl.startswith(f"lease {lease} granted with TTL(30s), remaining(") and "attached keys([/lease/k])" in ttl
    assert lease in ctl(cluster, "lease", "list")
    assert ctl(cluster, "lease", "keep-alive", "--once", lease) == f"lease {lease} keepalived with TTL(30)\n"
    assert ctl(cluster, "lease", "revoke", lease) == f"lease {lease} revoked\n"
    assert ctl(cluster, "get", "/lease/k") == ""
    assert ctl(cluster, "lease", "timetolive", lease) == f"lease {lease} already expired\n"
    # expiry: the leader revokes it and the attached key goes away
    short = ctl(cluster, "lease", "grant", "2").split()[1]
    ctl(cluster, "put", "/lease/short", "v", f"--lease={short}")
    deadline = time.monotonic() + 15
    while ctl(cluster, "get", "/lease/short") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ctl(cluster, "get", "/lease/short") == ""


def test_member_list_and_endpoint_status_health(cluster: LocalCluster) -> None:
    rows = [r.split(", ") for r in ctl(cluster, "member", "list").splitlines()]
    assert sorted((r[1], r[2], r[3], r[4], r[5]) for r in rows) == sorted(
        ("started", m.name, m.peer_url, m.client_url, "false") for m in cluster.members
    )
    statuses = json.loads(ctl(cluster, "endpoint", "status", "-w", "json"))
    assert len(statuses) == 3
    leaders = {s["Status"]["leader"] for s in statuses}
    assert len(leaders) == 1 and leaders.pop() in {s["Status"]["header"]["member_id"] for s in statuses}
    assert len({s["Status"]["header"]["cluster_id"] for s in statuses}) == 1
    res = cluster.etcdctl("endpoint", "health")
    assert res.stderr.count("is healthy") == 3 or res.stdout.count("is healthy") == 3
    assert ctl(cluster, "alarm", "list") == ""
    hashes = ctl(cluster, "endpoint", "hashkv", "-w", "json")
    assert len(json.loads(hashes)) == 3


def test_move_leader(cluster: LocalCluster) -> None:
    leader = cluster.wait_ready()
    target = next(m for m in cluster.members if m is not leader)
    target_id = cluster.member_id(target)
    out = ctl(cluster, "move-leader", f"{target_id:x}")
    assert "Leadership transferred" in out
    deadline = time.monotonic() + 10
    while cluster.leader() is not target and time.monotonic() < deadline:
        time.sleep(0.1)
    assert cluster.leader() is target


def test_snapshot_save_and_restore_into_new_cluster(cluster: LocalCluster, tmp_path) -> None:
    ctl(cluster, "put", "/snap/a", "1")
    ctl(cluster, "put", "/snap/b", "2")
    path = tmp_path / "snap.db"
    cluster.etcdctl("snapshot", "save", str(path), endpoints=cluster.members[0].endpoint)
    assert path.stat().st_size % 512 == 32
    new = LocalCluster(1, impl=cluster.impl, base_dir=str(tmp_path / "restored"), token="restored")
    os.makedirs(new.dir)
    m = new.members[0]
    flags = ["--name", m.name, "--data-dir", m.data_dir, "--initial-cluster", new.initial_cluster,
             "--initial-cluster-token", new.token, "--initial-advertise-peer-urls", m.peer_url]
    if cluster.impl == "ours":
        cmd = [__import__("sys").executable, "-m", "agents.etcd", "snapshot", "restore", str(path), *flags]
        subprocess.run(cmd, check=True, capture_output=True, cwd=os.getcwd())
    else:
        new.etcdctl("snapshot", "restore", str(path), *flags)
    try:
        new.start()
        assert ctl(new, "get", "/snap/", "--prefix") == "/snap/a\n1\n/snap/b\n2\n"
        assert ctl(new, "put", "/snap/c", "3") == "OK\n"
        assert len(ctl(new, "member", "list").splitlines()) == 1
    finally:
        new.stop()


def test_python_grpc_client(cluster: LocalCluster) -> None:
    with grpc.insecure_channel(cluster.members[2].endpoint) as ch:
        kv = rpc_pb2_grpc.KVStub(ch)
        put = kv.Put(rpc_pb2.PutRequest(key=b"/py/k", value=b"v", prev_kv=True))
        assert put.header.revision > 1 and not put.HasField("prev_kv")
        put2 = kv.Put(rpc_pb2.PutRequest(key=b"/py/k", value=b"w", prev_kv=True))
        assert put2.prev_kv.value == b"v" and put2.header.revision == put.header.revision + 1
        C = rpc_pb2.Compare
        txn = kv.Txn(rpc_pb2.TxnRequest(
            compare=[C(key=b"/py/k", target=C.MOD, result=C.EQUAL, mod_revision=put2.header.revision)],
            success=[rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(key=b"/py/k", prev_kv=True))],
        ))
        assert txn.succeeded and txn.responses[0].response_delete_range.deleted == 1
        with pytest.raises(grpc.RpcError) as err:
            kv.Range(rpc_pb2.RangeRequest(key=b"/py/k", revision=10**9))
        assert err.value.code() == grpc.StatusCode.OUT_OF_RANGE
        assert "future revision" in err.value.details()
        with pytest.raises(grpc.RpcError) as err:
            kv.Put(rpc_pb2.PutRequest(key=b"/py/x", value=b"v", lease=12345))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        assert err.value.details() == "etcdserver: requested lease not found"
