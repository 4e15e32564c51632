"""Messages between ``labctl verify`` and its forked check processes.

A check process (labctl.verify.parallel) runs no SSH of its own: every command a check
runs travels to the parent over a socket pair and runs there over the lab's pooled
connection, so the lab's hosts are never logged in to again and the check process
touches none of the parent's sockets or threads. The parent's answer is the command's
``Result`` or the exception it raised, rebuilt in the check process with the same type
and message (a failing check reads the same as when it ran in the parent).

Frames: a 4-byte big-endian length, then a pickle (both ends are the same program).
"""

from __future__ import annotations

import importlib
import pickle
import socket
import struct
from typing import Any

from labctl.errors import LabError

_LENGTH = struct.Struct("!I")


def send(sock: socket.socket, message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    sock.sendall(_LENGTH.pack(len(data)) + data)


def receive(sock: socket.socket) -> Any | None:
    """The next message; None when the other end closed its side."""
    head = _read_exactly(sock, _LENGTH.size)
    if head is None:
        return None
    body = _read_exactly(sock, _LENGTH.unpack(head)[0])
    if body is None:
        return None
    return pickle.loads(body)


def _read_exactly(sock: socket.socket, size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        try:
            chunk = sock.recv(min(left, 1 << 20))
        except ConnectionResetError:
            return None
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


# -- exceptions across the process boundary ----------------------------------------


def exception_state(exc: BaseException) -> tuple[str, str, tuple, dict]:
    """What rebuilds ``exc`` in the other process: its class, args and picklable attributes
    (labctl's errors take other __init__ arguments than their args, so plain pickling
    does not round-trip them)."""
    attrs = {}
    for key, value in vars(exc).items():
        try:
            pickle.dumps(value)
        except Exception:  # noqa: BLE001 - an attribute that cannot travel is left behind
            continue
        attrs[key] = value
    return type(exc).__module__, type(exc).__qualname__, exc.args, attrs


def rebuild_exception(state: tuple[str, str, tuple, dict]) -> BaseException:
    module, qualname, args, attrs = state
    cls: Any = None
    try:
        cls = importlib.import_module(module)
        for part in qualname.split("."):
            cls = getattr(cls, part)
    except (ImportError, AttributeError):
        cls = None
    if not (isinstance(cls, type) and issubclass(cls, BaseException)):
        return LabError(f"{qualname}: {args[0] if len(args) == 1 else args}")
    exc = cls.__new__(cls)
    BaseException.__init__(exc, *args)
    exc.__dict__.update(attrs)
    return exc


# -- the check process's side --------------------------------------------------------


class Relay:
    """The check process's end of its socket: asks the parent to run commands."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def run(self, host: str, command: str, timeout: float | None) -> Any:
        send(self.sock, ("run", host, command, timeout))
        reply = receive(self.sock)
        if reply is None:
            raise LabError(f"lost labctl verify while running a command on {host}: {command}")
        kind, value = reply
        if kind == "raise":
            raise rebuild_exception(value)
        return value


class RelayedConnection:
    """Stands in for a host's ``labctl.connection.Connection`` in a check process."""

    def __init__(self, name: str, relay: Relay) -> None:
        self.name = name
        self._relay = relay

    def run(self, command: str, *, timeout: float | None = None) -> Any:
        return self._relay.run(self.name, command, timeout)

    def connect(self) -> None:
        pass  # the parent holds the logged-in connection


class RelayPool:
    """Stands in for the ``ConnectionPool`` in a check process."""

    def __init__(self, relay: Relay) -> None:
        self._relay = relay

    def get(self, name: str) -> RelayedConnection:
        return RelayedConnection(name, self._relay)


# -- the parent's side ---------------------------------------------------------------


def answer_run(pool: Any, host: str, command: str, timeout: float | None) -> tuple[str, Any]:
    """Run a check process's command over ``pool``: ("result", Result) or ("raise", state)."""
    try:
        return "result", pool.get(host).run(command, timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - it is the check's to see
        return "raise", exception_state(exc)
