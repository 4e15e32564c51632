"""Peer transport: frames reach the peer's socket at once, even if the loop then blocks.

A leader sends its appends and then runs fdatasync on the loop: the appends must already
be on their way (the followers' fsyncs run in parallel with ours), not wait for the loop.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest

from agents.etcd import raft
from agents.etcd.peer import FRAME, Transport

pytestmark = [pytest.mark.unit, pytest.mark.timeout(20)]


class RawPeer:
    """A peer that only reads frames (in a thread, so a blocked loop cannot delay it)."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.arrivals: list[tuple[float, raft.Message]] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.server.accept()
        with conn:
            buf = b""
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
                while len(buf) >= FRAME.size and len(buf) >= FRAME.size + FRAME.unpack_from(buf)[0]:
                    (n,) = FRAME.unpack_from(buf)
                    body, buf = buf[FRAME.size : FRAME.size + n], buf[FRAME.size + n :]
                    self.arrivals.append((time.monotonic(), raft.decode_message(body)))

    def close(self) -> None:
        self.server.close()


def app(index: int) -> raft.Message:
    return raft.Message(raft.MessageType.MsgApp, to=2, from_=1, term=1, index=index)


async def _scenario(peer: RawPeer) -> float:
    t = Transport(1, lambda m: None, lambda peer_id: None)
    t.set_peer(2, "127.0.0.1", peer.port)
    try:
        t.send([app(1)])  # connects
        deadline = time.monotonic() + 5
        while not peer.arrivals and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert peer.arrivals, "the first frame never arrived"
        sent = time.monotonic()
        t.send([app(2)])
        time.sleep(0.5)  # the loop is busy (an fsync on it), as a leader's is
        return sent
    finally:
        await t.close()


def test_a_frame_is_on_the_wire_before_the_loop_is_free_again() -> None:
    peer = RawPeer()
    try:
        sent = asyncio.run(_scenario(peer))
        deadline = time.monotonic() + 5
        while len(peer.arrivals) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [m.index for _, m in peer.arrivals] == [1, 2]
        assert peer.arrivals[1][0] - sent < 0.4, "the frame waited for the loop"
    finally:
        peer.close()
