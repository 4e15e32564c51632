"""The member: Raft core + WAL + snapshots + state machine, driven by one asyncio loop.

Loop rules (the RawNode contract, see agents.etcd.raft.rawnode):
- Peer messages and client proposals are queued and fed to the core only by the loop,
  never between ``ready()`` and ``advance()``.
- A Ready is handled in order: persist (snapshot, entries, hard state; fdatasync in a
  worker thread so clients keep queueing proposals meanwhile — the next Ready carries
  them all: group commit), then send messages, then apply committed entries, then
  answer reads whose read index is applied.
- A client waits on its request id; whichever member applies the entry answers it.
- Every ``snapshot_count`` applied entries the state is snapshotted and the WAL is
  rewritten to hold only what follows.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import marshal
import os
import random
import ssl
import struct
import time
from collections import OrderedDict

from agents.etcdapi import rpc_pb2

from . import peer, raft, snapfile, state, wal
from .config import Config, cluster_id, host_port, member_id
from .lessor import Lessor
from .log import Logger
from .metrics import Metrics
from .mvcc import StoreError
from .peer import Transport
from .watch import WatchHub

VERSION = "3.4.23"


class RequestError(Exception):
    """A client-visible error: gRPC status code name + etcd's message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class JoinError(Exception):
    """A member started with --initial-cluster-state existing cannot join."""


def no_leader() -> RequestError:
    return RequestError("UNAVAILABLE", "etcdserver: no leader")


def timed_out() -> RequestError:
    return RequestError("UNAVAILABLE", "etcdserver: request timed out")


class Node:
    def __init__(self, cfg: Config, log: Logger | None = None) -> None:
        self.cfg = cfg
        self.log = log or Logger(cfg.name)
        self.metrics = Metrics()
        initial = cfg.initial_members()
        self.id = member_id(initial[cfg.name], cfg.initial_cluster_token)
        self.cluster_id = cluster_id([member_id(u, cfg.initial_cluster_token) for u in initial.values()])
        self.lessor = Lessor()
        self.sm = state.StateMachine(on_lease=self.lessor.on_apply)
        self.watches = WatchHub()
        self.tick_s = cfg.heartbeat_interval / 1000.0
        self.request_timeout = 5.0 + 2 * cfg.election_timeout / 1000.0
        self.member_dir = os.path.join(cfg.data_dir, "member")
        self.snaps = snapfile.SnapDir(os.path.join(self.member_dir, "snap"))
        self.wal_dir = os.path.join(self.member_dir, "wal")
        self.wal: wal.Wal | None = None
        self.storage = raft.MemoryStorage()
        self.rn: raft.RawNode | None = None
        self.applied = 0
        self.snap_index = 0
        self.term = 0
        self.leader = 0
        self.is_leader = False
        self.conf = raft.ConfState()
        # proposals and reads
        id_seed = (self.id & 0xFFFF) << 47 | (int(time.time() * 1000) & ((1 << 40) - 1)) << 7
        self._ids = itertools.count(id_seed & ((1 << 63) - 1))
        self.waiters: OrderedDict[int, tuple[asyncio.Future, object, float]] = OrderedDict()
        self.conf_waiters: dict[int, asyncio.Future] = {}
        self.proposals: list[bytes] = []
        self.inbox: list[raft.Message] = []
        self.read_waiters: list[asyncio.Future] = []  # not yet given a read index
        self.read_pending: dict[bytes, tuple[list[asyncio.Future], float]] = {}
        self.read_ready: list[tuple[int, list[asyncio.Future]]] = []  # (index, futures)
        self.conf_proposals: list[raft.ConfChange] = []
        self.transfer_to = 0
        # The loop sleeps on _waiter (a bare future: cheaper than Event + wait_for);
        # _woken records a wake-up that came while it was busy.
        self._waiter: asyncio.Future | None = None
        self._woken = False
        self._stopped = False
        self.transport: Transport | None = None
        self.fsync_in_thread = True
        self._inline_fsyncs = 0
        self._quiet_fsyncs = 0
        self.proposed = 0  # proposals made here so far (for the fsync mode choice)
        # Adaptive batching: see _hold_proposals.
        self.max_hold_s = float(os.environ.get("LABETCD_MAX_HOLD_MS", "20")) / 1000.0
        self.held_props: list[raft.Message] = []  # peers' forwarded proposals (leader)
        self._hold_since = 0.0
        self._last_submitted = -1  # request id of the newest proposal handed to Raft
        self.leader_changed: asyncio.Event | None = None

    # ----- start-up ------------------------------------------------------------------

    def recover(self) -> None:
        """Load the newest snapshot and the WAL; create the Raft node."""
        os.makedirs(self.member_dir, exist_ok=True)
        snap = self.snaps.load_newest()
        contents = wal.read_wal(self.wal_dir)
        if contents.truncated_bytes:
            self.log.warn("WAL had a torn tail; cut it off", bytes=contents.truncated_bytes)
        rcfg = raft.Config(
            id=self.id,
            election_tick=max(2, self.cfg.election_timeout // self.cfg.heartbeat_interval),
            heartbeat_tick=1,
            pre_vote=True,
            check_quorum=True,
            max_size_per_msg=1 << 20,
        )
        if not self.sm.members:
            for name, urls in self.cfg.initial_members().items():
                mid = member_id(urls, self.cfg.initial_cluster_token)
                self.sm.add_member(state.Member(mid, name, urls))
        fresh = snap is None and not contents.entries and contents.hard_state is None
        if fresh:
            self.wal = wal.Wal(self.wal_dir)
            peers = None
            if self.cfg.initial_cluster_state == "new":
                peers = sorted(self.sm.members)
            self.rn = raft.RawNode(rcfg, self.storage, peers=peers)
            self.log.info("starting a new member", id=f"{self.id:x}", cluster=f"{self.cluster_id:x}",
                          state=self.cfg.initial_cluster_state)
            return
        if snap is not None:
            meta = raft.SnapshotMeta(snap.index, snap.term, raft.ConfState(snap.voters, snap.learners))
            self.storage.apply_snapshot(raft.Snapshot(meta, snap.data))
            self.sm.load(snap.data)
            self.applied = self.snap_index = snap.index
            self.conf = meta.conf_state
            rcfg.applied = snap.index
        ents = [raft.Entry(t, i, raft.EntryType(et), d) for i, t, et, d in contents.entries if i > self.snap_index]
        if ents:
            self.storage.append(ents)
        if contents.hard_state is not None:
            term, vote, commit = contents.hard_state
            self.storage.set_hard_state(raft.HardState(term, vote, max(commit, self.snap_index)))
        self.wal = wal.Wal(self.wal_dir)
        self.rn = raft.RawNode(rcfg, self.storage)
        self.log.info("restarted member", id=f"{self.id:x}", snapshot_index=self.snap_index,
                      wal_entries=len(ents), last_index=self.storage.last_index())

    def _identity_path(self) -> str:
        return os.path.join(self.member_dir, "identity")

    def _load_identity(self) -> bool:
        """Our member and cluster IDs as first decided (they must never change)."""
        try:
            with open(self._identity_path(), "rb") as f:
                self.id, self.cluster_id = marshal.loads(f.read())
            return True
        except FileNotFoundError:
            return False

    def _save_identity(self) -> None:
        os.makedirs(self.member_dir, exist_ok=True)
        snapfile.write_atomic(self._identity_path(), marshal.dumps((self.id, self.cluster_id)))

    def membership_answer(self) -> bytes:
        return marshal.dumps((self.cluster_id, [m.to_tuple() for m in self.sm.members.values()]))

    async def _join(self, client_ssl) -> None:
        """--initial-cluster-state existing on a fresh data dir: ask a running member for
        the membership; our ID is the one `member add` gave our peer URLs."""
        mine = set(self.cfg.initial_advertise_peer_urls)
        urls = [u for urls in self.cfg.initial_members().values() for u in urls if u not in mine]
        deadline = time.monotonic() + 30
        while True:
            for url in urls:
                host, port, _ = host_port(url, "--initial-cluster")
                try:
                    answer = await peer.query_membership(host, port, client_ssl)
                except (OSError, TimeoutError, asyncio.IncompleteReadError, ssl.SSLError):
                    continue
                cid, members = marshal.loads(answer)
                for t in members:
                    if set(t[2]) & mine:
                        self.id, self.cluster_id = t[0], cid
                        self.sm.members = {}
                        for t2 in members:
                            self.sm.add_member(state.Member(t2[0], t2[1], list(t2[2]), list(t2[3]), t2[4]))
                        return
                raise JoinError(
                    f"the cluster at {url} has no member with peer URLs {sorted(mine)}: "
                    "run `etcdctl member add` for this member first"
                )
            if time.monotonic() > deadline:
                raise JoinError(f"cannot reach any member of --initial-cluster {urls} to join")
            await asyncio.sleep(0.5)

    async def start(self) -> None:
        self.leader_changed = asyncio.Event()
        server_ssl, client_ssl = _peer_ssl(self.cfg)
        if not self._load_identity():
            fresh = not os.path.isdir(self.wal_dir) or not os.listdir(self.wal_dir)
            if fresh and self.cfg.initial_cluster_state == "existing":
                await self._join(client_ssl)
            self._save_identity()
        self.recover()
        self.transport = Transport(self.id, self._on_peer_message, self._on_unreachable, server_ssl, client_ssl)
        self.transport.membership = self.membership_answer
        for url in self.cfg.listen_peer_urls:
            host, port, _ = host_port(url, "--listen-peer-urls")
            await self.transport.listen(host, port)
        self._sync_peers()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._run()),
            loop.create_task(self._publish()),
            loop.create_task(self._lease_expiry()),
        ]

    def _sync_peers(self) -> None:
        for m in self.sm.members.values():
            if m.id != self.id and m.peer_urls:
                host, port, _ = host_port(m.peer_urls[0], "peer URL")
                self.transport.set_peer(m.id, host, port)
        for pid in list(self.transport.links):
            if pid not in self.sm.members:
                self.transport.remove_peer(pid)

    async def stop(self) -> None:
        self._stopped = True
        self.wake()
        for t in getattr(self, "_tasks", []):
            t.cancel()
        if self.transport:
            await self.transport.close()
        if self.wal:
            self.wal.close()

    # ----- inputs --------------------------------------------------------------------

    def wake(self) -> None:
        self._woken = True
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _on_peer_message(self, m: raft.Message) -> None:
        self.inbox.append(m)
        self.wake()

    def _on_unreachable(self, peer_id: int) -> None:
        self.inbox.append(raft.Message(raft.MessageType.MsgUnreachable, from_=peer_id))
        self.wake()

    def next_id(self) -> int:
        return next(self._ids)

    async def propose(self, op: int, request, payload: bytes | None = None):
        """Replicate a request; returns the state machine's response (or raises)."""
        if self.leader == 0:
            self.metrics.inc("etcd_server_proposals_failed_total")
            raise no_leader()
        req_id = self.next_id()
        if payload is None:
            payload = request.SerializeToString()
        fut = asyncio.get_running_loop().create_future()
        self.waiters[req_id] = (fut, request, time.monotonic() + self.request_timeout)
        self.proposals.append(state.encode_entry(op, req_id, payload))
        self.proposed += 1
        if not self._hold_since:  # while holding, the commit (or the hold's end) wakes the loop
            self.wake()
        result = await fut
        if isinstance(result, StoreError):
            raise RequestError(result.code, result.message)
        return result

    async def read_barrier(self) -> None:
        """Wait until this member has applied everything committed before now (ReadIndex)."""
        if self.leader == 0:
            raise no_leader()
        fut = asyncio.get_running_loop().create_future()
        self.read_waiters.append(fut)
        self.wake()
        await fut

    async def change_membership(self, cc: raft.ConfChange) -> None:
        if self.leader == 0:
            raise no_leader()
        fut = asyncio.get_running_loop().create_future()
        self.conf_waiters[cc.node_id] = fut
        self.conf_proposals.append(cc)
        self.wake()
        try:
            await asyncio.wait_for(fut, self.request_timeout)
        except TimeoutError:
            raise timed_out() from None
        finally:
            self.conf_waiters.pop(cc.node_id, None)

    async def move_leader(self, target: int) -> None:
        if not self.is_leader:
            raise RequestError("FAILED_PRECONDITION", "etcdserver: not leader")
        if target not in self.conf.voters:
            raise RequestError("FAILED_PRECONDITION", "etcdserver: bad leader transferee")
        self.transfer_to = target
        self.wake()
        deadline = time.monotonic() + max(3.0, 3 * self.cfg.election_timeout / 1000.0)
        while self.leader != target:
            if time.monotonic() > deadline:
                raise RequestError("DEADLINE_EXCEEDED", "etcdserver: leadership transfer timed out")
            self.leader_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.leader_changed.wait(), 0.2)

    # ----- the loop ------------------------------------------------------------------

    async def _run(self) -> None:
        next_tick = time.monotonic() + self.tick_s
        rn = self.rn
        loop = asyncio.get_running_loop()
        # Like etcd, fast-forward the election clock at start: the first election (or
        # the one after a restart) comes after 1..election_tick ticks, not 1x-2x more.
        for _ in range(rn.raft.election_timeout - 1):
            rn.tick()
        while not self._stopped:
            wake_at = next_tick
            if self._hold_since:
                wake_at = min(wake_at, self._hold_since + self.max_hold_s)
            if not self._woken and wake_at > time.monotonic():
                self._waiter = fut = loop.create_future()
                timer = loop.call_at(wake_at, _resolve, fut)
                await fut
                timer.cancel()
                self._waiter = None
            # Let every client handler that is ready run first: their proposals join
            # this batch instead of each costing a loop iteration of its own.
            await asyncio.sleep(0)
            self._woken = False
            self.metrics.counters["labetcd_loop_iterations_total"] += 1
            now = time.monotonic()
            if now >= next_tick:
                rn.tick()
                if not self.leader and rn.raft.trk.voters == {self.id}:
                    rn.campaign()  # alone: no one to wait for
                next_tick = max(next_tick + self.tick_s, now)
                self._expire_waiters(now)
            try:
                self._feed(rn)
                while rn.has_ready():
                    rd = rn.ready()
                    try:
                        await self._handle_ready(rd)
                    finally:
                        rn.advance(rd)
                    self._feed(rn)
                self._maybe_snapshot()
            except Exception as e:  # a bug must not silently stop the member
                self.log.error("raft loop failed", error=repr(e))
                raise

    def _hold_proposals(self, rn: raft.RawNode) -> bool:
        """Should new proposals wait for the batch in flight? (adaptive batching)

        While a batch of proposals is being replicated, new ones are held and go out
        together when it commits (or after max_hold_s, in case that batch was lost).
        Under load this makes one append, one fsync per member and one message per
        peer serve many requests: per request the members spend far less CPU, which
        is what bounds throughput here. A lone client never waits: nothing is in
        flight when its request comes. Durability is unchanged (same Raft, same fsync
        before acknowledging); only when proposals enter the log changes.
        """
        if not self.max_hold_s:
            return False
        now = time.monotonic()
        if self._hold_since and now - self._hold_since >= self.max_hold_s:
            return False
        if self.is_leader:
            log = rn.raft.log
            busy = log.last_index() > log.committed
        else:  # a follower forwards: wait for its previous batch to come back applied
            busy = self._last_submitted in self.waiters
        if busy and not self._hold_since:
            self._hold_since = now
        return busy

    def _feed(self, rn: raft.RawNode) -> None:
        hold = None
        if self.inbox:
            inbox, self.inbox = self.inbox, []
            for m in inbox:
                t = m.type
                if t == raft.MessageType.MsgUnreachable:
                    rn.report_unreachable(m.from_)
                    continue
                if t == raft.MessageType.MsgProp and self.is_leader:
                    if hold is None:
                        hold = self._hold_proposals(rn)
                    if hold:
                        self.held_props.append(m)
                        continue
                with contextlib.suppress(raft.ProposalDropped, ValueError):
                    rn.step(m)
        if self.held_props or self.proposals:
            if hold is None:
                hold = self._hold_proposals(rn)
            if not hold:
                self._hold_since = 0.0
                self._submit(rn)
        if self.conf_proposals:
            ccs, self.conf_proposals = self.conf_proposals, []
            for cc in ccs:
                try:
                    rn.propose_conf_change(cc)
                except raft.ProposalDropped as e:
                    fut = self.conf_waiters.get(cc.node_id)
                    if fut is not None and not fut.done():
                        fut.set_exception(RequestError("UNAVAILABLE", f"etcdserver: {e}"))
        if self.transfer_to:
            with contextlib.suppress(raft.ProposalDropped):  # leadership just lost: move_leader times out
                rn.transfer_leader(self.transfer_to)
            self.transfer_to = 0
        if self.read_waiters:
            ctx = struct.pack("<Q", self.next_id())
            self.read_pending[ctx] = (self.read_waiters, time.monotonic())
            self.read_waiters = []
            # An election may have started in this very iteration (a tick, a peer's
            # message) before the soft state told us: the reads stay pending and are
            # asked again once there is a leader (_expire_waiters).
            with contextlib.suppress(raft.ProposalDropped):
                rn.read_index(ctx)

    def _submit(self, rn: raft.RawNode) -> None:
        """Hand held and new proposals to Raft (peers' forwarded ones first)."""
        if self.held_props:
            held, self.held_props = self.held_props, []
            for m in held:
                with contextlib.suppress(raft.ProposalDropped, ValueError):
                    rn.step(m)
        if self.proposals:
            props, self.proposals = self.proposals, []
            self.metrics.inc("labetcd_proposal_batches_total")
            try:
                rn.propose_many(props)
                self._last_submitted = state.HEAD.unpack_from(props[-1])[1]
            except raft.ProposalDropped:
                self._fail_proposals(props, no_leader())

    def _fail_proposals(self, props: list[bytes], err: RequestError) -> None:
        for data in props:
            _, req_id = state.decode_head(data)
            w = self.waiters.pop(req_id, None)
            if w is not None and not w[0].done():
                w[0].set_exception(err)
                self.metrics.inc("etcd_server_proposals_failed_total")

    def _expire_waiters(self, now: float) -> None:
        while self.waiters:
            req_id, (fut, _, deadline) = next(iter(self.waiters.items()))
            if deadline > now:
                break
            del self.waiters[req_id]
            if not fut.done():
                fut.set_exception(timed_out())
                self.metrics.inc("etcd_server_proposals_failed_total")
        # reads that got no read index (leader lost the message or changed): ask again
        for ctx, (futs, since) in list(self.read_pending.items()):
            if now - since > self.request_timeout:
                del self.read_pending[ctx]
                for f in futs:
                    if not f.done():
                        f.set_exception(timed_out())
            elif now - since > 0.5 and self.leader:
                del self.read_pending[ctx]
                self.read_waiters.extend(futs)

    async def _handle_ready(self, rd: raft.Ready) -> None:
        if rd.soft_state is not None:
            self._on_soft_state(rd.soft_state)
        # 0. A leader sends appends and heartbeats before its own fsync (etcd does too,
        # Raft thesis 10.2.1): the two fsyncs run in parallel instead of one after the
        # other (the transport hands them to the sockets at once, not when the loop is
        # free again). Safe because replies are only stepped after this Ready is
        # persisted, so no commit can count our own entries before they are on disk.
        late = rd.messages
        if self.is_leader and late:
            early = [m for m in late if m.type in _EARLY]
            if early:
                self.transport.send(early)
                late = [m for m in late if m.type not in _EARLY]
        # 1. persist
        w = self.wal
        if rd.snapshot is not None and not rd.snapshot.is_empty():
            self._save_received_snapshot(rd.snapshot)
        for e in rd.entries:
            w.append(wal.encode_entry(e.index, e.term, int(e.type), e.data))
        if rd.hard_state is not None:
            hs = rd.hard_state
            w.append(wal.encode_hard_state(hs.term, hs.vote, hs.commit))
            self.term = hs.term
        if w.write() and rd.must_sync:
            t0 = time.monotonic()
            if self.fsync_in_thread or self._inline_fsyncs >= 16:
                # In a worker thread, the loop keeps taking client requests meanwhile and
                # they all join the next batch (group commit). If hardly any arrive, the
                # load is light: go back to fsync on the loop, which saves two GIL
                # hand-offs per write (measured on one member: 64 clients 450-780 puts/s
                # threaded vs 110-220 on the loop; 1 client p50 2.5-3.5 ms on the loop vs
                # 6.5-9 ms threaded). Every 16th fsync is threaded to notice load rising;
                # eight quiet threaded ones in a row mean it fell.
                before = self.proposed
                await asyncio.get_running_loop().run_in_executor(None, w.sync)
                if self.proposed - before >= 2:
                    self.fsync_in_thread, self._quiet_fsyncs = True, 0
                else:
                    self._quiet_fsyncs += 1
                    if self._quiet_fsyncs >= 8:  # several quiet ones in a row: light load
                        self.fsync_in_thread = False
                self._inline_fsyncs = 0
                self.metrics.inc("labetcd_wal_fsync_threaded_total")
            else:
                w.sync()
                self._inline_fsyncs += 1
                self.metrics.inc("labetcd_wal_fsync_inline_total")
            self.metrics.wal_fsync.observe(time.monotonic() - t0)
        if rd.entries:
            self.storage.append(rd.entries)
        if rd.hard_state is not None:
            self.storage.set_hard_state(rd.hard_state)
        # 2. send
        if late:
            self.transport.send(late)
        # 3. apply
        if rd.snapshot is not None and not rd.snapshot.is_empty():
            self._apply_snapshot(rd.snapshot)
        if rd.committed_entries:
            t0 = time.monotonic()
            self._apply(rd.committed_entries)
            self.metrics.apply.observe(time.monotonic() - t0)
        # 4. reads
        for rs in rd.read_states:
            pending = self.read_pending.pop(rs.request_ctx, None)
            if pending is not None:
                self.read_ready.append((rs.index, pending[0]))
        if self.read_ready:
            still = []
            for index, futs in self.read_ready:
                if index <= self.applied:
                    for f in futs:
                        if not f.done():
                            f.set_result(None)
                else:
                    still.append((index, futs))
            self.read_ready = still

    def _on_soft_state(self, ss: raft.SoftState) -> None:
        was_leader = self.is_leader
        if ss.lead != self.leader:
            if ss.lead:
                self.metrics.inc("etcd_server_leader_changes_seen_total")
            self.log.info("leader changed", leader=f"{ss.lead:x}", term=self.rn.raft.term)
            self.leader = ss.lead
            self.leader_changed.set()
        self.is_leader = ss.raft_state == raft.StateType.StateLeader
        self.metrics.gauges["etcd_server_has_leader"] = int(bool(self.leader))
        self.metrics.gauges["etcd_server_is_leader"] = int(self.is_leader)
        if self.is_leader and not was_leader:
            self.lessor.promote()
        if not self.leader:
            # Nobody can commit our proposals now: fail fast instead of timing out. Like
            # etcd's ErrLeaderChanged, the outcome is unknown to the client (an entry the
            # old leader already replicated may still commit).
            for req_id in list(self.waiters):
                fut = self.waiters.pop(req_id)[0]
                if not fut.done():
                    fut.set_exception(RequestError("UNAVAILABLE", "etcdserver: leader changed"))
                    self.metrics.inc("etcd_server_proposals_failed_total")

    def _apply(self, entries: list[raft.Entry]) -> None:
        sm = self.sm
        waiters = self.waiters
        notify = self.watches.notify
        committed = 0
        for e in entries:
            if e.index <= self.applied:
                continue
            if e.type == raft.EntryType.EntryConfChange:
                self._apply_conf_change(e)
            elif e.data:
                _, req_id = state.HEAD.unpack_from(e.data)
                w = waiters.pop(req_id, None)
                result, events = sm.apply(e.data, w[1] if w is not None else None)
                if events:
                    notify(sm.store.rev, events)
                if w is not None and not w[0].done():
                    w[0].set_result(result)
                committed += 1
            self.applied = e.index
        self.metrics.inc("etcd_server_proposals_committed_total", committed)
        self.metrics.inc("etcd_server_proposals_applied_total", committed)

    def _apply_conf_change(self, e: raft.Entry) -> None:
        cc = raft.ConfChange.decode(e.data)
        if cc.node_id in self.sm.removed and cc.type != raft.ConfChangeType.ConfChangeRemoveNode:
            return
        self.conf = self.rn.apply_conf_change(cc)
        T = raft.ConfChangeType
        if cc.type in (T.ConfChangeAddNode, T.ConfChangeAddLearnerNode):
            if cc.context:
                m = state.decode_member(cc.context)
                known = self.sm.members.get(m.id)
                if known is not None and not m.is_learner and cc.type == T.ConfChangeAddNode:
                    self.sm.promote_member(m.id)
                else:
                    self.sm.add_member(m)
        elif cc.type == T.ConfChangeRemoveNode:
            self.sm.remove_member(cc.node_id)
            if cc.node_id == self.id:
                # Like etcd: a removed member stops (it would only disturb the others).
                self.log.warn("this member was removed from the cluster; stopping")
                self._stopped = True
        self._sync_peers()
        fut = self.conf_waiters.get(cc.node_id)
        if fut is not None and not fut.done():
            fut.set_result(None)
        self.log.info("membership changed", change=cc.type.name, changed_member=f"{cc.node_id:x}",
                      voters=[f"{v:x}" for v in self.conf.voters])

    # ----- snapshots -----------------------------------------------------------------

    def _snapshot_file(self, index: int, term: int) -> snapfile.SnapshotFile:
        return snapfile.SnapshotFile(index, term, tuple(self.conf.voters), tuple(self.conf.learners),
                                     self.sm.dump())

    def snapshot_blob(self) -> bytes:
        """The whole state as `etcdctl snapshot save` receives it."""
        term = self.storage.term(self.applied) if self.applied >= self.storage.first_index() - 1 else self.term
        return snapfile.encode(self._snapshot_file(self.applied, term))

    def _maybe_snapshot(self) -> None:
        if self.applied - self.snap_index < self.cfg.snapshot_count:
            return
        index = self.applied
        term = self.storage.term(index)
        sf = self._snapshot_file(index, term)
        self.snaps.save(sf)
        self.storage.create_snapshot(index, self.conf, sf.data)
        # keep some entries so slow followers can catch up without a snapshot
        keep_from = max(self.storage.first_index(), index - min(5000, self.cfg.snapshot_count))
        if keep_from > self.storage.first_index():
            self.storage.compact(keep_from - 1)
        self._rewrite_wal()
        self.snap_index = index
        self.log.info("saved snapshot", index=index, term=term)

    def _rewrite_wal(self) -> None:
        records = []
        hs = self.storage.hard_state
        first = self.storage.first_index()
        last = self.storage.last_index()
        if last >= first:
            for e in self.storage.entries(first, last + 1):
                records.append(wal.encode_entry(e.index, e.term, int(e.type), e.data))
        records.append(wal.encode_hard_state(hs.term, hs.vote, hs.commit))
        self.wal.rewrite(records)

    def _save_received_snapshot(self, snap: raft.Snapshot) -> None:
        meta = snap.metadata
        sf = snapfile.SnapshotFile(meta.index, meta.term, tuple(meta.conf_state.voters),
                                   tuple(meta.conf_state.learners), snap.data)
        self.snaps.save(sf)
        self.storage.apply_snapshot(snap)
        self.snap_index = meta.index
        self._rewrite_wal()

    def _apply_snapshot(self, snap: raft.Snapshot) -> None:
        self.sm.load(snap.data)
        self.applied = snap.metadata.index
        self.conf = snap.metadata.conf_state
        self._sync_peers()
        self.log.info("applied snapshot from leader", index=self.applied)

    # ----- background tasks ------------------------------------------------------------

    async def _publish(self) -> None:
        """Make our name and client URLs known to the cluster (etcd's publish)."""
        me = state.Member(self.id, self.cfg.name, self.cfg.initial_advertise_peer_urls,
                          self.cfg.advertise_client_urls)
        while not self._stopped:
            known = self.sm.members.get(self.id)
            if known is not None and known.client_urls == me.client_urls and known.name == me.name:
                return
            if self.leader:
                try:
                    me.peer_urls = known.peer_urls if known else me.peer_urls
                    await self.propose(state.OP_MEMBER_ATTR, None, state.encode_member(me))
                    continue
                except RequestError:
                    pass
            await asyncio.sleep(0.1 + random.random() * 0.1)

    async def _lease_expiry(self) -> None:
        while not self._stopped:
            await asyncio.sleep(0.25)
            if not self.is_leader:
                continue
            for lease_id in self.lessor.expired():
                req = rpc_pb2.LeaseRevokeRequest(ID=lease_id)
                asyncio.get_running_loop().create_task(self._revoke_quietly(req))

    async def _revoke_quietly(self, req) -> None:
        try:
            await self.propose(state.OP_LEASE_REVOKE, req)
            self.log.info("lease expired and revoked", lease=f"{req.ID:x}")
        except RequestError:
            pass

    # ----- status --------------------------------------------------------------------

    def header(self, h: rpc_pb2.ResponseHeader, with_rev: bool = True) -> None:
        h.cluster_id = self.cluster_id
        h.member_id = self.id
        h.raft_term = self.term
        if with_rev:
            h.revision = self.sm.store.rev


_EARLY = frozenset({raft.MessageType.MsgApp, raft.MessageType.MsgHeartbeat, raft.MessageType.MsgSnap})


def _resolve(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


def _peer_ssl(cfg: Config):
    import ssl

    if not cfg.peer_cert_file:
        return None, None
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cfg.peer_cert_file, cfg.peer_key_file)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_cert_chain(cfg.peer_cert_file, cfg.peer_key_file)
    client.check_hostname = False
    if cfg.peer_trusted_ca_file:
        client.load_verify_locations(cfg.peer_trusted_ca_file)
        client.verify_mode = ssl.CERT_REQUIRED
        if cfg.peer_client_cert_auth:
            server.load_verify_locations(cfg.peer_trusted_ca_file)
            server.verify_mode = ssl.CERT_REQUIRED
    else:
        client.verify_mode = ssl.CERT_NONE
    return server, client
