"""Test doubles shipped with the kubelet (fabric-style):

- `FakeRuntime`: the runtime interface of agents.runtime in memory. Containers do not
  run; a test decides what they do: `on_start(config) -> FakeProcess` (output and
  an exit code, or keep running), and `exit(cid, code)` / `oom(cid)` later. exec and
  exec_argv run the command on the host (so `kubectl exec` through the fake works).
  State survives as long as the object: a second Kubelet on the same FakeRuntime is a
  kubelet restart with the containers still running.
- `node_cert(...)`: a kubelet serving+client certificate signed by a test CA.
- `KubeletThread`: a Kubelet running in its own thread and event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import logging
import os
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from . import crilog


@dataclass
class FakeProcess:
    output: list[tuple[str, str]] = field(default_factory=list)   # (stream, line)
    exit_code: int | None = None        # None: keeps running until stopped or exit()
    reason: str = ""
    ignores_sigterm: bool = False       # stop_container waits its timeout, then 137


@dataclass(frozen=True)
class SandboxStatus:
    id: str
    state: str
    ip: str
    netns_path: str
    created_at: float
    labels: dict
    uid: str
    namespace: str
    name: str


@dataclass(frozen=True)
class ContainerStatus:
    id: str
    sandbox_id: str
    name: str
    attempt: int
    image: str
    state: str
    pid: int
    created_at: float
    started_at: float | None
    finished_at: float | None
    exit_code: int | None
    reason: str
    message: str
    log_path: str
    labels: dict


@dataclass(frozen=True)
class ImageInfo:
    name: str
    id: str
    size: int = 1 << 20


class FakeRuntimeError(Exception):
    pass


class FakeRuntime:
    def __init__(self, log_root: str, pod_cidr: str = "10.244.1.0/24",
                 images: set[str] | tuple = ("lab/busybox:latest",),
                 on_start: Callable | None = None, pod_ip: str | None = None):
        self.log_root = log_root
        self.images = {self._norm(i) for i in images}
        self.on_start = on_start or (lambda config: FakeProcess())
        self.exec_handler: Callable | None = None   # (cid, argv) → (code, out, err)
        self._hosts = ipaddress.ip_network(pod_cidr).hosts()
        next(self._hosts)  # the first address is the bridge's
        self._fixed_ip = pod_ip
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        self.sandboxes: dict[str, SandboxStatus] = {}
        self.containers: dict[str, ContainerStatus] = {}
        self._procs: dict[str, FakeProcess] = {}
        self.calls: list[tuple] = []          # (method, id, …) in order

    # -- helpers -----------------------------------------------------------------------

    @staticmethod
    def _norm(image: str) -> str:
        return image if ":" in image.rsplit("/", 1)[-1] else image + ":latest"

    def _id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):06d}"

    def _log(self, cid: str, stream: str, line: str) -> None:
        path = self.containers[cid].log_path
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "ab") as fh:
            fh.write(crilog.format_record(stream, line.encode()))

    def _finish(self, cid: str, code: int, reason: str = "", message: str = "") -> None:
        c = self.containers[cid]
        if c.state != "running":
            return
        reason = reason or ("Completed" if code == 0 else "Error")
        self.containers[cid] = replace(c, state="exited", exit_code=code, reason=reason,
                                       message=message, finished_at=time.time(), pid=0)

    # -- test controls -----------------------------------------------------------------

    def exit(self, cid: str, code: int, reason: str = "", message: str = "") -> None:
        with self._lock:
            self._finish(cid, code, reason, message)

    def oom(self, cid: str) -> None:
        self.exit(cid, 137, "OOMKilled")

    def lose_sandbox(self, sid: str) -> None:
        """The sandbox's namespace is gone (a host reboot): it is not ready and its
        containers are dead."""
        with self._lock:
            for c in list(self.containers.values()):
                if c.sandbox_id == sid:
                    self._finish(c.id, 137)
            self.sandboxes[sid] = replace(self.sandboxes[sid], state="notready")

    def write_log(self, cid: str, line: str, stream: str = "stdout") -> None:
        with self._lock:
            self._log(cid, stream, line)

    def add_image(self, image: str) -> None:
        with self._lock:
            self.images.add(self._norm(image))

    def find(self, pod_name: str, container: str, state: str | None = None
             ) -> list[ContainerStatus]:
        """Containers of a pod (by pod name) and container name, oldest attempt first."""
        with self._lock:
            sandboxes = {s.id for s in self.sandboxes.values() if s.name == pod_name}
            found = [c for c in self.containers.values()
                     if c.sandbox_id in sandboxes and c.name == container
                     and (state is None or c.state == state)]
        return sorted(found, key=lambda c: (c.attempt, c.created_at))

    # -- the runtime interface ---------------------------------------------------------

    def run_pod_sandbox(self, config) -> str:
        with self._lock:
            sid = self._id("sb")
            ip = self._fixed_ip or str(next(self._hosts))
            self.sandboxes[sid] = SandboxStatus(
                sid, "ready", ip, f"/run/netns/{sid}", time.time(), dict(config.labels),
                config.uid, config.namespace, config.name)
            self.calls.append(("run_pod_sandbox", sid, config))
            return sid

    def pod_sandbox_status(self, sid: str) -> SandboxStatus:
        with self._lock:
            if sid not in self.sandboxes:
                raise FakeRuntimeError(f"no sandbox {sid}")
            return self.sandboxes[sid]

    def list_pod_sandboxes(self, uid: str | None = None) -> list[SandboxStatus]:
        with self._lock:
            return [s for s in self.sandboxes.values() if uid is None or s.uid == uid]

    def stop_pod_sandbox(self, sid: str) -> None:
        with self._lock:
            self.calls.append(("stop_pod_sandbox", sid))
            for c in list(self.containers.values()):
                if c.sandbox_id == sid:
                    self._finish(c.id, 137)
            if sid in self.sandboxes:
                self.sandboxes[sid] = replace(self.sandboxes[sid], state="notready")

    def remove_pod_sandbox(self, sid: str) -> None:
        with self._lock:
            self.calls.append(("remove_pod_sandbox", sid))
            self.stop_pod_sandbox(sid)
            for c in list(self.containers.values()):
                if c.sandbox_id == sid:
                    del self.containers[c.id]
            self.sandboxes.pop(sid, None)

    def create_container(self, sid: str, config) -> str:
        with self._lock:
            sandbox = self.sandboxes.get(sid)
            if sandbox is None or sandbox.state != "ready":
                raise FakeRuntimeError(f"sandbox {sid} is not ready")
            if self._norm(config.image) not in self.images:
                raise FakeRuntimeError(f"image {config.image} not in the store")
            cid = self._id("c")
            path = crilog.log_path(self.log_root, sandbox.namespace, sandbox.name,
                                   sandbox.uid, config.name, config.attempt)
            self.containers[cid] = ContainerStatus(
                cid, sid, config.name, config.attempt, config.image, "created", 0,
                time.time(), None, None, None, "", "", path, dict(config.labels))
            self._procs[cid] = config
            self.calls.append(("create_container", cid, config))
            return cid

    def start_container(self, cid: str) -> None:
        with self._lock:
            c = self.containers[cid]
            if c.state != "created":
                raise FakeRuntimeError(f"container {cid} is {c.state}, not created")
            config = self._procs[cid]
            proc = self.on_start(config) or FakeProcess()
            self._procs[cid] = proc
            self.containers[cid] = replace(c, state="running", started_at=time.time(),
                                           pid=100000 + int(cid[1:]))
            self.calls.append(("start_container", cid))
            for stream, line in proc.output:
                self._log(cid, stream, line)
            if proc.exit_code is not None:
                self._finish(cid, proc.exit_code, proc.reason)

    def stop_container(self, cid: str, timeout_s: float) -> None:
        with self._lock:
            self.calls.append(("stop_container", cid, timeout_s))
            proc = self._procs.get(cid)
            slow = isinstance(proc, FakeProcess) and proc.ignores_sigterm
            running = cid in self.containers and self.containers[cid].state == "running"
        if running and slow:
            time.sleep(timeout_s)  # it ignores SIGTERM: killed when the timeout is up
        with self._lock:
            if cid in self.containers:
                self._finish(cid, 137 if slow else 143)

    def remove_container(self, cid: str) -> None:
        with self._lock:
            self.calls.append(("remove_container", cid))
            self.containers.pop(cid, None)
            self._procs.pop(cid, None)

    def list_containers(self, sandbox_id: str | None = None) -> list[ContainerStatus]:
        with self._lock:
            return [c for c in self.containers.values()
                    if sandbox_id is None or c.sandbox_id == sandbox_id]

    def container_status(self, cid: str) -> ContainerStatus:
        with self._lock:
            if cid not in self.containers:
                raise FakeRuntimeError(f"no container {cid}")
            return self.containers[cid]

    def exec_sync(self, cid: str, argv: list[str], timeout_s: float):
        if self.exec_handler is not None:
            return self.exec_handler(cid, argv)
        proc = subprocess.run(argv, capture_output=True, timeout=timeout_s)
        return proc.returncode, proc.stdout, proc.stderr

    def exec_argv(self, cid: str, argv: list[str], tty: bool) -> list[str]:
        if self.container_status(cid).state != "running":
            raise FakeRuntimeError(f"container {cid} is not running")
        return list(argv)  # the "container" is the host

    def image_status(self, image: str) -> ImageInfo | None:
        with self._lock:
            norm = self._norm(image)
            return ImageInfo(norm, "sha256:" + norm.encode().hex()[:16]) \
                if norm in self.images else None

    def list_images(self) -> list[ImageInfo]:
        with self._lock:
            return [ImageInfo(i, "sha256:" + i.encode().hex()[:16]) for i in sorted(self.images)]

    def version(self) -> str:
        return "fake://0.1"


# ------------------------------------------------------------------ certificates


def node_cert(workdir: str, ca_cert: str, ca_key: str, node: str, ips=("127.0.0.1",),
              name: str | None = None) -> tuple[str, str]:
    """A kubelet certificate (CN system:node:<node>, O system:nodes, server and client
    auth, SANs node name + ips) signed by the CA at ca_cert/ca_key. Returns paths."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    with open(ca_cert, "rb") as fh:
        ca = x509.load_pem_x509_certificate(fh.read())
    with open(ca_key, "rb") as fh:
        signer = serialization.load_pem_private_key(fh.read(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
                x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{node}")]))
            .issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName(node)]
                + [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(signer, hashes.SHA256()))
    base = os.path.join(workdir, name or f"kubelet-{node}")
    with open(base + ".crt", "wb") as fh:
        fh.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(base + ".key", "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM,
                                   serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    return base + ".crt", base + ".key"


# ------------------------------------------------------------------ running a kubelet


class KubeletThread:
    """Run `make_kubelet()` (a coroutine function returning a Kubelet) in a thread with
    its own event loop; `stop()` cancels it and waits."""

    def __init__(self, make_kubelet):
        self._make = make_kubelet
        self.kubelet = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._started = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, daemon=True, name="kubelet")

    def _main(self) -> None:
        self.loop = asyncio.new_event_loop()
        try:
            self.loop.run_until_complete(self._run())
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            self.error = exc
            logging.getLogger("agents.kubelet").exception("kubelet thread failed")
        finally:
            self._started.set()
            self.loop.close()

    async def _run(self) -> None:
        self.kubelet = await self._make()
        self._task = asyncio.current_task()
        self._started.set()
        try:
            with contextlib.suppress(asyncio.CancelledError):
                await self.kubelet.run()
        finally:
            close = getattr(self.kubelet.api, "close", None)
            if close is not None:
                await close()

    def start(self) -> KubeletThread:
        self._thread.start()
        self._started.wait(30)
        if self.error:
            raise self.error
        return self

    def call(self, coro, timeout: float = 30):
        """Run a coroutine on the kubelet's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        if self.loop is not None and self._task is not None and not self.loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(30)
