"""The MVCC key-value store: etcd's data model as a pure, deterministic state machine.

Rules (they are etcd 3.4's, the anchor this is measured against):
- The store revision starts at 1. Every request that changes something (a put, a delete
  that deleted at least one key, a txn with such an operation, a lease revoke that
  deleted keys) advances it by one; all changes of one request share that revision and
  are ordered by a sub-revision.
- A key keeps create_revision (revision of its creation in the current generation),
  mod_revision (last change) and version (puts since creation, 1 for the first). A
  delete ends the generation: the next put starts again at version 1.
- Reads at a past revision see the newest version at or before it; revisions below the
  compacted revision are gone ("required revision has been compacted"), revisions above
  the current one do not exist yet ("required revision is a future revision").
- Compaction at C keeps, for every key, the newest version at or before C (unless it is
  a deletion) and everything after C.
- Leases only hold a TTL and the keys attached to them here; when a lease expires is
  decided by the server on the leader, which then applies a revoke like any other write.
- Errors are raised as StoreError before anything is changed, so a failed request has
  no effect on any member.

Requests and responses are the etcd v3 protobuf messages (the store never touches I/O).
"""

from __future__ import annotations

import marshal
import zlib
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from typing import NamedTuple

from agents.etcdapi import kv_pb2, rpc_pb2

Range = rpc_pb2.RangeRequest
Cmp = rpc_pb2.Compare


class KV(NamedTuple):
    key: bytes
    create_revision: int
    mod_revision: int
    version: int
    value: bytes
    lease: int

    def to_pb(self, keys_only: bool = False) -> kv_pb2.KeyValue:
        return kv_pb2.KeyValue(
            key=self.key,
            create_revision=self.create_revision,
            mod_revision=self.mod_revision,
            version=self.version,
            value=b"" if keys_only else self.value,
            lease=self.lease,
        )


class Event(NamedTuple):
    """One change: PUT (kv is the new value) or DELETE (kv is the key's tombstone)."""

    type: int  # kv_pb2.Event.PUT / DELETE
    kv: KV
    prev_kv: KV | None
    sub: int  # order inside its revision


class StoreError(Exception):
    """A request the store refuses; `code` names the gRPC status the server answers."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def compacted_error() -> StoreError:
    return StoreError("OUT_OF_RANGE", "etcdserver: mvcc: required revision has been compacted")


def future_rev_error() -> StoreError:
    return StoreError("OUT_OF_RANGE", "etcdserver: mvcc: required revision is a future revision")


def prefix_end(prefix: bytes) -> bytes:
    """The range_end that selects every key starting with prefix (etcd's GetPrefixRangeEnd)."""
    b = bytearray(prefix)
    for i in range(len(b) - 1, -1, -1):
        if b[i] < 0xFF:
            b[i] += 1
            return bytes(b[: i + 1])
    return b"\0"


def in_range(key: bytes, start: bytes, end: bytes) -> bool:
    if not end:
        return key == start
    if end == b"\0":
        return key >= start
    return start <= key < end


# A key's history: (main revision, sub revision, KV or None for a deletion), ascending.
History = list


@dataclass
class Lease:
    id: int
    ttl: int
    keys: set[bytes] = field(default_factory=set)


class Store:
    def __init__(self) -> None:
        self.rev = 1
        self.compact_rev = 0
        self.history: dict[bytes, History] = {}
        # Every key with history, sorted on demand: new keys are appended and the list
        # is sorted when a read needs order (timsort merges the new tail in one pass).
        # A sorted insert per new key cost an O(n) memmove each: 40% of applying a put
        # of a new key at 60,000 keys.
        self._sorted_keys: list[bytes] = []
        self._keys_unsorted = False
        self.live: dict[bytes, KV] = {}
        self.leases: dict[int, Lease] = {}
        # Changes of the request being applied; flushed into history by _commit().
        self._sub = 0
        self._events: list[Event] = []

    @property
    def sorted_keys(self) -> list[bytes]:
        if self._keys_unsorted:
            self._sorted_keys.sort()
            self._keys_unsorted = False
        return self._sorted_keys

    @sorted_keys.setter
    def sorted_keys(self, keys: list[bytes]) -> None:
        self._sorted_keys = keys
        self._keys_unsorted = False

    # ----- reads -------------------------------------------------------------------

    def _keys_in(self, start: bytes, end: bytes) -> list[bytes]:
        if not end:
            return [start] if start in self.history else []
        lo = bisect_left(self.sorted_keys, start)
        hi = len(self.sorted_keys) if end == b"\0" else bisect_left(self.sorted_keys, end)
        return self.sorted_keys[lo:hi]

    def _at(self, key: bytes, rev: int) -> KV | None:
        hist = self.history.get(key)
        if not hist:
            return None
        i = bisect_right(hist, rev, key=lambda e: e[0])
        return hist[i - 1][2] if i else None

    def _check_rev(self, rev: int) -> None:
        if rev > self.rev:
            raise future_rev_error()
        if rev < self.compact_rev:
            raise compacted_error()

    def get(self, key: bytes) -> KV | None:
        return self.live.get(key)

    def range_kvs(self, start: bytes, end: bytes, rev: int = 0) -> list[KV]:
        """Live KVs in [start, end) at rev (0: now), in key order."""
        if rev and rev != self.rev:
            self._check_rev(rev)
            out = (self._at(k, rev) for k in self._keys_in(start, end))
        else:
            out = (self.live.get(k) for k in self._keys_in(start, end))
        return [kv for kv in out if kv is not None]

    def range(self, r: rpc_pb2.RangeRequest) -> rpc_pb2.RangeResponse:
        kvs = self.range_kvs(r.key, r.range_end, r.revision)
        resp = rpc_pb2.RangeResponse(count=len(kvs))
        resp.header.revision = self.rev
        if r.min_mod_revision or r.max_mod_revision or r.min_create_revision or r.max_create_revision:
            kvs = [kv for kv in kvs if _passes_filters(kv, r)]
        order = r.sort_order
        if order == Range.NONE and r.sort_target != Range.KEY:
            order = Range.ASCEND
        if order != Range.NONE:
            kvs.sort(key=_SORT_KEYS[r.sort_target], reverse=order == Range.DESCEND)
        if r.limit > 0 and len(kvs) > r.limit:
            kvs = kvs[: r.limit]
            resp.more = True
        if not r.count_only:
            resp.kvs.extend(kv.to_pb(r.keys_only) for kv in kvs)
        return resp

    # ----- writes ------------------------------------------------------------------

    def _next_rev(self) -> int:
        return self.rev + 1

    def _write(self, kv: KV | None, key: bytes, etype: int, prev: KV | None) -> None:
        rev = self._next_rev()
        hist = self.history.get(key)
        if hist is None:
            hist = self.history[key] = []
            keys = self._sorted_keys
            if keys and key < keys[-1]:
                self._keys_unsorted = True
            keys.append(key)
        hist.append((rev, self._sub, kv))
        if kv is None:
            self.live.pop(key, None)
            tomb = KV(key, 0, rev, 0, b"", 0)
            self._events.append(Event(etype, tomb, prev, self._sub))
        else:
            self.live[key] = kv
            self._events.append(Event(etype, kv, prev, self._sub))
        self._sub += 1

    def _detach(self, kv: KV | None) -> None:
        if kv is not None and kv.lease:
            lease = self.leases.get(kv.lease)
            if lease is not None:
                lease.keys.discard(kv.key)

    def _check_put(self, p: rpc_pb2.PutRequest) -> None:
        if p.lease and not p.ignore_lease and p.lease not in self.leases:
            raise StoreError("NOT_FOUND", "etcdserver: requested lease not found")
        if (p.ignore_value or p.ignore_lease) and p.key not in self.live:
            raise StoreError("INVALID_ARGUMENT", "etcdserver: key not found")
        if p.ignore_value and p.value:
            raise StoreError("INVALID_ARGUMENT", "etcdserver: value is provided")
        if p.ignore_lease and p.lease:
            raise StoreError("INVALID_ARGUMENT", "etcdserver: lease is provided")
        if not p.key:
            raise StoreError("INVALID_ARGUMENT", "etcdserver: key is not provided")

    def _put(self, p: rpc_pb2.PutRequest) -> rpc_pb2.PutResponse:
        prev = self.live.get(p.key)
        rev = self._next_rev()
        value = prev.value if p.ignore_value and prev else p.value
        lease = prev.lease if p.ignore_lease and prev else p.lease
        if prev is None:
            kv = KV(p.key, rev, rev, 1, value, lease)
        else:
            kv = KV(p.key, prev.create_revision, rev, prev.version + 1, value, lease)
        if prev is not None and prev.lease != lease:
            self._detach(prev)
        if lease:
            self.leases[lease].keys.add(p.key)
        self._write(kv, p.key, kv_pb2.Event.PUT, prev)
        resp = rpc_pb2.PutResponse()
        if p.prev_kv and prev is not None:
            resp.prev_kv.CopyFrom(prev.to_pb())
        return resp

    def _delete(self, d: rpc_pb2.DeleteRangeRequest) -> rpc_pb2.DeleteRangeResponse:
        if not d.key:
            raise StoreError("INVALID_ARGUMENT", "etcdserver: key is not provided")
        resp = rpc_pb2.DeleteRangeResponse()
        for key in self._keys_in(d.key, d.range_end):
            prev = self.live.get(key)
            if prev is None:
                continue
            self._detach(prev)
            self._write(None, key, kv_pb2.Event.DELETE, prev)
            resp.deleted += 1
            if d.prev_kv:
                resp.prev_kvs.append(prev.to_pb())
        return resp

    def _compare(self, c: rpc_pb2.Compare) -> bool:
        kvs = self.range_kvs(c.key, c.range_end)
        if not kvs:
            if c.target == Cmp.VALUE:
                return False
            kvs = [KV(c.key, 0, 0, 0, b"", 0)]
        return all(_compare_one(c, kv) for kv in kvs)

    def _check_ops(self, ops) -> None:
        for op in ops:
            which = op.WhichOneof("request")
            if which == "request_put":
                self._check_put(op.request_put)
            elif which == "request_range":
                r = op.request_range
                if r.revision and r.revision != self.rev:
                    self._check_rev(r.revision)
            elif which == "request_txn":
                self._check_ops(op.request_txn.success)
                self._check_ops(op.request_txn.failure)

    def _txn(self, t: rpc_pb2.TxnRequest) -> rpc_pb2.TxnResponse:
        ok = all(self._compare(c) for c in t.compare)
        ops = t.success if ok else t.failure
        resp = rpc_pb2.TxnResponse(succeeded=ok)
        for op in ops:
            which = op.WhichOneof("request")
            out = resp.responses.add()
            if which == "request_range":
                out.response_range.CopyFrom(self.range(op.request_range))
            elif which == "request_put":
                out.response_put.CopyFrom(self._put(op.request_put))
            elif which == "request_delete_range":
                out.response_delete_range.CopyFrom(self._delete(op.request_delete_range))
            elif which == "request_txn":
                out.response_txn.CopyFrom(self._txn(op.request_txn))
        return resp

    def _commit(self) -> list[Event]:
        """End the request being applied; returns its events (all at self.rev)."""
        events = self._events
        if events:
            self.rev += 1
        self._events = []
        self._sub = 0
        return events

    # ----- requests (what the server applies from the Raft log) -------------------

    def put(self, p: rpc_pb2.PutRequest) -> tuple[rpc_pb2.PutResponse, list[Event]]:
        self._check_put(p)
        resp = self._put(p)
        events = self._commit()
        resp.header.revision = self.rev
        return resp, events

    def delete_range(
        self, d: rpc_pb2.DeleteRangeRequest
    ) -> tuple[rpc_pb2.DeleteRangeResponse, list[Event]]:
        resp = self._delete(d)
        events = self._commit()
        resp.header.revision = self.rev
        return resp, events

    def txn(self, t: rpc_pb2.TxnRequest) -> tuple[rpc_pb2.TxnResponse, list[Event]]:
        ok = all(self._compare(c) for c in t.compare)
        self._check_ops(t.success if ok else t.failure)
        resp = self._txn(t)
        events = self._commit()
        resp.header.revision = self.rev
        _set_header_revs(resp, self.rev)
        return resp, events

    def compact(self, rev: int) -> None:
        if rev <= self.compact_rev:
            raise compacted_error()
        if rev > self.rev:
            raise future_rev_error()
        for key in list(self.sorted_keys):
            hist = self.history[key]
            i = bisect_right(hist, rev, key=lambda e: e[0])
            keep_from = i - 1 if i and hist[i - 1][2] is not None else i
            if keep_from > 0:
                del hist[:keep_from]
            if not hist:
                del self.history[key]
        self.sorted_keys = [k for k in self.sorted_keys if k in self.history]
        self.compact_rev = rev

    def lease_grant(self, lease_id: int, ttl: int) -> None:
        if lease_id <= 0:
            raise StoreError("INVALID_ARGUMENT", "etcdserver: lease ID must be positive")
        if lease_id in self.leases:
            raise StoreError("FAILED_PRECONDITION", "etcdserver: lease already exists")
        self.leases[lease_id] = Lease(lease_id, ttl)

    def lease_revoke(self, lease_id: int) -> list[Event]:
        lease = self.leases.get(lease_id)
        if lease is None:
            raise StoreError("NOT_FOUND", "etcdserver: requested lease not found")
        for key in sorted(lease.keys):
            prev = self.live.get(key)
            if prev is not None:
                self._write(None, key, kv_pb2.Event.DELETE, prev)
        del self.leases[lease_id]
        return self._commit()

    # ----- watch support -----------------------------------------------------------

    def events_since(self, start: bytes, end: bytes, from_rev: int) -> list[tuple[int, Event]]:
        """Past events in the key range with revision >= from_rev, in revision order."""
        if from_rev < self.compact_rev:
            raise compacted_error()
        out: list[tuple[int, int, Event]] = []
        for key in self._keys_in(start, end):
            hist = self.history[key]
            i = bisect_left(hist, from_rev, key=lambda e: e[0])
            prev = hist[i - 1][2] if i else None
            for main, sub, kv in hist[i:]:
                if kv is None:
                    ev = Event(kv_pb2.Event.DELETE, KV(key, 0, main, 0, b"", 0), prev, sub)
                else:
                    ev = Event(kv_pb2.Event.PUT, kv, prev, sub)
                out.append((main, sub, ev))
                prev = kv
        out.sort(key=lambda t: (t[0], t[1]))
        return [(main, ev) for main, _, ev in out]

    def hash_kv(self, rev: int = 0) -> int:
        """A checksum of all versions up to rev, equal on members with the same history."""
        rev = rev or self.rev
        self._check_rev(rev)
        h = 0
        for key in self.sorted_keys:
            for main, sub, kv in self.history[key]:
                if main > rev:
                    break
                h = zlib.crc32(key, h)
                h = zlib.crc32(b"%d.%d" % (main, sub), h)
                if kv is not None:
                    h = zlib.crc32(kv.value, h)
        return h

    # ----- snapshots ---------------------------------------------------------------

    def dump(self) -> bytes:
        hist = {
            k: [(m, s, tuple(kv) if kv is not None else None) for m, s, kv in h]
            for k, h in self.history.items()
        }
        leases = [(le.id, le.ttl) for le in self.leases.values()]
        return marshal.dumps((1, self.rev, self.compact_rev, hist, leases))

    @classmethod
    def load(cls, data: bytes) -> Store:
        fmt, rev, compact_rev, hist, leases = marshal.loads(data)
        if fmt != 1:
            raise ValueError(f"unknown store snapshot format {fmt}")
        s = cls()
        s.rev, s.compact_rev = rev, compact_rev
        for lid, ttl in leases:
            s.leases[lid] = Lease(lid, ttl)
        for key, entries in hist.items():
            h = [(m, sub, KV(*kv) if kv is not None else None) for m, sub, kv in entries]
            s.history[key] = h
            last = h[-1][2]
            if last is not None:
                s.live[key] = last
                if last.lease in s.leases:
                    s.leases[last.lease].keys.add(key)
        s.sorted_keys = sorted(s.history)
        return s


def _set_header_revs(resp: rpc_pb2.TxnResponse, rev: int) -> None:
    """Inner responses of a txn carry the txn's resulting revision, as etcd does."""
    for op in resp.responses:
        which = op.WhichOneof("response")
        if which is None:
            continue
        inner = getattr(op, which)
        inner.header.revision = rev
        if which == "response_txn":
            _set_header_revs(inner, rev)


_SORT_KEYS = {
    Range.KEY: lambda kv: kv.key,
    Range.VERSION: lambda kv: kv.version,
    Range.CREATE: lambda kv: kv.create_revision,
    Range.MOD: lambda kv: kv.mod_revision,
    Range.VALUE: lambda kv: kv.value,
}


def _passes_filters(kv: KV, r: rpc_pb2.RangeRequest) -> bool:
    if r.min_mod_revision and kv.mod_revision < r.min_mod_revision:
        return False
    if r.max_mod_revision and kv.mod_revision > r.max_mod_revision:
        return False
    if r.min_create_revision and kv.create_revision < r.min_create_revision:
        return False
    return not (r.max_create_revision and kv.create_revision > r.max_create_revision)


def _compare_one(c: rpc_pb2.Compare, kv: KV) -> bool:
    if c.target == Cmp.VALUE:
        have, want = kv.value, c.value
    elif c.target == Cmp.VERSION:
        have, want = kv.version, c.version
    elif c.target == Cmp.CREATE:
        have, want = kv.create_revision, c.create_revision
    elif c.target == Cmp.MOD:
        have, want = kv.mod_revision, c.mod_revision
    else:
        have, want = kv.lease, c.lease
    if c.result == Cmp.EQUAL:
        return have == want
    if c.result == Cmp.NOT_EQUAL:
        return have != want
    if c.result == Cmp.GREATER:
        return have > want
    return have < want
