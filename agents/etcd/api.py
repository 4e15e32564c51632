"""The etcd v3 gRPC services (KV, Watch, Lease, Cluster, Maintenance) over a Node."""

from __future__ import annotations

import asyncio
import time

import grpc

from agents.etcdapi import rpc_pb2, rpc_pb2_grpc

from . import raft, state
from .config import member_id
from .mvcc import StoreError, compacted_error
from .node import VERSION, Node, RequestError, no_leader
from .watch import NODELETE, NOPUT, Watcher, event_pb

SNAPSHOT_CHUNK = 32 * 1024
MIN_LEASE_TTL = 2  # etcd: ceil(1.5 * election timeout) with the default 1 s


async def _abort(context, e: Exception):
    code = grpc.StatusCode[getattr(e, "code", "UNKNOWN")]
    await context.abort(code, getattr(e, "message", str(e)))


class KV(rpc_pb2_grpc.KVServicer):
    def __init__(self, node: Node) -> None:
        self.node = node

    async def Range(self, request, context):
        n = self.node
        try:
            if not request.serializable:
                await n.read_barrier()
            resp = n.sm.store.range(request)
        except (RequestError, StoreError) as e:
            await _abort(context, e)
        n.header(resp.header)
        return resp

    async def _write(self, op, request, context):
        n = self.node
        try:
            resp = await n.propose(op, request)
        except RequestError as e:
            await _abort(context, e)
        h = resp.header
        h.cluster_id = n.cluster_id
        h.member_id = n.id
        h.raft_term = n.term
        return resp

    async def Put(self, request, context):
        return await self._write(state.OP_PUT, request, context)

    async def DeleteRange(self, request, context):
        return await self._write(state.OP_DELETE, request, context)

    async def Txn(self, request, context):
        if _txn_is_read_only(request):
            n = self.node
            try:
                await n.read_barrier()
                resp, _ = n.sm.store.txn(request)
            except (RequestError, StoreError) as e:
                await _abort(context, e)
            n.header(resp.header)
            return resp
        return await self._write(state.OP_TXN, request, context)

    async def Compact(self, request, context):
        return await self._write(state.OP_COMPACT, request, context)


def _txn_is_read_only(t: rpc_pb2.TxnRequest) -> bool:
    for op in list(t.success) + list(t.failure):
        which = op.WhichOneof("request")
        if which == "request_range":
            continue
        if which == "request_txn" and _txn_is_read_only(op.request_txn):
            continue
        return False
    return True


class Watch(rpc_pb2_grpc.WatchServicer):
    def __init__(self, node: Node) -> None:
        self.node = node

    async def Watch(self, request_iterator, context):
        n = self.node
        out: asyncio.Queue = asyncio.Queue()
        mine: dict[int, Watcher] = {}
        next_id = [0]

        def header(resp: rpc_pb2.WatchResponse) -> rpc_pb2.WatchResponse:
            n.header(resp.header)
            return resp

        def create(cr: rpc_pb2.WatchCreateRequest) -> None:
            wid = cr.watch_id if cr.watch_id else next_id[0]
            if wid in mine:
                out.put_nowait(header(rpc_pb2.WatchResponse(watch_id=wid, created=True, canceled=True,
                                                            cancel_reason="etcdserver: duplicate watch ID")))
                return
            next_id[0] = max(next_id[0], wid) + 1
            w = Watcher(wid, cr.key, cr.range_end, cr.prev_kv, NOPUT in cr.filters, NODELETE in cr.filters, out,
                        min_rev=cr.start_revision)
            store = n.sm.store
            out.put_nowait(header(rpc_pb2.WatchResponse(watch_id=wid, created=True)))
            if cr.start_revision and cr.start_revision <= store.rev:
                try:
                    past = store.events_since(cr.key, cr.range_end, cr.start_revision)
                except StoreError:
                    resp = rpc_pb2.WatchResponse(watch_id=wid, canceled=True, compact_revision=store.compact_rev,
                                                 cancel_reason=compacted_error().message)
                    out.put_nowait(header(resp))
                    return
                batch: list = []
                for rev, ev in past:
                    if w.wants(ev):
                        batch.append((rev, ev))
                for i in range(0, len(batch), 1000):
                    chunk = batch[i : i + 1000]
                    resp = rpc_pb2.WatchResponse(watch_id=wid, events=[event_pb(e, w.prev_kv) for _, e in chunk])
                    out.put_nowait(header(resp))
            mine[wid] = w
            n.watches.add(w)

        async def reader() -> None:
            try:
                async for req in request_iterator:
                    which = req.WhichOneof("request_union")
                    if which == "create_request":
                        create(req.create_request)
                    elif which == "cancel_request":
                        wid = req.cancel_request.watch_id
                        w = mine.pop(wid, None)
                        if w is not None:
                            n.watches.remove(w)
                        out.put_nowait(header(rpc_pb2.WatchResponse(watch_id=wid, canceled=True)))
                    elif which == "progress_request":
                        out.put_nowait(header(rpc_pb2.WatchResponse(watch_id=-1)))
            except (asyncio.CancelledError, grpc.RpcError):
                pass
            finally:
                out.put_nowait(None)

        md = dict(context.invocation_metadata() or ())
        if md.get("hasleader") == "true" and not n.leader:
            await context.abort(grpc.StatusCode.UNAVAILABLE, no_leader().message)
        task = asyncio.get_running_loop().create_task(reader())
        try:
            while True:
                item = await out.get()
                if item is None:
                    return
                if isinstance(item, tuple):
                    wid, rev, events = item
                    if wid not in mine:
                        continue
                    resp = rpc_pb2.WatchResponse(watch_id=wid, events=events)
                    n.header(resp.header, with_rev=False)
                    resp.header.revision = rev
                    yield resp
                else:
                    yield item
        finally:
            task.cancel()
            for w in mine.values():
                n.watches.remove(w)


class Lease(rpc_pb2_grpc.LeaseServicer):
    def __init__(self, node: Node) -> None:
        self.node = node

    async def LeaseGrant(self, request, context):
        n = self.node
        req = rpc_pb2.LeaseGrantRequest(ID=request.ID or (n.next_id() & ((1 << 62) - 1)) or 1,
                                        TTL=max(request.TTL, MIN_LEASE_TTL))
        try:
            resp = await n.propose(state.OP_LEASE_GRANT, req)
        except RequestError as e:
            await _abort(context, e)
        n.header(resp.header)
        return resp

    async def LeaseRevoke(self, request, context):
        n = self.node
        try:
            resp = await n.propose(state.OP_LEASE_REVOKE, rpc_pb2.LeaseRevokeRequest(ID=request.ID))
        except RequestError as e:
            await _abort(context, e)
        n.header(resp.header)
        return resp

    async def LeaseKeepAlive(self, request_iterator, context):
        n = self.node
        async for req in request_iterator:
            try:
                resp = await n.propose(state.OP_LEASE_RENEW, rpc_pb2.LeaseKeepAliveRequest(ID=req.ID))
            except RequestError as e:
                if e.code == "NOT_FOUND":
                    resp = rpc_pb2.LeaseKeepAliveResponse(ID=req.ID, TTL=0)
                else:
                    await _abort(context, e)
            n.header(resp.header)
            yield resp

    async def LeaseTimeToLive(self, request, context):
        n = self.node
        try:
            await n.read_barrier()
        except RequestError as e:
            await _abort(context, e)
        lease = n.sm.store.leases.get(request.ID)
        resp = rpc_pb2.LeaseTimeToLiveResponse(ID=request.ID, TTL=-1)
        if lease is not None:
            resp.TTL = n.lessor.remaining(request.ID)
            resp.grantedTTL = lease.ttl
            if request.keys:
                resp.keys.extend(sorted(lease.keys))
        n.header(resp.header)
        return resp

    async def LeaseLeases(self, request, context):
        n = self.node
        try:
            await n.read_barrier()
        except RequestError as e:
            await _abort(context, e)
        resp = rpc_pb2.LeaseLeasesResponse(leases=[rpc_pb2.LeaseStatus(ID=i) for i in sorted(n.sm.store.leases)])
        n.header(resp.header)
        return resp


class Cluster(rpc_pb2_grpc.ClusterServicer):
    def __init__(self, node: Node) -> None:
        self.node = node

    def _members(self):
        return [m.to_pb() for m in self.node.sm.members.values()]

    async def MemberList(self, request, context):
        n = self.node
        resp = rpc_pb2.MemberListResponse(members=self._members())
        n.header(resp.header, with_rev=False)
        return resp

    async def MemberAdd(self, request, context):
        n = self.node
        urls = list(request.peerURLs)
        for m in n.sm.members.values():
            if set(urls) & set(m.peer_urls):
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "etcdserver: Peer URLs already exists")
        mid = member_id(urls, n.cfg.initial_cluster_token + str(int(time.time())))
        member = state.Member(mid, "", urls, [], request.isLearner)
        kind = raft.ConfChangeType.ConfChangeAddLearnerNode if request.isLearner else raft.ConfChangeType.ConfChangeAddNode
        try:
            await n.change_membership(raft.ConfChange(kind, mid, state.encode_member(member)))
        except RequestError as e:
            await _abort(context, e)
        resp = rpc_pb2.MemberAddResponse(member=member.to_pb(), members=self._members())
        n.header(resp.header, with_rev=False)
        return resp

    async def MemberRemove(self, request, context):
        n = self.node
        if request.ID not in n.sm.members:
            await context.abort(grpc.StatusCode.NOT_FOUND, "etcdserver: member not found")
        try:
            await n.change_membership(raft.ConfChange(raft.ConfChangeType.ConfChangeRemoveNode, request.ID))
        except RequestError as e:
            await _abort(context, e)
        resp = rpc_pb2.MemberRemoveResponse(members=self._members())
        n.header(resp.header, with_rev=False)
        return resp

    async def MemberPromote(self, request, context):
        n = self.node
        m = n.sm.members.get(request.ID)
        if m is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "etcdserver: member not found")
        if not m.is_learner:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "etcdserver: can only promote a learner member")
        promoted = state.Member(m.id, m.name, m.peer_urls, m.client_urls, False)
        cc = raft.ConfChange(raft.ConfChangeType.ConfChangeAddNode, m.id, state.encode_member(promoted))
        try:
            await n.change_membership(cc)
        except RequestError as e:
            await _abort(context, e)
        resp = rpc_pb2.MemberPromoteResponse(members=self._members())
        n.header(resp.header, with_rev=False)
        return resp

    async def MemberUpdate(self, request, context):
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "member update is not supported by this member")


class Maintenance(rpc_pb2_grpc.MaintenanceServicer):
    def __init__(self, node: Node) -> None:
        self.node = node

    async def Status(self, request, context):
        n = self.node
        status = n.rn.raft
        resp = rpc_pb2.StatusResponse(
            version=VERSION,
            dbSize=_db_size(n),
            leader=n.leader,
            raftIndex=status.log.committed,
            raftTerm=n.term,
            raftAppliedIndex=n.applied,
            isLearner=n.id in n.conf.learners,
        )
        resp.dbSizeInUse = resp.dbSize
        if not n.leader:
            resp.errors.append(no_leader().message)
        n.header(resp.header)
        return resp

    async def Alarm(self, request, context):
        resp = rpc_pb2.AlarmResponse()
        self.node.header(resp.header)
        return resp

    async def Defragment(self, request, context):
        resp = rpc_pb2.DefragmentResponse()
        self.node.header(resp.header)
        return resp

    async def Hash(self, request, context):
        resp = rpc_pb2.HashResponse(hash=self.node.sm.store.hash_kv())
        self.node.header(resp.header)
        return resp

    async def HashKV(self, request, context):
        n = self.node
        try:
            h = n.sm.store.hash_kv(request.revision)
        except StoreError as e:
            await _abort(context, e)
        resp = rpc_pb2.HashKVResponse(hash=h, compact_revision=n.sm.store.compact_rev or -1)
        n.header(resp.header)
        return resp

    async def Snapshot(self, request, context):
        n = self.node
        blob = n.snapshot_blob()
        body, digest = blob[:-32], blob[-32:]
        total = len(body)
        for off in range(0, total, SNAPSHOT_CHUNK):
            chunk = body[off : off + SNAPSHOT_CHUNK]
            resp = rpc_pb2.SnapshotResponse(remaining_bytes=total - off - len(chunk), blob=chunk)
            n.header(resp.header)
            yield resp
        resp = rpc_pb2.SnapshotResponse(remaining_bytes=0, blob=digest)
        n.header(resp.header)
        yield resp

    async def MoveLeader(self, request, context):
        n = self.node
        try:
            await n.move_leader(request.targetID)
        except RequestError as e:
            await _abort(context, e)
        resp = rpc_pb2.MoveLeaderResponse()
        n.header(resp.header)
        return resp


def _db_size(n: Node) -> int:
    s = n.sm.store
    size = 0
    for key, hist in s.history.items():
        size += len(hist) * (len(key) + 40)
        for _, _, kv in hist:
            if kv is not None:
                size += len(kv.value)
    return size


def add_services(server, node: Node) -> None:
    rpc_pb2_grpc.add_KVServicer_to_server(KV(node), server)
    rpc_pb2_grpc.add_WatchServicer_to_server(Watch(node), server)
    rpc_pb2_grpc.add_LeaseServicer_to_server(Lease(node), server)
    rpc_pb2_grpc.add_ClusterServicer_to_server(Cluster(node), server)
    rpc_pb2_grpc.add_MaintenanceServicer_to_server(Maintenance(node), server)

