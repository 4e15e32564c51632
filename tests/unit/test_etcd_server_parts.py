"""Flags and IDs, the replicated state machine's entry handling, and lease clocks."""

from __future__ import annotations

import pytest

from agents.etcd import state
from agents.etcd.config import ConfigError, cluster_id, member_id, parse_args
from agents.etcd.lessor import Lessor
from agents.etcd.mvcc import StoreError
from agents.etcdapi import rpc_pb2

pytestmark = pytest.mark.unit


def test_ids_match_etcd() -> None:
    # observed on etcd 3.4.23: one member at this peer URL with the default token
    mid = member_id(["http://127.0.0.1:42380"], "etcd-cluster")
    assert mid == 7383792418829112008
    assert cluster_id([mid]) == 15875391935852295136


def test_etcd_flag_names_and_forms() -> None:
    cfg = parse_args([
        "--name=n1", "--data-dir", "/d", "--listen-client-urls", "http://127.0.0.1:1,http://127.0.0.1:2",
        "--initial-cluster", "n1=http://127.0.0.1:3,n2=http://127.0.0.1:4", "--heartbeat-interval=50",
        "--election-timeout", "500", "--snapshot-count", "10", "--client-cert-auth",
    ])
    assert cfg.listen_client_urls == ["http://127.0.0.1:1", "http://127.0.0.1:2"]
    assert cfg.initial_members() == {"n1": ["http://127.0.0.1:3"], "n2": ["http://127.0.0.1:4"]}
    assert (cfg.heartbeat_interval, cfg.election_timeout, cfg.snapshot_count) == (50, 500, 10)
    assert cfg.client_cert_auth is True


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--name", "x", "--initial-cluster", "y=http://127.0.0.1:1"], "no entry for this member"),
        (["--initial-cluster", "default"], "is not name=peer-url"),
        (["--listen-client-urls", "127.0.0.1:2379"], "must look like http"),
        (["--heartbeat-interval", "100", "--election-timeout", "200"], "at least 5 times"),
    ],
)
def test_bad_flags_say_what_and_how(argv, message) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_args(argv)


def test_config_file_with_etcd_keys(tmp_path) -> None:
    f = tmp_path / "etcd.yaml"
    f.write_text("name: n9\ndata-dir: /var/lib/lab/etcd\nsnapshot-count: 5\nenable-v2: false\n")
    cfg = parse_args(["--config-file", str(f)])
    assert (cfg.name, cfg.data_dir, cfg.snapshot_count) == ("n9", "/var/lib/lab/etcd", 5)


def entry(op: int, req) -> bytes:
    return state.encode_entry(op, 42, req.SerializeToString())


def test_state_machine_applies_entries_and_reports_errors() -> None:
    seen = []
    sm = state.StateMachine(on_lease=lambda *a: seen.append(a))
    resp, events = sm.apply(entry(state.OP_PUT, rpc_pb2.PutRequest(key=b"k", value=b"v")))
    assert resp.header.revision == 2 and len(events) == 1
    err, events = sm.apply(entry(state.OP_PUT, rpc_pb2.PutRequest(key=b"k", lease=5)))
    assert isinstance(err, StoreError) and events == [] and sm.store.rev == 2
    sm.apply(entry(state.OP_LEASE_GRANT, rpc_pb2.LeaseGrantRequest(ID=5, TTL=10)))
    sm.apply(entry(state.OP_PUT, rpc_pb2.PutRequest(key=b"k", lease=5)))
    resp, _ = sm.apply(entry(state.OP_LEASE_RENEW, rpc_pb2.LeaseKeepAliveRequest(ID=5)))
    assert resp.TTL == 10
    _, events = sm.apply(entry(state.OP_LEASE_REVOKE, rpc_pb2.LeaseRevokeRequest(ID=5)))
    assert [e.kv.key for e in events] == [b"k"]
    assert seen == [("grant", 5, 10), ("renew", 5, 10), ("revoke", 5, 0)]
    sm.add_member(state.Member(7, "", ["http://127.0.0.1:1"]))
    sm.apply(state.encode_entry(state.OP_MEMBER_ATTR, 1, state.encode_member(
        state.Member(7, "n7", ["http://127.0.0.1:1"], ["http://127.0.0.1:2"]))))
    assert sm.members[7].name == "n7" and sm.members[7].client_urls == ["http://127.0.0.1:2"]
    copy = state.StateMachine()
    copy.load(sm.dump())
    assert copy.store.hash_kv() == sm.store.hash_kv() and copy.members[7].name == "n7"


def test_lessor_expiry_promotion_and_retry() -> None:
    now = [100.0]
    ls = Lessor(clock=lambda: now[0])
    ls.on_apply("grant", 1, 10)
    assert ls.remaining(1) == 10 and ls.expired() == []
    now[0] = 111.0
    assert ls.expired() == [1] and ls.expired() == []  # revoke in flight: not twice
    now[0] = 114.0
    assert ls.expired() == [1]  # the revoke was lost: try again
    ls.promote()  # a new leader gives every lease its full TTL again
    assert ls.remaining(1) == 10 and ls.expired() == []
    ls.on_apply("revoke", 1, 0)
    assert ls.remaining(1) == -1


def test_watch_hub_ranges_filters_and_future_start() -> None:
    import asyncio

    from agents.etcd.mvcc import Store
    from agents.etcd.watch import Watcher, WatchHub

    s = Store()
    hub = WatchHub()
    q: asyncio.Queue = asyncio.Queue()
    prefix = Watcher(1, b"a/", b"a0", True, False, False, q)
    no_put = Watcher(2, b"a/x", b"", False, True, False, q)
    future = Watcher(3, b"a/", b"a0", False, False, False, q, min_rev=4)
    for w in (prefix, no_put, future):
        hub.add(w)
    for key in (b"a/x", b"b", b"a/y"):
        _, events = s.put(rpc_pb2.PutRequest(key=key, value=b"1"))
        hub.notify(s.rev, events)
    _, events = s.delete_range(rpc_pb2.DeleteRangeRequest(key=b"a/x"))
    hub.notify(s.rev, events)
    got = []
    while not q.empty():
        wid, rev, evs = q.get_nowait()
        got.append((wid, rev, [(e.type, e.kv.key) for e in evs]))
    # watchers are a set: compare without their relative order
    assert sorted(got) == [
        (1, 2, [(0, b"a/x")]),
        (1, 4, [(0, b"a/y")]),
        (1, 5, [(1, b"a/x")]),
        (2, 5, [(1, b"a/x")]),  # only deletes of a/x
        (3, 4, [(0, b"a/y")]),  # nothing before revision 4
        (3, 5, [(1, b"a/x")]),
    ]


def test_read_only_txn_detection() -> None:
    from agents.etcd.api import _txn_is_read_only

    get = rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=b"k"))
    put = rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"k"))
    assert _txn_is_read_only(rpc_pb2.TxnRequest(success=[get], failure=[get]))
    assert not _txn_is_read_only(rpc_pb2.TxnRequest(success=[get], failure=[put]))
    nested = rpc_pb2.RequestOp(request_txn=rpc_pb2.TxnRequest(success=[put]))
    assert not _txn_is_read_only(rpc_pb2.TxnRequest(success=[nested]))


def test_etcd_only_flags_are_accepted_and_unknown_ones_refused() -> None:
    cfg = parse_args(["--logger=zap", "--enable-v2", "--quota-backend-bytes", "8589934592"])
    assert cfg.name == "default"
    with pytest.raises(SystemExit):
        parse_args(["--no-such-flag"])
