"""The replicated state machine: what a committed Raft entry does to the member.

Entry data is ``[u8 op][u64 request id][payload]``; the payload of a KV or lease op is
the etcd protobuf request itself. The request id lets the member that proposed an entry
hand the result back to the waiting client when it applies it (on any member: followers'
proposals are forwarded to the leader by Raft). Applying is deterministic; the only
member-local side effect is the lease clock (``on_lease``), which is not replicated.
"""

from __future__ import annotations

import marshal
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from agents.etcdapi import rpc_pb2

from .mvcc import Event, Store, StoreError

OP_PUT = 1
OP_DELETE = 2
OP_TXN = 3
OP_COMPACT = 4
OP_LEASE_GRANT = 5
OP_LEASE_REVOKE = 6
OP_LEASE_RENEW = 7
OP_MEMBER_ATTR = 8

REQUEST_TYPES = {
    OP_PUT: rpc_pb2.PutRequest,
    OP_DELETE: rpc_pb2.DeleteRangeRequest,
    OP_TXN: rpc_pb2.TxnRequest,
    OP_COMPACT: rpc_pb2.CompactionRequest,
    OP_LEASE_GRANT: rpc_pb2.LeaseGrantRequest,
    OP_LEASE_REVOKE: rpc_pb2.LeaseRevokeRequest,
    OP_LEASE_RENEW: rpc_pb2.LeaseKeepAliveRequest,
}

HEAD = struct.Struct("<BQ")


def encode_entry(op: int, req_id: int, payload: bytes) -> bytes:
    return HEAD.pack(op, req_id) + payload


def decode_head(data: bytes) -> tuple[int, int]:
    return HEAD.unpack_from(data)


@dataclass
class Member:
    id: int
    name: str
    peer_urls: list[str]
    client_urls: list[str] = field(default_factory=list)
    is_learner: bool = False

    def to_pb(self) -> rpc_pb2.Member:
        return rpc_pb2.Member(
            ID=self.id,
            name=self.name,
            peerURLs=self.peer_urls,
            clientURLs=self.client_urls,
            isLearner=self.is_learner,
        )

    def to_tuple(self) -> tuple:
        return (self.id, self.name, list(self.peer_urls), list(self.client_urls), self.is_learner)


def encode_member(m: Member) -> bytes:
    return marshal.dumps(m.to_tuple())


def decode_member(data: bytes) -> Member:
    mid, name, peers, clients, learner = marshal.loads(data)
    return Member(mid, name, list(peers), list(clients), learner)


class StateMachine:
    """Store + membership; ``apply`` takes committed entry data, returns (result, events)."""

    def __init__(self, on_lease: Callable[[str, int, int], None] | None = None) -> None:
        self.store = Store()
        self.members: dict[int, Member] = {}
        self.removed: set[int] = set()
        self.on_lease = on_lease or (lambda what, lease_id, ttl: None)

    def apply(self, data: bytes, request=None) -> tuple[object, list[Event]]:
        """Apply one entry; ``request`` is the already-decoded payload when the proposer
        still has it (saves parsing it again). Errors come back as the result."""
        op, _ = HEAD.unpack_from(data)
        if op == OP_MEMBER_ATTR:
            m = decode_member(data[HEAD.size :])
            known = self.members.get(m.id)
            if known is not None:
                known.name, known.client_urls = m.name, m.client_urls
            return None, []
        cls = REQUEST_TYPES.get(op)
        if cls is None:
            return StoreError("INTERNAL", f"unknown entry op {op}"), []
        if request is None:
            request = cls()
            request.ParseFromString(data[HEAD.size :])
        s = self.store
        try:
            if op == OP_PUT:
                return s.put(request)
            if op == OP_DELETE:
                return s.delete_range(request)
            if op == OP_TXN:
                return s.txn(request)
            if op == OP_COMPACT:
                s.compact(request.revision)
                resp = rpc_pb2.CompactionResponse()
                resp.header.revision = s.rev
                return resp, []
            if op == OP_LEASE_GRANT:
                s.lease_grant(request.ID, request.TTL)
                self.on_lease("grant", request.ID, request.TTL)
                resp = rpc_pb2.LeaseGrantResponse(ID=request.ID, TTL=request.TTL)
                resp.header.revision = s.rev
                return resp, []
            if op == OP_LEASE_REVOKE:
                events = s.lease_revoke(request.ID)
                self.on_lease("revoke", request.ID, 0)
                resp = rpc_pb2.LeaseRevokeResponse()
                resp.header.revision = s.rev
                return resp, events
            # OP_LEASE_RENEW
            lease = s.leases.get(request.ID)
            if lease is None:
                raise StoreError("NOT_FOUND", "etcdserver: requested lease not found")
            self.on_lease("renew", request.ID, lease.ttl)
            resp = rpc_pb2.LeaseKeepAliveResponse(ID=request.ID, TTL=lease.ttl)
            resp.header.revision = s.rev
            return resp, []
        except StoreError as e:
            return e, []

    # ----- membership (applied from Raft conf-change entries) ------------------------

    def add_member(self, m: Member) -> None:
        self.members[m.id] = m

    def remove_member(self, member_id: int) -> None:
        self.members.pop(member_id, None)
        self.removed.add(member_id)

    def promote_member(self, member_id: int) -> None:
        if member_id in self.members:
            self.members[member_id].is_learner = False

    # ----- snapshots ---------------------------------------------------------------

    def dump(self) -> bytes:
        members = [m.to_tuple() for m in self.members.values()]
        return marshal.dumps((1, self.store.dump(), members, sorted(self.removed)))

    def load(self, data: bytes) -> None:
        fmt, store, members, removed = marshal.loads(data)
        if fmt != 1:
            raise ValueError(f"unknown state snapshot format {fmt}")
        self.store = Store.load(store)
        self.members = {}
        for t in members:
            m = Member(t[0], t[1], list(t[2]), list(t[3]), t[4])
            self.members[m.id] = m
        self.removed = set(removed)
        for lease in self.store.leases.values():
            self.on_lease("grant", lease.id, lease.ttl)
