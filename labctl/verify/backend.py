"""A pytest-testinfra backend that runs commands over the lab's pooled SSH connections.

testinfra's own paramiko backend logs in once per host it is given; ours borrows the
``labctl.connection.Connection`` a run already holds, so after ``labctl deploy`` the
verification suites ride the same transport (one channel per command, no new login).

    host = testinfra_host(pool.get("node1"))
    assert host.file("/opt/lab").is_directory
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from testinfra.backend.base import BaseBackend, CommandResult
from testinfra.host import Host

from labctl.connection import Connection
from labctl.errors import LabError

# A hung check must not hang the whole verification; a check that legitimately takes
# longer can raise it (VerifyOptions.command_timeout).
DEFAULT_COMMAND_TIMEOUT = 60.0


class LabBackend(BaseBackend):
    """testinfra backend over one pooled ``Connection`` (commands run in the login shell)."""

    NAME = "labctl"

    def __init__(
        self,
        connection: Connection,
        *,
        timeout: float | None = DEFAULT_COMMAND_TIMEOUT,
        sudo: bool = False,
        sudo_user: str | None = None,
    ) -> None:
        self.connection = connection
        self.timeout = timeout
        super().__init__(connection.name, sudo=sudo, sudo_user=sudo_user)

    def run(self, command: str, *args: str, **kwargs: Any) -> CommandResult:
        # kwargs: testinfra passes encoding=None when it probes the host's encoding
        command = self.get_command(command, *args)
        result = self.connection.run(command, timeout=self.timeout)
        return self.result(result.rc, self.encode(command), result.stdout, result.stderr)

    def get_encoding(self) -> str:
        # Connection decodes output as UTF-8 already: no need to ask the host's python.
        return "utf-8"


def testinfra_host(connection: Connection, **backend_options: Any) -> Host:
    """A testinfra ``Host`` whose commands run over ``connection``."""
    backend = LabBackend(connection, **backend_options)
    host = Host(backend)
    backend.set_host(host)
    return host


testinfra_host.__test__ = False  # its name starts with "test": pytest must not collect it

class PooledHosts:
    """testinfra Hosts for a pool's hosts, one per host, logged in up front in parallel.

    A host that cannot be reached is remembered with the reason, so each of its checks
    fails at once with that reason instead of waiting out another login timeout.
    """

    def __init__(self, pool: Any, **backend_options: Any) -> None:
        self._pool = pool
        self._backend_options = backend_options
        self._hosts: dict[str, Host] = {}
        self._lock = threading.Lock()
        self.unreachable: dict[str, str] = {}

    def connect_all(self, names: list[str], parallel: int = 16) -> dict[str, str]:
        """Log in to every host not logged in yet; returns {host: reason} for failures."""

        def login(name: str) -> None:
            try:
                self._pool.get(name).connect()
            except LabError as exc:
                self.unreachable[name] = str(exc)

        if names:
            with ThreadPoolExecutor(min(parallel, len(names))) as executor:
                list(executor.map(login, names))
        return {n: self.unreachable[n] for n in names if n in self.unreachable}

    def relayed(self, relay: Any) -> PooledHosts:
        """The same hosts for a forked check process: commands go through ``relay``
        (labctl.verify.relay) to this process's connections; unreachable hosts stay so."""
        from labctl.verify.relay import RelayPool

        hosts = PooledHosts(RelayPool(relay), **self._backend_options)
        hosts.unreachable = dict(self.unreachable)
        return hosts

    def __call__(self, name: str) -> Host:
        if name in self.unreachable:
            raise HostUnreachableError(self.unreachable[name])
        with self._lock:
            host = self._hosts.get(name)
            if host is None:
                host = self._hosts[name] = testinfra_host(
                    self._pool.get(name), **self._backend_options)
        return host


class HostUnreachableError(LabError):
    """The host could not be logged in to before the checks started."""
