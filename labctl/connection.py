"""SSH connections to lab hosts: one lazily opened paramiko Transport per host, pooled.

This is the only module in labctl that imports paramiko. Everything that talks to a
host in a run (roles, facts, verification) shares one ``Connection`` per host from a
``ConnectionPool``: commands and SFTP ride channels on the same transport, so after
the first login a command costs only a channel open and an exec.

Host keys are pinned in the lab's known_hosts (OpenSSH format, see ``labctl.sshkeys``).
A key is learned only when the caller says the host is being provisioned
(``learn_host_key=True``) and nothing is pinned yet; a different key is always a
``HostKeyChangedError``.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import re
import secrets
import select
import shlex
import socket
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import paramiko

from labctl.errors import LabError
from labctl.sshkeys import KnownHosts, fingerprint, host_alias

# OpenSSH's default MaxSessions is 10 channels per connection; one is kept for SFTP.
DEFAULT_MAX_SESSIONS = 10
OPEN_RETRIES = 5  # a refused channel open is retried with back-off (20 ms .. 640 ms)
_READ_CHUNK = 65536
# Stdin bigger than this is fed from a thread, so a command that talks back while it
# reads cannot deadlock us against a full window.
_INLINE_INPUT_MAX = 256 * 1024


_WRITE_SLICE = 1 << 20  # RemoteProcess.write hands paramiko at most this much at once


@dataclass
class Result:
    command: str
    host: str
    rc: int
    stdout: str
    stderr: str
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return self.rc == 0

    @property
    def failed(self) -> bool:
        return not self.ok


class CommandError(LabError):
    """A command exited non-zero under ``run(check=True)``; ``.result`` has its output."""

    def __init__(self, result: Result, message: str | None = None) -> None:
        self.result = result
        if message is None:
            detail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-5:]
            message = f"{result.host}: command failed with exit code {result.rc}: {result.command}"
            if detail:
                message += "\n  " + "\n  ".join(detail)
        super().__init__(message)


class CommandTimeoutError(CommandError):
    """A command did not finish in time; ``.result`` holds the output received so far."""


class UnreachableError(LabError):
    def __init__(self, name: str, address: str, port: int, reason: str) -> None:
        self.name, self.address, self.port, self.reason = name, address, port, reason
        where = address if port == 22 else f"{address}:{port}"
        super().__init__(f"host {name} ({where}) is unreachable: {reason}")


class AuthenticationFailedError(UnreachableError):
    """sshd answered but refused the lab's key."""


class HostKeyChangedError(LabError):
    """The host offers a key other than the one pinned when it was provisioned."""

    def __init__(self, name: str, alias: str, known_hosts: Path, pinned: str, offered: str) -> None:
        self.name, self.alias, self.pinned, self.offered = name, alias, pinned, offered
        super().__init__(
            f"HOST KEY CHANGED for host {name} ({alias}): pinned {pinned}, offered {offered}. "
            "Either the host was re-created outside labctl, or something is intercepting "
            "the connection. If you re-created it on purpose, rebuild it with `labctl down` "
            f"and `labctl up`, or forget the old key: ssh-keygen -R '{alias}' -f {known_hosts}"
        )


class HostKeyUnknownError(LabError):
    """No key is pinned for the host and the caller is not provisioning it."""


@functools.lru_cache(maxsize=16)
def _load_private_key(path: str, mtime_ns: int) -> paramiko.PKey:
    try:
        return paramiko.PKey.from_path(path)
    except (OSError, paramiko.SSHException, ValueError) as exc:
        raise LabError(f"cannot load the lab's SSH private key {path}: {exc}") from exc


def _private_key(path: Path) -> paramiko.PKey:
    try:
        mtime = path.stat().st_mtime_ns
    except OSError as exc:
        raise LabError(
            f"the lab's SSH private key {path} is missing ({exc.strerror}); "
            "it is created by `labctl up`"
        ) from exc
    return _load_private_key(str(path), mtime)


def _host_key_algorithms(key_type: str) -> list[str]:
    """Algorithms that let a server prove ownership of a pinned key of ``key_type``."""
    if key_type == "ssh-rsa":
        return ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"]
    return [key_type]


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _with_env(command: str, env: dict | None) -> str:
    # Exported by the remote shell: sshd only accepts the variables in its AcceptEnv.
    if not env:
        return command
    for name in env:
        if not _ENV_NAME.match(name):
            raise LabError(f"invalid environment variable name {name!r}")
    exports = " ".join(f"{k}={shlex.quote(str(v))}" for k, v in env.items())
    return f"export {exports}; {command}"


def _socket_reason(exc: OSError, timeout: float) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is sshd running?)"
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"timed out after {timeout:g}s"
    if exc.errno == errno.EHOSTUNREACH:
        return "no route to host"
    if exc.errno == errno.ENETUNREACH:
        return "network unreachable"
    return exc.strerror or str(exc)


class RemoteProcess:
    """A long-lived remote process on its own channel, spoken to in lines.

    stderr is collected as it comes (kept as ``stderr_tail``) so the process can never
    stall on a full stderr window while the caller waits for stdout.
    """

    _STDERR_KEEP = 64 * 1024

    def __init__(self, channel: paramiko.Channel, connection: Connection, command: str) -> None:
        self._chan = channel
        self._connection = connection
        self.command = command
        self._buf = bytearray()
        self._stderr = bytearray()
        self._closed = False

    @property
    def stderr_tail(self) -> str:
        self._drain_stderr()
        return self._stderr.decode(errors="replace")

    def write(self, data: bytes) -> None:
        # paramiko's sendall copies the unsent rest after every packet: quadratic for a
        # large request (a 25 MB bundle), so hand it over in 1 MiB slices
        view = memoryview(data)
        try:
            for start in range(0, len(view), _WRITE_SLICE):
                self._chan.sendall(bytes(view[start:start + _WRITE_SLICE]))
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise self._connection._lost(exc) from exc

    def close_stdin(self) -> None:
        self._chan.shutdown_write()

    def readline(self, timeout: float | None = None) -> bytes:
        """The next line (with its ``\\n``); at end of output the rest, then ``b""``.

        Raises ``TimeoutError`` when ``timeout`` seconds pass without a whole line.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            end = self._buf.find(b"\n")
            if end >= 0:
                line = bytes(self._buf[: end + 1])
                del self._buf[: end + 1]
                return line
            self._drain_stderr()
            if self._chan.recv_ready():
                self._buf += self._chan.recv(_READ_CHUNK)
                continue
            if self._chan.eof_received or self._chan.closed:
                line = bytes(self._buf)
                self._buf.clear()
                return line
            wait = 1.0 if deadline is None else deadline - time.monotonic()
            if wait <= 0:
                raise TimeoutError(
                    f"{self._connection.name}: no line from `{self.command}` within {timeout:g}s"
                )
            select.select([self._chan], [], [], min(wait, 1.0))
            if not self._connection._transport_alive():
                raise self._connection._lost(EOFError("transport closed"))

    def exit_status(self, timeout: float | None = 0) -> int | None:
        """The exit code, or None while it runs; waits up to ``timeout`` (None: forever)."""
        if not self._chan.status_event.wait(timeout):
            return None
        return self._chan.exit_status

    def close(self, timeout: float = 5.0) -> None:
        """End stdin, give the process ``timeout`` seconds to exit, then close the channel."""
        if self._closed:
            return
        self._closed = True
        try:
            with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
                self._chan.shutdown_write()
            end = time.monotonic() + timeout
            # keep reading so a process that still writes on its way out is not blocked
            while not self._chan.status_event.is_set() and not self._chan.closed:
                remaining = end - time.monotonic()
                if remaining <= 0:
                    break
                if self._chan.eof_received:
                    self._chan.status_event.wait(remaining)
                    break
                select.select([self._chan], [], [], min(remaining, 0.5))
                while self._chan.recv_ready():
                    self._buf += self._chan.recv(_READ_CHUNK)
                self._drain_stderr()
        finally:
            self._chan.close()
            self._connection._release_session()

    def __enter__(self) -> RemoteProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _drain_stderr(self) -> None:
        while self._chan.recv_stderr_ready():
            self._stderr += self._chan.recv_stderr(_READ_CHUNK)
        if len(self._stderr) > self._STDERR_KEEP:
            del self._stderr[: -self._STDERR_KEEP]


class Connection:
    """One host's SSH connection; connects on first use, reconnects if the link dropped."""

    def __init__(
        self,
        name: str,
        address: str,
        *,
        port: int = 22,
        user: str = "root",
        key_path: Path,
        known_hosts: Path,
        learn_host_key: bool = False,
        connect_timeout: float = 10.0,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
    ) -> None:
        self.name = name
        self.address = address
        self.port = port
        self.user = user
        self.key_path = Path(key_path)
        self.known_hosts = Path(known_hosts)
        self.learn_host_key = learn_host_key
        self.connect_timeout = connect_timeout
        self.alias = host_alias(address, port)
        self._transport: paramiko.Transport | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._lock = threading.Lock()  # guards connecting
        self._sftp_lock = threading.Lock()
        self._sessions = threading.BoundedSemaphore(max(1, max_sessions - 1))
        self.connect_seconds: float | None = None  # how long the last login took

    def __repr__(self) -> str:
        return f"Connection({self.name!r}, {self.alias!r})"

    # -- connecting ------------------------------------------------------------------

    @property
    def is_connected(self) -> bool:
        return self._transport_alive()

    def _transport_alive(self) -> bool:
        t = self._transport
        return t is not None and t.is_active()

    def connect(self) -> None:
        """Log in now (normally the first command does it)."""
        self._ensure_transport()

    def _ensure_transport(self, timeout: float | None = None) -> paramiko.Transport:
        with self._lock:
            if self._transport is not None and self._transport.is_active():
                return self._transport
            self._drop()
            self._transport = self._open(self.connect_timeout if timeout is None else timeout)
            return self._transport

    def _unreachable(self, reason: str) -> UnreachableError:
        return UnreachableError(self.name, self.address, self.port, reason)

    def _open(self, timeout: float) -> paramiko.Transport:
        started = time.monotonic()
        try:
            sock = socket.create_connection((self.address, self.port), timeout=timeout)
        except OSError as exc:
            raise self._unreachable(_socket_reason(exc, timeout)) from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport = paramiko.Transport(sock)
        try:
            transport.banner_timeout = timeout
            transport.handshake_timeout = timeout
            transport.auth_timeout = timeout
            pinned = KnownHosts(self.known_hosts).get(self.alias)
            if pinned:
                transport.get_security_options().key_types = _host_key_algorithms(pinned.split()[0])
            try:
                transport.start_client(timeout=timeout)
            except paramiko.SSHException as exc:
                if pinned and "host key" in str(exc).lower():
                    raise HostKeyChangedError(
                        self.name,
                        self.alias,
                        self.known_hosts,
                        f"{pinned.split()[0]} {fingerprint(pinned.split()[1])}",
                        f"no {pinned.split()[0]} key at all ({exc})",
                    ) from exc
                raise self._unreachable(f"SSH handshake failed: {exc}") from exc
            except (OSError, EOFError) as exc:
                raise self._unreachable(
                    f"SSH handshake failed: {exc or type(exc).__name__}"
                ) from exc
            self._check_host_key(transport.get_remote_server_key(), pinned)
            key = _private_key(self.key_path)
            try:
                transport.auth_publickey(self.user, key)
            except paramiko.AuthenticationException as exc:
                raise AuthenticationFailedError(
                    self.name,
                    self.address,
                    self.port,
                    f"authentication failed for {self.user} with key {self.key_path} "
                    f"({fingerprint(key.get_base64())}); is the lab's public key in the "
                    f"host's ~{self.user}/.ssh/authorized_keys?",
                ) from exc
            except (paramiko.SSHException, OSError, EOFError) as exc:
                raise self._unreachable(f"login failed: {exc or type(exc).__name__}") from exc
        except BaseException:
            transport.close()
            raise
        transport.set_keepalive(15)
        self.connect_seconds = time.monotonic() - started
        return transport

    def _check_host_key(self, key: paramiko.PKey, pinned: str | None) -> None:
        offered = f"{key.get_name()} {key.get_base64()}"
        if pinned is None:
            if not self.learn_host_key:
                raise HostKeyUnknownError(
                    f"no host key pinned for host {self.name} ({self.alias}) in {self.known_hosts}; "
                    "labctl pins a host's key when it provisions it: run `labctl up` for this lab"
                )
            KnownHosts(self.known_hosts).pin(self.alias, key.get_name(), key.get_base64())
            return
        if offered.split() != pinned.split()[:2]:
            pinned_type, pinned_b64 = pinned.split()[:2]
            raise HostKeyChangedError(
                self.name,
                self.alias,
                self.known_hosts,
                f"{pinned_type} {fingerprint(pinned_b64)}",
                f"{key.get_name()} {fingerprint(key.get_base64())}",
            )

    def wait_reachable(self, deadline_s: float) -> None:
        """Retry logging in until it works or ``deadline_s`` passes (a host still booting).

        A changed host key is not retried. Raises ``UnreachableError`` with the last reason.
        """
        end = time.monotonic() + deadline_s
        delay = 0.02
        while True:
            remaining = end - time.monotonic()
            try:
                self._ensure_transport(timeout=max(0.1, min(self.connect_timeout, remaining)))
                return
            except UnreachableError as exc:
                last = exc
            remaining = end - time.monotonic()
            if remaining <= 0:
                raise self._unreachable(
                    f"still unreachable after {deadline_s:g}s; last error: {last.reason}"
                ) from last
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 0.5)

    def _lost(self, exc: BaseException) -> UnreachableError:
        return self._unreachable(f"connection lost: {exc or type(exc).__name__}")

    def _drop(self) -> None:
        if self._sftp is not None:
            with contextlib.suppress(Exception):  # the transport may already be gone
                self._sftp.close()
            self._sftp = None
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def close(self) -> None:
        with self._lock:
            self._drop()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- commands --------------------------------------------------------------------

    def _release_session(self) -> None:
        self._sessions.release()

    def _open_channel(self) -> paramiko.Channel:
        """A session channel; the caller holds a session slot."""
        relogged = False
        refused = 0
        while True:
            transport = self._ensure_transport()
            try:
                return transport.open_session(timeout=self.connect_timeout)
            except (paramiko.SSHException, OSError, EOFError) as exc:
                if transport.is_active():
                    # sshd refuses a session while it still counts ones we already closed
                    # (MaxSessions): a busy host frees them within milliseconds
                    refused += 1
                    if isinstance(exc, paramiko.SSHException) and refused <= OPEN_RETRIES:
                        time.sleep(0.02 * 2 ** refused)
                        continue
                    raise self._lost(exc) from exc
                if relogged:
                    raise self._lost(exc) from exc
                relogged = True  # the link died since it was last used (host rebooted): log in again once

    def run(
        self,
        command: str,
        *,
        input: str | bytes | None = None,
        check: bool = False,
        timeout: float | None = None,
        env: dict | None = None,
    ) -> Result:
        """Run ``command`` through the user's shell; stdin is ``input`` (or empty)."""
        started = time.monotonic()
        deadline = None if timeout is None else started + timeout
        full = _with_env(command, env)
        if timeout is not None:
            # sshd ignores "signal" requests here, so a timed-out command would outlive
            # its channel: coreutils' timeout ends its whole process group remotely, a
            # second after our own deadline (so the local deadline always fires first).
            full = f'timeout -k 1 {timeout + 1:g} "$SHELL" -c {shlex.quote(full)}'
        data = input.encode() if isinstance(input, str) else input
        if not data:
            # Empty stdin comes from the remote /dev/null, not from an EOF we send: a
            # command that ends at once can get its channel closed before that EOF goes
            # out (paramiko sends it outside the channel's lock), and sshd drops the whole
            # connection for an EOF on a closed channel.
            full = f"exec </dev/null; {full}"
        self._sessions.acquire()
        try:
            chan = self._open_channel()
            try:
                try:
                    chan.exec_command(full)
                except (paramiko.SSHException, OSError, EOFError) as exc:
                    raise self._lost(exc) from exc
                feeder = self._feed_stdin(chan, data)
                out, err, rc = self._collect(chan, deadline)
                if feeder is not None:
                    feeder.join(timeout=1.0)
            finally:
                chan.close()
        finally:
            self._sessions.release()
        result = Result(
            command=command,
            host=self.name,
            rc=-1 if rc is None else rc,
            stdout=out.decode(errors="replace"),
            stderr=err.decode(errors="replace"),
            duration=time.monotonic() - started,
        )
        if rc is None:
            raise CommandTimeoutError(
                result, f"{self.name}: command timed out after {timeout:g}s: {command}"
            )
        if check and result.failed:
            raise CommandError(result)
        return result

    def _feed_stdin(self, chan: paramiko.Channel, data: bytes | None) -> threading.Thread | None:
        if not data:
            return None  # the command reads /dev/null (see run)

        def feed() -> None:
            try:
                chan.sendall(data)
                chan.shutdown_write()
            except (OSError, EOFError, paramiko.SSHException):
                pass  # the command exited without reading all of it

        if len(data) <= _INLINE_INPUT_MAX:
            feed()
            return None
        thread = threading.Thread(target=feed, name=f"stdin-{self.name}", daemon=True)
        thread.start()
        return thread

    def _collect(
        self, chan: paramiko.Channel, deadline: float | None
    ) -> tuple[bytes, bytes, int | None]:
        """Read stdout/stderr until EOF and the exit status; rc None means timed out."""
        out, err = bytearray(), bytearray()

        def drain() -> None:
            while chan.recv_ready():
                out.extend(chan.recv(_READ_CHUNK))
            while chan.recv_stderr_ready():
                err.extend(chan.recv_stderr(_READ_CHUNK))

        while True:
            drain()
            if chan.eof_received or chan.closed:
                break
            wait = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
            if wait <= 0:
                return bytes(out), bytes(err), None
            select.select([chan], [], [], wait)
            if not self._transport_alive():
                drain()
                raise self._lost(EOFError("transport closed while a command ran"))
        drain()
        wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not chan.status_event.wait(wait):
            return bytes(out), bytes(err), None
        drain()
        return bytes(out), bytes(err), chan.exit_status

    def open_process(self, command: str, *, env: dict | None = None) -> RemoteProcess:
        """Start a long-lived process; talk to it with ``write``/``readline``; ``close`` it."""
        self._sessions.acquire()
        try:
            chan = self._open_channel()
            try:
                chan.exec_command(_with_env(command, env))
            except (paramiko.SSHException, OSError, EOFError) as exc:
                chan.close()
                raise self._lost(exc) from exc
        except BaseException:
            self._sessions.release()
            raise
        return RemoteProcess(chan, self, command)

    # -- files -----------------------------------------------------------------------

    def _sftp_client(self) -> paramiko.SFTPClient:
        # caller holds _sftp_lock
        transport = self._ensure_transport()
        if self._sftp is None or self._sftp.get_channel().get_transport() is not transport:
            try:
                self._sftp = paramiko.SFTPClient.from_transport(transport)
            except (paramiko.SSHException, OSError, EOFError) as exc:
                raise self._lost(exc) from exc
        assert self._sftp is not None
        return self._sftp

    def put(self, src: Path | bytes, dest: str, mode: int | None = None) -> None:
        """Write a file atomically (temp file + rename) over SFTP.

        ``mode`` defaults to the source file's permission bits, or 0644 for bytes.
        """
        if isinstance(src, bytes | bytearray):
            data = bytes(src)
            mode = 0o644 if mode is None else mode
        else:
            src = Path(src)
            try:
                data = src.read_bytes()
                if mode is None:
                    mode = stat.S_IMODE(src.stat().st_mode)
            except OSError as exc:
                raise LabError(
                    f"cannot read {src} to copy it to {self.name}:{dest}: {exc.strerror}"
                ) from exc
        tmp = f"{dest}.labctl-{secrets.token_hex(4)}"
        with self._sftp_lock:
            sftp = self._sftp_client()
            try:
                with sftp.open(tmp, "wb") as f:
                    f.set_pipelined(True)
                    f.write(data)
                sftp.chmod(tmp, mode)
                sftp.posix_rename(tmp, dest)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    sftp.remove(tmp)
                raise LabError(
                    f"cannot write {dest} on host {self.name}: {exc.strerror or exc} "
                    "(does its directory exist?)"
                ) from exc
            except (paramiko.SSHException, EOFError) as exc:
                raise self._lost(exc) from exc

    def get(self, remote: str) -> bytes:
        with self._sftp_lock:
            sftp = self._sftp_client()
            try:
                with sftp.open(remote, "rb") as f:
                    f.prefetch()
                    return f.read()
            except OSError as exc:
                raise LabError(
                    f"cannot read {remote} on host {self.name}: {exc.strerror or exc}"
                ) from exc
            except (paramiko.SSHException, EOFError) as exc:
                raise self._lost(exc) from exc


class ConnectionPool:
    """One lazily created ``Connection`` per host name, shared by every thread of a run."""

    def __init__(
        self,
        hosts: dict[str, tuple[str, int]] | dict[str, str],
        *,
        key_path: Path,
        known_hosts: Path,
        connect_timeout: float = 10.0,
        user: str = "root",
        learn_host_key: bool = False,
    ) -> None:
        self._hosts: dict[str, tuple[str, int]] = {}
        for name, where in hosts.items():
            self._hosts[name] = (where, 22) if isinstance(where, str) else (where[0], int(where[1]))
        self.key_path = Path(key_path)
        self.known_hosts = Path(known_hosts)
        self.connect_timeout = connect_timeout
        self.user = user
        self.learn_host_key = learn_host_key
        self._connections: dict[str, Connection] = {}
        self._lock = threading.Lock()

    @property
    def names(self) -> list[str]:
        return list(self._hosts)

    def __contains__(self, name: object) -> bool:
        return name in self._hosts

    def get(self, name: str) -> Connection:
        with self._lock:
            conn = self._connections.get(name)
            if conn is None:
                if name not in self._hosts:
                    raise LabError(
                        f"no host named {name!r} in this run (known: {', '.join(self._hosts) or 'none'})"
                    )
                address, port = self._hosts[name]
                conn = Connection(
                    name,
                    address,
                    port=port,
                    user=self.user,
                    key_path=self.key_path,
                    known_hosts=self.known_hosts,
                    learn_host_key=self.learn_host_key,
                    connect_timeout=self.connect_timeout,
                )
                self._connections[name] = conn
            return conn

    def close_all(self) -> None:
        with self._lock:
            connections, self._connections = list(self._connections.values()), {}
        for conn in connections:
            conn.close()

    def __enter__(self) -> ConnectionPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close_all()
