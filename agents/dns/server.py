"""DNS over UDP and TCP on asyncio, answering from a zone the caller keeps current.

`zone_source()` returns the Zone to answer from (the daemon rebuilds it lazily after the
informers saw a change). A malformed query gets FORMERR when its header can be read and
is dropped otherwise, as resolvers expect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import Callable

import dns.exception
import dns.message
import dns.rcode

from .records import Zone, answer, to_wire, udp_limit

log = logging.getLogger(__name__)

TCP_IDLE_TIMEOUT = 10.0


def handle(zone_source: Callable[[], Zone], data: bytes, max_size: int | None) -> bytes | None:
    """One query's bytes → the answer's bytes (None: drop). max_size None: UDP rules."""
    try:
        query = dns.message.from_wire(data)
    except dns.message.ShortHeader:
        return None
    except dns.exception.DNSException:
        if len(data) < 12:
            return None
        # Echo the header's ID with FORMERR, the flags of a response, no sections.
        qid = struct.unpack("!H", data[:2])[0]
        return struct.pack("!HHHHHH", qid, 0x8000 | dns.rcode.FORMERR, 0, 0, 0, 0)
    if query.flags & dns.flags.QR:
        return None  # a response sent to us: never answer it (no loops)
    response = answer(zone_source(), query)
    limit = udp_limit(query) if max_size is None else max_size
    return to_wire(response, limit)


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, zone_source):
        self.zone_source = zone_source
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        try:
            out = handle(self.zone_source, data, None)
        except Exception:  # noqa: BLE001 - one bad query must not stop the server
            log.exception("answering a UDP query from %s", addr)
            return
        if out is not None:
            self.transport.sendto(out, addr)


async def _serve_tcp_client(zone_source, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            try:
                head = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE_TIMEOUT)
                data = await asyncio.wait_for(
                    reader.readexactly(struct.unpack("!H", head)[0]), TCP_IDLE_TIMEOUT)
            except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
                return
            out = handle(zone_source, data, 65535)
            if out is None:
                return
            writer.write(struct.pack("!H", len(out)) + out)
            await writer.drain()
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


class DnsServer:
    def __init__(self, zone_source: Callable[[], Zone], host: str, port: int):
        self.zone_source, self.host, self.port = zone_source, host, port
        self._udp = None
        self._tcp: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        # TCP first: with port 0 it picks the port, and UDP takes the same number.
        self._tcp = await asyncio.start_server(
            lambda r, w: _serve_tcp_client(self.zone_source, r, w), self.host, self.port,
            reuse_address=True)
        self.port = self._tcp.sockets[0].getsockname()[1]
        self._udp, _ = await loop.create_datagram_endpoint(
            lambda: _Udp(self.zone_source), local_addr=(self.host, self.port))
        log.info("serving DNS on %s:%d (UDP and TCP)", self.host, self.port)

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()
