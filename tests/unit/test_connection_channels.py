"""Opening a session channel: a refusal on a live link is retried with back-off, a dead
link is logged in again once, anything else is an UnreachableError naming the host."""

from __future__ import annotations

import paramiko
import pytest

from labctl import connection
from labctl.connection import Connection, UnreachableError

pytestmark = pytest.mark.unit


class FakeTransport:
    def __init__(self, refusals: int, active: bool = True):
        self.refusals, self.active, self.opened = refusals, active, 0

    def is_active(self):
        return self.active

    def open_session(self, timeout=None):
        if self.refusals:
            self.refusals -= 1
            raise paramiko.SSHException("Channel closed.")
        self.opened += 1
        return "channel"


def conn_with(transport, monkeypatch, tmp_path):
    conn = Connection("h1", "10.0.0.5", key_path=tmp_path / "k", known_hosts=tmp_path / "kh")
    monkeypatch.setattr(conn, "_ensure_transport", lambda timeout=None: transport)
    monkeypatch.setattr(connection.time, "sleep", lambda s: None)
    return conn


def test_a_refused_open_on_a_live_link_is_retried(monkeypatch, tmp_path):
    transport = FakeTransport(refusals=3)
    assert conn_with(transport, monkeypatch, tmp_path)._open_channel() == "channel"
    assert transport.opened == 1


def test_refusals_beyond_the_retries_name_the_host(monkeypatch, tmp_path):
    transport = FakeTransport(refusals=connection.OPEN_RETRIES + 1)
    with pytest.raises(UnreachableError, match="h1"):
        conn_with(transport, monkeypatch, tmp_path)._open_channel()


def test_a_dead_link_is_logged_in_again_once(monkeypatch, tmp_path):
    dead, fresh = FakeTransport(refusals=1, active=False), FakeTransport(refusals=0)
    conn = conn_with(dead, monkeypatch, tmp_path)
    transports = iter([dead, fresh])
    monkeypatch.setattr(conn, "_ensure_transport", lambda timeout=None: next(transports))
    assert conn._open_channel() == "channel" and fresh.opened == 1
