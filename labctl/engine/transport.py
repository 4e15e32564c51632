"""One long-lived module runner per host, spoken to in JSON lines.

``RunnerSession.start(process)`` starts the bootstrap, which keeps the runner cached
on the host by content hash (``/var/cache/labctl/labctl_hostrunner_<hash>.py``, its
bytecode next to it): the controller sends ``<hash> <length>``, the host answers
``have`` or ``need`` (then the source follows), and imports it. So a run costs one SSH
exec per host however many tasks it has, and the source travels once per version;
each task is then one request line and one answer line on the same channel.

``process`` is anything with ``write(bytes)``, ``readline() -> bytes``, ``close()``:
``Connection.open_process`` for SSH hosts, ``LocalProcess`` for the controller
itself (``ansible_connection=local``) and for tests.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Protocol

from labctl.errors import LabError

RUNNER_SOURCE = (Path(__file__).parent / "hostrunner.py").read_bytes()
RUNNER_HASH = hashlib.sha256(RUNNER_SOURCE).hexdigest()[:16]

BOOTSTRAP = """\
import os, sys, tempfile
i, o = sys.stdin.buffer, sys.stdout.buffer
h, n = i.readline().split()
h, n = h.decode(), int(n)
d = None
want = os.environ.get('LABCTL_RUNNER_CACHE')
for c in ([want] if want else ['/var/cache/labctl', os.path.join(tempfile.gettempdir(), 'labctl-%d' % os.getuid())]):
    if c == '-':
        break
    try:
        os.makedirs(c, 0o700, exist_ok=True)
        if os.access(c, os.W_OK):
            d = c
            break
    except OSError:
        pass
m = 'labctl_hostrunner_' + h
p = d and os.path.join(d, m + '.py')
if p and os.path.exists(p):
    o.write(b'have\\n'); o.flush()
else:
    o.write(b'need\\n'); o.flush()
    s = i.read(n)
    if not p:
        g = {'__name__': 'labctl_hostrunner'}
        exec(compile(s, m, 'exec'), g)
        os.chdir('/'); g['serve'](i, o); sys.exit(0)
    t = '%s.%d' % (p, os.getpid())
    with open(t, 'wb') as f:
        f.write(s)
    os.replace(t, p)
sys.path.insert(0, d)
import importlib
r = importlib.import_module(m)
os.chdir('/')
r.serve(i, o)
"""


def runner_command(python: str = "python3") -> str:
    return f"{python} -u -c {shlex.quote(BOOTSTRAP)}"


class Process(Protocol):
    def write(self, data: bytes) -> Any: ...
    def readline(self) -> bytes: ...
    def close(self) -> Any: ...


class HostUnreachable(LabError):
    """The host (or its runner) went away: the host counts as unreachable."""


class LocalProcess:
    """The runner as a child process of the controller."""

    def __init__(self, command: list[str], env: dict[str, str] | None = None) -> None:
        full_env = {**os.environ, **env} if env else None
        self._proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      env=full_env)

    def write(self, data: bytes) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.write(data)
        self._proc.stdin.flush()

    def readline(self) -> bytes:
        assert self._proc.stdout is not None
        return self._proc.stdout.readline()

    def close(self) -> None:
        if self._proc.stdin:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._proc.stdout:
            self._proc.stdout.close()

    def exit_status(self) -> int | None:
        return self._proc.poll()

    @classmethod
    def runner(cls) -> LocalProcess:
        """The runner on the controller itself, not cached (nothing left behind)."""
        return cls([sys.executable, "-u", "-c", BOOTSTRAP], env={"LABCTL_RUNNER_CACHE": "-"})


class RunnerSession:
    """Request/answer with one host's runner; one caller at a time."""

    def __init__(self, host: str, process: Process) -> None:
        self.host = host
        self._process = process
        self._lock = threading.Lock()
        self.round_trips = 0

    @classmethod
    def start(cls, host: str, process: Process) -> RunnerSession:
        session = cls(host, process)
        try:
            process.write(f"{RUNNER_HASH} {len(RUNNER_SOURCE)}\n".encode())
            answer = process.readline().strip()
            if answer == b"need":
                process.write(RUNNER_SOURCE)
            elif answer != b"have":
                raise HostUnreachable(
                    f"{host}: the module runner did not start (is python3 installed?): {answer[:200]!r}")
        except HostUnreachable:
            raise
        except Exception as exc:  # paramiko/socket/LabError from the connection alike
            raise HostUnreachable(f"{host}: cannot start the module runner: {exc}") from None
        return session

    def call(self, module: str, args: dict[str, Any] | None = None, *, check: bool = False,
             diff: bool = False) -> dict[str, Any]:
        request = json.dumps({"module": module, "args": args or {}, "check": check, "diff": diff})
        with self._lock:
            try:
                self._process.write(request.encode() + b"\n")
                line = self._process.readline()
            except Exception as exc:  # paramiko/socket/LabError from the connection alike
                raise HostUnreachable(f"{self.host}: lost the module runner: {exc}") from None
            self.round_trips += 1
        if not line:
            raise HostUnreachable(
                f"{self.host}: the module runner exited (is python3 installed on the host?)")
        try:
            return json.loads(line)
        except ValueError:
            raise HostUnreachable(f"{self.host}: garbled answer from the runner: {line[:200]!r}") from None

    def close(self) -> None:
        # closing a dead channel must not hide the run's result
        with contextlib.suppress(Exception):
            self._process.close()
