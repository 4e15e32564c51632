"""Peer transport: Raft messages between members over TCP (optionally TLS).

Each direction is its own connection: a member dials every peer and only writes on that
connection; it accepts connections from peers and only reads from them. A frame is
``[u32 length][encode_message bytes]``. Sending never blocks Raft: a message is handed
to the connection's (non-blocking) transport at once, or, while connecting, put in a
bounded per-peer queue; it is dropped when that is full, the kernel is not taking the
data, or the peer is down (Raft retransmits), and the core is told the peer is
unreachable.

``blocked`` drops all traffic to and from some peers: fault tests use it (through the
member's debug endpoint) to partition a member without touching the host's firewall.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import struct
from collections.abc import Callable

from .raft import Message, decode_message, encode_message

FRAME = struct.Struct("<I")
MAX_FRAME = 512 << 20
QUEUE_LIMIT = 4096
WRITE_BUFFER_LIMIT = 64 << 20  # bytes the kernel has not taken yet: beyond, drop (Raft resends)
# A connection whose first frame header is this asks for the cluster's membership
# (a member joining with --initial-cluster-state existing learns its ID this way).
MEMBERSHIP_QUERY = 0xFFFFFFFF


class PeerLink:
    """The connection to one peer. Frames are written to the socket at once when it is
    connected and nothing is queued (an asyncio transport write is non-blocking): a
    leader's appends must be on their way before it starts its own fsync, which blocks
    the loop, not after it. The task connects, and flushes what queued meanwhile."""

    def __init__(self, transport: Transport, peer_id: int, host: str, port: int) -> None:
        self.t = transport
        self.peer_id = peer_id
        self.host, self.port = host, port
        self.queue: list[bytes] = []
        self.writer: asyncio.StreamWriter | None = None
        self.ready = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self._run())

    def send(self, frame: bytes) -> None:
        w = self.writer
        if w is not None and not self.queue:
            if w.transport.is_closing():
                self._lost()
            elif w.transport.get_write_buffer_size() > WRITE_BUFFER_LIMIT:
                self.t.on_unreachable(self.peer_id)  # peer not reading: drop, Raft resends
                return
            else:
                w.write(frame)
                return
        if len(self.queue) >= QUEUE_LIMIT:
            self.t.on_unreachable(self.peer_id)
            return
        self.queue.append(frame)
        self.ready.set()

    def _lost(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
            self.t.on_unreachable(self.peer_id)
            self.ready.set()

    async def _run(self) -> None:
        while True:
            await self.ready.wait()
            self.ready.clear()
            if not self.queue:
                continue
            if self.writer is None:
                try:
                    _, writer = await asyncio.wait_for(
                        asyncio.open_connection(self.host, self.port, ssl=self.t.client_ssl), 1.0
                    )
                except (OSError, TimeoutError, ssl.SSLError):
                    self.queue.clear()
                    self.t.on_unreachable(self.peer_id)
                    await asyncio.sleep(0.05)
                    continue
                self.writer = writer
            batch, self.queue = self.queue, []
            try:
                self.writer.write(b"".join(batch))
                await self.writer.drain()
            except (OSError, ConnectionError):
                self._lost()

    def close(self) -> None:
        self.task.cancel()
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class Transport:
    def __init__(
        self,
        my_id: int,
        on_message: Callable[[Message], None],
        on_unreachable: Callable[[int], None],
        server_ssl: ssl.SSLContext | None = None,
        client_ssl: ssl.SSLContext | None = None,
    ) -> None:
        self.my_id = my_id
        self.on_message = on_message
        self.on_unreachable = on_unreachable
        self.server_ssl = server_ssl
        self.client_ssl = client_ssl
        self.links: dict[int, PeerLink] = {}
        self.servers: list[asyncio.base_events.Server] = []
        self.blocked: set[int] = set()
        self.membership: Callable[[], bytes] = lambda: b""
        self.sent = 0
        self.received = 0

    async def listen(self, host: str, port: int) -> None:
        self.servers.append(await asyncio.start_server(self._serve, host, port, ssl=self.server_ssl))

    def set_peer(self, peer_id: int, host: str, port: int) -> None:
        if peer_id == self.my_id:
            return
        old = self.links.get(peer_id)
        if old is not None and (old.host, old.port) == (host, port):
            return
        if old is not None:
            old.close()
        self.links[peer_id] = PeerLink(self, peer_id, host, port)

    def remove_peer(self, peer_id: int) -> None:
        link = self.links.pop(peer_id, None)
        if link is not None:
            link.close()

    def send(self, msgs: list[Message]) -> None:
        for m in msgs:
            if m.to in self.blocked:
                continue
            link = self.links.get(m.to)
            if link is None:
                continue
            body = encode_message(m)
            link.send(FRAME.pack(len(body)) + body)
            self.sent += 1

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readexactly(FRAME.size)
                (length,) = FRAME.unpack(head)
                if length == MEMBERSHIP_QUERY:
                    body = self.membership()
                    writer.write(FRAME.pack(len(body)) + body)
                    await writer.drain()
                    return
                if length > MAX_FRAME:
                    return
                body = await reader.readexactly(length)
                m = decode_message(body)
                if m.from_ in self.blocked:
                    continue
                self.received += 1
                self.on_message(m)
        except (asyncio.IncompleteReadError, ConnectionError, OSError, ValueError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        for link in self.links.values():
            link.close()
        for s in self.servers:
            s.close()
        for s in self.servers:
            with contextlib.suppress(Exception):
                await s.wait_closed()


async def query_membership(host: str, port: int, client_ssl: ssl.SSLContext | None, timeout: float = 2.0) -> bytes:
    """Ask the member at host:port for its membership answer (see MEMBERSHIP_QUERY)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, ssl=client_ssl), timeout)
    try:
        writer.write(FRAME.pack(MEMBERSHIP_QUERY))
        await writer.drain()
        (length,) = FRAME.unpack(await asyncio.wait_for(reader.readexactly(FRAME.size), timeout))
        return await asyncio.wait_for(reader.readexactly(length), timeout)
    finally:
        writer.close()
