"""Run a cluster of members as local processes on 127.0.0.1 (tests and benchmarks).

The same flags start this member (``python -m agents.etcd``) or the real etcd binary
(``impl="etcd"``), so one scenario can run against both. Processes are only ever ended
by their own PID.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


@dataclass
class Tls:
    """Certificates for a TLS cluster: per member name (cert, key), plus a client pair."""

    ca: str
    members: dict[str, tuple[str, str]]
    client: tuple[str, str]


@dataclass
class Member:
    name: str
    client_port: int
    peer_port: int
    metrics_port: int
    data_dir: str
    log_path: str
    proc: subprocess.Popen | None = None
    extra: list[str] = field(default_factory=list)
    scheme: str = "http"

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def client_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.peer_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}"

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class LocalCluster:
    def __init__(
        self,
        size: int = 3,
        impl: str = "ours",
        base_dir: str | None = None,
        token: str = "lab-cluster",
        extra_flags: list[str] | None = None,
        etcdctl: str = "etcdctl",
        tls: Tls | None = None,
    ) -> None:
        if impl not in ("ours", "etcd"):
            raise ValueError(f"impl must be 'ours' or 'etcd', not {impl!r}")
        self.impl = impl
        self.token = token
        self.etcdctl_bin = etcdctl
        self._own_dir = base_dir is None
        self.dir = base_dir or tempfile.mkdtemp(prefix=f"etcd-{impl}-")
        self.extra = list(extra_flags or [])
        self.tls = tls
        ports = free_ports(3 * size)
        self.members = [
            Member(
                f"m{i}",
                ports[3 * i],
                ports[3 * i + 1],
                ports[3 * i + 2],
                os.path.join(self.dir, f"m{i}.data"),
                os.path.join(self.dir, f"m{i}.log"),
            )
            for i in range(size)
        ]
        if tls is not None:
            for m in self.members:
                m.scheme = "https"

    # ----- processes -------------------------------------------------------------------

    @property
    def initial_cluster(self) -> str:
        return ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    @property
    def endpoints(self) -> str:
        return ",".join(m.endpoint for m in self.members)

    def command(self, m: Member, state: str = "new") -> list[str]:
        if self.impl == "ours":
            cmd = [sys.executable, "-m", "agents.etcd"]
        else:
            cmd = [shutil.which("etcd") or "/usr/bin/etcd"]
        return cmd + [
            "--name", m.name,
            "--data-dir", m.data_dir,
            "--listen-client-urls", m.client_url,
            "--advertise-client-urls", m.client_url,
            "--listen-peer-urls", m.peer_url,
            "--initial-advertise-peer-urls", m.peer_url,
            "--initial-cluster", self.initial_cluster,
            "--initial-cluster-state", state,
            "--initial-cluster-token", self.token,
            "--listen-metrics-urls", m.metrics_url,
        ] + self._tls_flags(m) + self.extra + m.extra  # fmt: skip

    def _tls_flags(self, m: Member) -> list[str]:
        if self.tls is None:
            return []
        cert, key = self.tls.members[m.name]
        ca = self.tls.ca
        return [
            "--cert-file", cert, "--key-file", key, "--trusted-ca-file", ca, "--client-cert-auth",
            "--peer-cert-file", cert, "--peer-key-file", key, "--peer-trusted-ca-file", ca,
            "--peer-client-cert-auth",
        ]  # fmt: skip

    def start_member(self, m: Member, state: str = "new") -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = REPO_ROOT + os.pathsep + env.get("PYTHONPATH", "")
        log = open(m.log_path, "ab")  # noqa: SIM115 - handed to the child
        try:
            m.proc = subprocess.Popen(
                self.command(m, state), stdout=log, stderr=subprocess.STDOUT, env=env,
                cwd=self.dir, start_new_session=True,
            )
        finally:
            log.close()

    def start(self, timeout: float = 20.0) -> LocalCluster:
        for m in self.members:
            self.start_member(m)
        self.wait_ready(timeout)
        return self

    def kill(self, m: Member, sig: int = signal.SIGKILL) -> None:
        if m.proc is not None and m.proc.poll() is None:
            m.proc.send_signal(sig)
            try:
                m.proc.wait(10)
            except subprocess.TimeoutExpired:
                m.proc.kill()
                m.proc.wait(5)

    def stop(self) -> None:
        for m in self.members:
            self.kill(m, signal.SIGTERM)
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # ----- etcdctl ---------------------------------------------------------------------

    def etcdctl(
        self, *args: str, endpoints: str | None = None, check: bool = True, timeout: float = 20.0,
        input: str | None = None,
    ) -> subprocess.CompletedProcess:
        env = dict(os.environ, ETCDCTL_API="3")
        cmd = [self.etcdctl_bin, "--endpoints", endpoints or self.endpoints]
        if self.tls is not None and not any(a.startswith("--cacert") for a in args):
            cmd += ["--cacert", self.tls.ca, "--cert", self.tls.client[0], "--key", self.tls.client[1]]
        cmd += args
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, input=input)
        except subprocess.TimeoutExpired as e:
            if check:
                raise
            res = subprocess.CompletedProcess(cmd, -1, e.stdout or "", f"timed out after {timeout}s")
        if check and res.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr.strip()}")
        return res

    def status(self, m: Member) -> dict | None:
        res = self.etcdctl("endpoint", "status", "-w", "json", endpoints=m.endpoint, check=False, timeout=8)
        if res.returncode != 0:
            return None
        try:
            return json.loads(res.stdout)[0]["Status"]
        except (ValueError, KeyError, IndexError):
            return None

    def leader(self, among: list[Member] | None = None) -> Member | None:
        """The member the running members agree is leader (None if there is none)."""
        ids = {}
        leaders = set()
        for m in among or [m for m in self.members if m.running()]:
            st = self.status(m)
            if st is None:
                continue
            ids[st["header"]["member_id"]] = m
            if st.get("leader"):
                leaders.add(st["leader"])
        if len(leaders) == 1:
            return ids.get(leaders.pop())
        return None

    def member_id(self, m: Member) -> int:
        st = self.status(m)
        if st is None:
            raise AssertionError(f"{m.name} does not answer")
        return st["header"]["member_id"]

    def wait_ready(self, timeout: float = 20.0, among: list[Member] | None = None) -> Member:
        """Until every running member answers a linearizable read; returns the leader."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            ms = among or [m for m in self.members if m.proc is not None]
            dead = [m.name for m in ms if not m.running()]
            if dead:
                raise AssertionError(f"members exited: {dead}\n{self.log_tails()}")
            ok = True
            for m in ms:
                res = self.etcdctl("get", "ready-probe", endpoints=m.endpoint, check=False, timeout=8)
                if res.returncode != 0:
                    ok, last = False, res.stderr.strip()[-300:]
                    break
            if ok:
                leader = self.leader(ms)
                if leader is not None:
                    return leader
            time.sleep(0.1)
        raise AssertionError(f"cluster not ready within {timeout}s: {last}\n{self.log_tails()}")

    def log_tails(self, lines: int = 5) -> str:
        out = []
        for m in self.members:
            try:
                with open(m.log_path, errors="replace") as f:
                    tail = f.read().splitlines()[-lines:]
            except OSError:
                tail = ["(no log)"]
            out.append(f"--- {m.name} ({'running' if m.running() else 'exited'}):\n" + "\n".join(tail))
        return "\n".join(out)
