"""The MVCC store against etcd 3.4's documented semantics (no I/O)."""

from __future__ import annotations

import pytest

from agents.etcd.mvcc import Store, StoreError, prefix_end
from agents.etcdapi import kv_pb2, rpc_pb2

pytestmark = pytest.mark.unit

R = rpc_pb2.RangeRequest
C = rpc_pb2.Compare


def put(s: Store, key: bytes, value: bytes = b"v", **kw):
    resp, events = s.put(rpc_pb2.PutRequest(key=key, value=value, **kw))
    return resp


def get(s: Store, key: bytes, **kw):
    return s.range(R(key=key, **kw))


def test_revisions_versions_and_generations() -> None:
    s = Store()
    assert s.rev == 1
    assert put(s, b"a", b"1").header.revision == 2
    assert put(s, b"a", b"2").header.revision == 3
    kv = get(s, b"a").kvs[0]
    assert (kv.create_revision, kv.mod_revision, kv.version, kv.value) == (2, 3, 2, b"2")
    resp, events = s.delete_range(rpc_pb2.DeleteRangeRequest(key=b"a"))
    assert resp.deleted == 1 and resp.header.revision == 4
    assert events[0].type == kv_pb2.Event.DELETE and events[0].kv.mod_revision == 4
    put(s, b"a", b"3")
    kv = get(s, b"a").kvs[0]
    assert (kv.create_revision, kv.version) == (5, 1)


def test_delete_of_nothing_keeps_revision() -> None:
    s = Store()
    resp, events = s.delete_range(rpc_pb2.DeleteRangeRequest(key=b"missing"))
    assert resp.deleted == 0 and events == [] and s.rev == 1


def test_prefix_limit_sort_count_keys_only() -> None:
    s = Store()
    for k in (b"p/b", b"p/a", b"p/c", b"q"):
        put(s, k, k.upper())
    r = get(s, b"p/", range_end=prefix_end(b"p/"))
    assert [kv.key for kv in r.kvs] == [b"p/a", b"p/b", b"p/c"] and r.count == 3
    r = get(s, b"p/", range_end=prefix_end(b"p/"), limit=2)
    assert len(r.kvs) == 2 and r.more and r.count == 3
    r = get(s, b"p/", range_end=prefix_end(b"p/"), sort_order=R.DESCEND)
    assert [kv.key for kv in r.kvs] == [b"p/c", b"p/b", b"p/a"]
    r = get(s, b"p/", range_end=prefix_end(b"p/"), sort_target=R.CREATE)
    assert [kv.key for kv in r.kvs] == [b"p/b", b"p/a", b"p/c"]
    r = get(s, b"p/", range_end=prefix_end(b"p/"), count_only=True)
    assert r.count == 3 and not r.kvs
    r = get(s, b"p/", range_end=prefix_end(b"p/"), keys_only=True)
    assert all(kv.value == b"" for kv in r.kvs)
    r = get(s, b"\0", range_end=b"\0")
    assert r.count == 4


def test_prefix_end() -> None:
    assert prefix_end(b"abc") == b"abd"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff\xff") == b"\0"


def test_range_at_past_revision_and_compaction() -> None:
    s = Store()
    put(s, b"k", b"1")  # rev 2
    put(s, b"k", b"2")  # rev 3
    put(s, b"gone", b"x")  # rev 4
    s.delete_range(rpc_pb2.DeleteRangeRequest(key=b"gone"))  # rev 5
    assert get(s, b"k", revision=2).kvs[0].value == b"1"
    assert get(s, b"gone", revision=4).kvs[0].value == b"x"
    with pytest.raises(StoreError, match="future revision"):
        get(s, b"k", revision=99)
    s.compact(3)
    assert get(s, b"k", revision=3).kvs[0].value == b"2"
    with pytest.raises(StoreError, match="compacted"):
        get(s, b"k", revision=2)
    with pytest.raises(StoreError, match="compacted"):
        s.compact(3)
    s.compact(5)
    assert b"gone" not in s.history  # its deletion is older than the compaction


def test_txn_compares_then_else() -> None:
    s = Store()
    put(s, b"k", b"v1")
    create = rpc_pb2.TxnRequest(
        compare=[C(key=b"k", target=C.MOD, result=C.EQUAL, mod_revision=0)],
        success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"k", value=b"new"))],
        failure=[rpc_pb2.RequestOp(request_range=R(key=b"k"))],
    )
    resp, events = s.txn(create)
    assert not resp.succeeded and events == [] and s.rev == 2
    assert resp.responses[0].response_range.kvs[0].value == b"v1"
    update = rpc_pb2.TxnRequest(
        compare=[C(key=b"k", target=C.VALUE, result=C.EQUAL, value=b"v1")],
        success=[
            rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"k", value=b"v2")),
            rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"j", value=b"v2")),
            rpc_pb2.RequestOp(request_range=R(key=b"k")),
        ],
    )
    resp, events = s.txn(update)
    assert resp.succeeded and resp.header.revision == 3 and len(events) == 2
    assert resp.responses[2].response_range.kvs[0].value == b"v2"  # sees its own write
    assert [e.sub for e in events] == [0, 1]
    for target, field, value, result, want in [
        (C.VERSION, "version", 2, C.EQUAL, True),
        (C.CREATE, "create_revision", 2, C.GREATER, False),
        (C.MOD, "mod_revision", 2, C.GREATER, True),
        (C.VERSION, "version", 5, C.LESS, True),
        (C.VALUE, "value", b"v2", C.NOT_EQUAL, False),
    ]:
        cmp = C(key=b"k", target=target, result=result, **{field: value})
        assert s.txn(rpc_pb2.TxnRequest(compare=[cmp]))[0].succeeded is want
    missing_value = C(key=b"nope", target=C.VALUE, result=C.EQUAL, value=b"")
    assert not s.txn(rpc_pb2.TxnRequest(compare=[missing_value]))[0].succeeded


def test_leases_attach_and_revoke_deletes_keys_in_one_revision() -> None:
    s = Store()
    with pytest.raises(StoreError, match="lease not found"):
        put(s, b"a", lease=7)
    assert s.rev == 1
    s.lease_grant(7, 30)
    with pytest.raises(StoreError, match="already exists"):
        s.lease_grant(7, 30)
    put(s, b"a", lease=7)
    put(s, b"b", lease=7)
    put(s, b"b")  # moved off the lease
    events = s.lease_revoke(7)
    assert [e.kv.key for e in events] == [b"a"] and s.rev == 5
    assert get(s, b"b").count == 1 and 7 not in s.leases


def test_put_ignore_value_and_prev_kv() -> None:
    s = Store()
    with pytest.raises(StoreError, match="key not found"):
        put(s, b"a", b"", ignore_value=True)
    put(s, b"a", b"1")
    resp = put(s, b"a", b"", ignore_value=True, prev_kv=True)
    assert resp.prev_kv.value == b"1"
    assert get(s, b"a").kvs[0].value == b"1"


def test_events_since_for_watches() -> None:
    s = Store()
    put(s, b"w/a", b"1")
    put(s, b"w/b", b"1")
    put(s, b"w/a", b"2")
    s.delete_range(rpc_pb2.DeleteRangeRequest(key=b"w/b"))
    evs = s.events_since(b"w/", prefix_end(b"w/"), 3)
    assert [(rev, e.type, e.kv.key) for rev, e in evs] == [
        (3, kv_pb2.Event.PUT, b"w/b"),
        (4, kv_pb2.Event.PUT, b"w/a"),
        (5, kv_pb2.Event.DELETE, b"w/b"),
    ]
    assert evs[1][1].prev_kv.value == b"1"
    s.compact(4)
    with pytest.raises(StoreError, match="compacted"):
        s.events_since(b"w/", prefix_end(b"w/"), 3)


def test_dump_load_round_trip_keeps_history_and_leases() -> None:
    s = Store()
    s.lease_grant(9, 60)
    put(s, b"a", b"1", lease=9)
    put(s, b"a", b"2", lease=9)
    put(s, b"b", b"1")
    s.delete_range(rpc_pb2.DeleteRangeRequest(key=b"b"))
    s.compact(3)
    t = Store.load(s.dump())
    assert (t.rev, t.compact_rev) == (s.rev, s.compact_rev)
    assert t.hash_kv() == s.hash_kv()
    assert t.leases[9].keys == {b"a"}
    assert get(t, b"a", revision=3).kvs[0].value == b"2"


def test_ranges_stay_ordered_when_keys_arrive_out_of_order() -> None:
    import random

    rnd = random.Random(7)
    s = Store()
    keys = [b"/p/%04d" % i for i in range(300)]
    rnd.shuffle(keys)
    seen: list[bytes] = []
    for n, k in enumerate(keys):
        put(s, k)
        seen.append(k)
        if n % 37 == 0:  # reads in between writes see every key so far, in order
            got = [kv.key for kv in get(s, b"/p/", range_end=prefix_end(b"/p/")).kvs]
            assert got == sorted(seen)
    s.delete_range(rpc_pb2.DeleteRangeRequest(key=b"/p/0100", range_end=b"/p/0200"))
    put(s, b"/a")
    put(s, b"/p/0150")
    got = [kv.key for kv in get(s, b"/", range_end=prefix_end(b"/")).kvs]
    assert got == sorted([b"/a", b"/p/0150"] + [k for k in keys if not b"/p/0100" <= k < b"/p/0200"])
    s.compact(s.rev)
    loaded = Store.load(s.dump())
    assert [kv.key for kv in loaded.range(R(key=b"/", range_end=prefix_end(b"/"))).kvs] == got
