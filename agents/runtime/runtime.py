"""The container runtime the kubelet calls: pod sandboxes (a network namespace plus
hostname/hosts/resolv.conf files) and containers run by runc under a per-container
shim. Everything is on disk (``state``), so a new ``Runtime`` sees what an earlier one
made, and containers keep running while no Runtime object exists.

Layout under ``root``: ``sandboxes/<id>/``, ``containers/<id>/`` (records, the OCI
bundle, the writable layer), ``runc/`` (runc's own state, ``runc --root``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Protocol

from agents.runtime import cgroups, netns, procs, rootfs, spec
from agents.runtime.images import ImageStore, canonical_ref
from agents.runtime.model import (
    ContainerConfig,
    ContainerStatus,
    ExecTimeout,
    ImageInfo,
    NotFound,
    PodSandboxConfig,
    RuntimeError_,
    SandboxStatus,
)
from agents.runtime.state import (
    CONTAINER_FILE,
    EXIT_FILE,
    SANDBOX_FILE,
    container_status,
    read_json,
    write_json,
)

SHIM_READY_SECONDS = 30.0
KILL_WAIT_SECONDS = 10.0
POLL_SECONDS = 0.02
AGENTS_PARENT = str(Path(__file__).resolve().parents[2])  # so the shim imports `agents`
SHIM_ENTRY = "from agents.runtime.shim import main; main()"


class NetworkPlugin(Protocol):
    def setup(self, sandbox_id: str, netns_path: str) -> str: ...
    def teardown(self, sandbox_id: str, netns_path: str) -> None: ...


def pod_log_dir(log_root: Path, config: PodSandboxConfig) -> Path:
    return log_root / f"{config.namespace}_{config.name}_{config.uid}"


DEFAULT_CGROUP_PARENT = "/lab-containers"  # under each hierarchy's root, not the kubelet's unit


class Runtime:
    def __init__(
        self,
        root: str | Path = "/var/lib/lab/runtime",
        image_store: str | Path = "/var/lib/lab/images",
        network: NetworkPlugin | None = None,
        log_root: str | Path = "/var/log/pods",
        runc: str | None = None,
        cgroup_parent: str = DEFAULT_CGROUP_PARENT,
    ):
        self.root = Path(root)
        self.images = ImageStore(image_store)
        self.network = network
        self.log_root = Path(log_root)
        self.runc = runc or shutil.which("runc") or "/usr/sbin/runc"
        self.runc_root = self.root / "runc"
        if not cgroup_parent.startswith("/"):
            raise RuntimeError_(f"cgroup_parent {cgroup_parent!r} must be an absolute cgroup path")
        self.cgroup_parent = cgroup_parent.rstrip("/")
        for d in (self.root / "sandboxes", self.root / "containers", self.runc_root):
            d.mkdir(parents=True, exist_ok=True)
        # Facts that never change once a record exists, so that listing one pod's sandbox
        # or one sandbox's containers skips the others' files (the kubelet lists them on
        # every sync: reading every record made each pod's start O(pods on the node)).
        self._uid_of: dict[str, str] = {}      # sandbox id → its pod's uid
        self._sandbox_of: dict[str, str] = {}  # container id → its sandbox id

    # --- paths and records ---------------------------------------------------------

    def _sandbox_dir(self, sid: str) -> Path:
        return self.root / "sandboxes" / sid

    def _container_dir(self, cid: str) -> Path:
        return self.root / "containers" / cid

    def _sandbox_record(self, sid: str) -> dict[str, Any]:
        record = read_json(self._sandbox_dir(sid) / SANDBOX_FILE) if _safe_id(sid) else None
        if record is None:
            raise NotFound(f"no pod sandbox {sid!r}")
        return record

    def _container_record(self, cid: str) -> dict[str, Any]:
        record = read_json(self._container_dir(cid) / CONTAINER_FILE) if _safe_id(cid) else None
        if record is None:
            raise NotFound(f"no container {cid!r}")
        return record

    def _runc(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess:
        return subprocess.run(
            [self.runc, "--root", str(self.runc_root), *args],
            capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout,
        )  # fmt: skip

    def version(self) -> str:
        """``lab-runtime://0.1 (runc 1.1.5+ds1)``: the node's containerRuntimeVersion."""
        try:
            first = self._runc("--version", timeout=10).stdout.splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            first = "runc version unknown"
        return f"lab-runtime://0.1 ({first.replace(' version', '')})"

    # --- images ----------------------------------------------------------------------

    def image_status(self, ref: str) -> ImageInfo | None:
        return self.images.status(ref)

    def list_images(self) -> list[ImageInfo]:
        return self.images.list()

    # --- sandboxes -------------------------------------------------------------------

    def run_pod_sandbox(self, config: PodSandboxConfig) -> str:
        sid = uuid.uuid4().hex
        sdir = self._sandbox_dir(sid)
        sdir.mkdir(parents=True)
        hostname = socket.gethostname() if config.host_network else (config.hostname or config.name)
        record: dict[str, Any] = {
            "id": sid, "config": config.to_dict(), "hostname": hostname, "created_at": time.time(),
            "netns_name": "", "netns_path": "", "ip": "", "state": "notready",
        }  # fmt: skip
        write_json(sdir / SANDBOX_FILE, record)
        try:
            (sdir / "hostname").write_text(hostname + "\n")
            (sdir / "resolv.conf").write_text(self._resolv_conf(config))
            if not config.host_network:
                record["netns_name"] = netns.netns_name(sid)
                plugin_does_lo = bool(getattr(self.network, "brings_up_loopback", False))
                record["netns_path"] = netns.create(record["netns_name"],
                                                    loopback_up=not plugin_does_lo)
                write_json(sdir / SANDBOX_FILE, record)
                if self.network is not None:
                    record["ip"] = self.network.setup(sid, record["netns_path"]) or ""
            (sdir / "hosts").write_text(spec.hosts_file(hostname, record["ip"]))
        except BaseException:
            self._teardown_network(record)
            shutil.rmtree(sdir, ignore_errors=True)
            raise
        record["state"] = "ready"
        write_json(sdir / SANDBOX_FILE, record)
        pod_log_dir(self.log_root, config).mkdir(parents=True, exist_ok=True)
        return sid

    @staticmethod
    def _resolv_conf(config: PodSandboxConfig) -> str:
        if config.dns is None:  # the node's own (host network, or dnsPolicy Default)
            try:
                return Path("/etc/resolv.conf").read_text()
            except OSError:
                return ""
        return spec.resolv_conf(config.dns.servers, config.dns.searches, config.dns.options)

    def _teardown_network(self, record: dict[str, Any]) -> None:
        if record.get("netns_path") and self.network is not None:
            self.network.teardown(record["id"], record["netns_path"])
        if record.get("netns_name"):
            netns.delete(record["netns_name"])

    def pod_sandbox_status(self, sid: str) -> SandboxStatus:
        r = self._sandbox_record(sid)
        state = r["state"]
        if state == "ready" and r.get("netns_path") and not os.path.exists(r["netns_path"]):
            state = "notready"  # its network namespace is gone (the node rebooted)
        return SandboxStatus(
            id=r["id"], state=state, ip=r.get("ip", ""), netns_path=r.get("netns_path", ""),
            created_at=r["created_at"], metadata=PodSandboxConfig.from_dict(r["config"]),
            hostname=r.get("hostname", ""),
        )  # fmt: skip

    def list_pod_sandboxes(self, uid: str | None = None) -> list[SandboxStatus]:
        """Every sandbox, or only those of the pod with this ``uid``."""
        found = []
        for sdir in sorted((self.root / "sandboxes").iterdir()):
            sid = sdir.name
            if uid is not None and self._uid_of.get(sid, uid) != uid:
                continue  # another pod's (known without reading its record)
            try:
                status = self.pod_sandbox_status(sid)
            except NotFound:
                continue  # being created or removed
            self._uid_of[sid] = status.metadata.uid
            if uid is None or status.metadata.uid == uid:
                found.append(status)
        if uid is None:  # forget sandboxes removed meanwhile (e.g. by another Runtime)
            self._uid_of = {s.id: s.metadata.uid for s in found}
        return found

    def stop_pod_sandbox(self, sid: str) -> None:
        """Kill every container of the sandbox, free its network. Idempotent."""
        record = self._sandbox_record(sid)
        for status in self.list_containers(sandbox_id=sid):
            if status.state != "exited":
                self.stop_container(status.id, 0)
        self._teardown_network(record)
        if record["state"] != "notready" or record.get("netns_name"):
            record.update(state="notready", netns_path="", netns_name="")
            write_json(self._sandbox_dir(sid) / SANDBOX_FILE, record)

    def remove_pod_sandbox(self, sid: str) -> None:
        """Stop the sandbox, remove its containers and itself. The pod's log directory is
        left to the kubelet (a new sandbox of the same pod writes there too)."""
        try:
            self.stop_pod_sandbox(sid)
        except NotFound:
            return
        for status in self.list_containers(sandbox_id=sid):
            self.remove_container(status.id)
        shutil.rmtree(self._sandbox_dir(sid), ignore_errors=True)
        self._uid_of.pop(sid, None)

    # --- containers ------------------------------------------------------------------

    def create_container(self, sandbox_id: str, config: ContainerConfig) -> str:
        sandbox = self._sandbox_record(sandbox_id)
        if sandbox["state"] != "ready":
            raise RuntimeError_(f"pod sandbox {sandbox_id} is not ready (stopped)")
        image = self.images.status(config.image)
        if image is None:
            raise NotFound(
                f"image {config.image!r} is not in the node's image store {self.images.root}"
            )
        pod = PodSandboxConfig.from_dict(sandbox["config"])
        cid = uuid.uuid4().hex
        cdir = self._container_dir(cid)
        bundle = cdir / "bundle"
        bundle.mkdir(parents=True)
        log_path = pod_log_dir(self.log_root, pod) / config.name / f"{config.attempt}.log"
        sdir = self._sandbox_dir(sandbox_id)
        files = spec.SandboxFiles(
            hostname=sandbox["hostname"], netns_path=sandbox.get("netns_path", ""),
            hostname_file=str(sdir / "hostname"), hosts_file=str(sdir / "hosts"),
            resolv_conf=str(sdir / "resolv.conf"),
        )  # fmt: skip
        record: dict[str, Any] = {
            "id": cid, "sandbox_id": sandbox_id, "config": config.to_dict(),
            "image_ref": canonical_ref(config.image), "image_id": image.id,
            "created_at": time.time(), "log_path": str(log_path),
            "cgroups_path": f"{self.cgroup_parent}/{cid}", "pid": 0, "started_at": 0.0,
        }  # fmt: skip
        try:
            oci = spec.oci_spec(config, image.config, files, record["cgroups_path"],
                                cgroup_namespace=cgroups.unified_only())
            write_json(bundle / "config.json", oci)
            record["rootfs_mode"] = rootfs.prepare(Path(image.rootfs), cdir, bundle / "rootfs")
            write_json(cdir / CONTAINER_FILE, record)
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log_path.touch()
            record.update(self._spawn_shim(record, bundle))
            write_json(cdir / CONTAINER_FILE, record)
        except BaseException:
            self._discard(cid)
            raise
        return cid

    def _spawn_shim(self, record: dict[str, Any], bundle: Path) -> dict[str, Any]:
        cid = record["id"]
        read_end, write_end = os.pipe()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (AGENTS_PARENT, env.get("PYTHONPATH")) if p)
        cmd = [
            # -S: no site module; -c, not -m (runpy): the shim's start is on every pod's path
            sys.executable, "-S", "-c", SHIM_ENTRY,
            "--runc", self.runc, "--runc-root", str(self.runc_root), "--id", cid,
            "--bundle", str(bundle), "--log-path", record["log_path"],
            "--exit-file", str(self._container_dir(cid) / EXIT_FILE),
            "--cgroups-path", record["cgroups_path"], "--ready-fd", str(write_end),
        ]  # fmt: skip
        try:
            first = subprocess.Popen(
                cmd, pass_fds=(write_end,), start_new_session=True, cwd="/", env=env,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        finally:
            os.close(write_end)
        try:
            first.wait(timeout=SHIM_READY_SECONDS)  # it forks the shim and exits at once
            answer = _read_line(read_end, SHIM_READY_SECONDS)
        finally:
            os.close(read_end)
        word, _, rest = answer.partition(" ")
        if word != "ok":
            raise RuntimeError_(f"container {record['config']['name']!r}: {_explain(rest or answer)}")
        pid, shim_pid = (int(x) for x in rest.split())
        return {"pid": pid, "shim_pid": shim_pid, "shim_start": procs.start_time(shim_pid)}

    def start_container(self, cid: str) -> None:
        record = self._container_record(cid)
        if record.get("started_at"):
            raise RuntimeError_(f"container {cid} was already started")
        if (self._container_dir(cid) / EXIT_FILE).exists():
            raise RuntimeError_(f"container {cid} has exited; create a new one")
        at = time.time()  # before: a quick process may be done before runc start returns
        started = self._runc("start", cid)
        if started.returncode != 0:
            raise RuntimeError_(f"runc start {cid} failed: {started.stderr.strip()}")
        record["started_at"] = at
        write_json(self._container_dir(cid) / CONTAINER_FILE, record)

    def container_status(self, cid: str) -> ContainerStatus:
        record = self._container_record(cid)
        exit_record = read_json(self._container_dir(cid) / EXIT_FILE)
        alive = procs.is_alive(record.get("shim_pid"), record.get("shim_start"))
        return container_status(record, exit_record, alive)

    def list_containers(self, sandbox_id: str | None = None) -> list[ContainerStatus]:
        found = []
        for cdir in sorted((self.root / "containers").iterdir()):
            cid = cdir.name
            if sandbox_id is not None and self._sandbox_of.get(cid, sandbox_id) != sandbox_id:
                continue  # another sandbox's (known without reading its records)
            try:
                status = self.container_status(cid)
            except NotFound:
                continue  # being created or removed
            self._sandbox_of[cid] = status.sandbox_id
            if sandbox_id is None or status.sandbox_id == sandbox_id:
                found.append(status)
        if sandbox_id is None:  # forget containers removed meanwhile
            self._sandbox_of = {c.id: c.sandbox_id for c in found}
        return found

    def _wait_exited(self, cid: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if self.container_status(cid).state == "exited":
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_SECONDS)

    def _kill(self, cid: str, sig: signal.Signals) -> None:
        self._runc("kill", cid, sig.name.removeprefix("SIG"))  # fails once it is gone: fine

    def stop_container(self, cid: str, timeout_s: float) -> None:
        """SIGTERM, then SIGKILL once ``timeout_s`` has passed. Idempotent."""
        if self.container_status(cid).state == "exited":
            return
        if timeout_s > 0:
            self._kill(cid, signal.SIGTERM)
            if self._wait_exited(cid, timeout_s):
                return
        self._kill(cid, signal.SIGKILL)
        if not self._wait_exited(cid, KILL_WAIT_SECONDS):
            raise RuntimeError_(f"container {cid} did not exit {KILL_WAIT_SECONDS:.0f} s after SIGKILL")

    def remove_container(self, cid: str) -> None:
        """Remove a container (killing it first if it still runs). Its log file stays."""
        try:
            self.stop_container(cid, 0)
        except NotFound:
            return
        self._discard(cid)

    def _discard(self, cid: str) -> None:
        self._runc("delete", "--force", cid)
        cdir = self._container_dir(cid)
        rootfs.release(cdir / "bundle" / "rootfs")
        shutil.rmtree(cdir, ignore_errors=True)
        self._sandbox_of.pop(cid, None)

    # --- exec ------------------------------------------------------------------------

    def exec_argv(self, cid: str, argv: list[str], tty: bool = False) -> list[str]:
        """The command line that runs ``argv`` in the container, stdio passed through
        (``-t``: runc allocates a terminal on the caller's)."""
        self._container_record(cid)
        if not argv:
            raise RuntimeError_("exec needs a command")
        return [self.runc, "--root", str(self.runc_root), "exec", *(["-t"] if tty else []), cid, *argv]

    def exec_sync(self, cid: str, argv: list[str], timeout_s: float) -> tuple[int, bytes, bytes]:
        if self.container_status(cid).state != "running":
            raise RuntimeError_(f"container {cid} is not running")
        proc = subprocess.Popen(
            self.exec_argv(cid, argv), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            out, err = proc.communicate(timeout=timeout_s if timeout_s > 0 else None)
        except subprocess.TimeoutExpired:
            proc.terminate()  # runc exec forwards it to the process
            try:
                proc.communicate(timeout=1.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
            raise ExecTimeout(f"exec {argv!r} in {cid} timed out after {timeout_s} s") from None
        return proc.returncode, out, err


def _safe_id(value: str) -> bool:
    return bool(value) and all(c in "0123456789abcdef" for c in value)


def _read_line(fd: int, timeout: float) -> str:
    import select

    data, deadline = b"", time.monotonic() + timeout
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0:
            return f"error the shim did not report within {timeout:.0f} s"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            data += chunk
    return data.decode(errors="replace").strip() or "error the shim exited without a word"


def _explain(message: str) -> str:
    if "read-only file system" in message and "cgroup" in message:
        message += (
            " (the cgroup controllers are mounted read-only, as systemd-nspawn does: "
            "roles/runtime's lab-cgroups-writable.service remounts them read-write)"
        )
    return message
