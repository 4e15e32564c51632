"""The nspawn provider: each host is a systemd-nspawn container booting the base image.

Per host, under the lab root: ``hosts/<name>/{upper,work,merged}`` — an overlayfs whose
lower layer is the shared, read-only base rootfs — ``hosts/<name>/lab-data`` (bound to
the host's ``/var/lib/lab``, see ``LAB_DATA_IN_HOST``) and ``logs/<name>.console.log``.
Identity goes into the overlay before boot (hostname, root's key, a networkd file
matching ``host0`` with the static address); then

    systemd-nspawn -q -D MERGED --machine=M --boot --register=no --keep-unit
                   --network-bridge=BR --console=read-only ...

runs in its own session and its own cgroup (see ``nspawn_cgroup``). There is no
systemd on the lab machine to register with, hence ``--register=no --keep-unit``; for
the same reason ``cpus``/``memory_mb`` are ignored: ``--property=`` only applies to a scope unit registered with the host's
systemd (nspawn 252 says so: "Machine and scope registration turned off, --slice= and
--property= settings will have no effect").

Everything is found again from the record alone (a later ``labctl`` process may stop
or destroy): the nspawn PID plus its start time (a reused PID is never signalled),
mount points from /proc/self/mountinfo, paths, cgroups and the veth name; processes
left by a SIGKILLed nspawn are found by their root directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

from labctl.errors import LabError
from labctl.images import BaseImage, ensure_base_image
from labctl.providers import netdev
from labctl.providers.base import HostRecord, HostSpec, NetworkSpec, Provider
from labctl.providers.mountinfo import is_mounted
from labctl.providers.nspawn_cgroup import (
    container_cgroups,
    in_cgroups,
    make_cgroups,
    remove_cgroup,
)

# The lab components' state (/var/lib/lab: etcd data, the container runtime's image
# store and container layers) lives on the lab machine's own filesystem, bound into the
# host, not in the host's overlay: overlayfs cannot be the upper layer of another
# overlay, so the runtime could not mount a pod's container rootfs (image + writable
# layer) inside the host otherwise; it also spares etcd's fsyncs the overlay.
LAB_DATA_IN_HOST = "/var/lib/lab"

STOP_GRACE_SECONDS = 20.0  # SIGTERM -> clean poweroff takes ~2 s; then SIGKILL
KILL_WAIT_SECONDS = 10.0
POLL_SECONDS = 0.05


# --- pure parts -----------------------------------------------------------------


def machine_name(lab_name: str, host: str) -> str:
    """A short machine name unique per lab and host.

    nspawn names the host side of the veth ``vb-<machine>`` and shortens names longer
    than 15 characters unpredictably; two labs may both have a ``node1``. 12
    characters keep ``vb-`` + name exactly within the limit and known in advance.
    """
    digest = hashlib.sha256(f"{lab_name}/{host}".encode()).hexdigest()[:8]
    return f"lab-{digest}"


def veth_name(machine: str) -> str:
    return f"vb-{machine}"


def host_network_file(address: str, net: NetworkSpec) -> str:
    """The networkd config for the container's end of the veth (``host0``)."""
    return (
        "# labctl: static lab address; no DHCP, no IPv6 autoconfiguration\n"
        "[Match]\n"
        "Name=host0\n"
        "\n"
        "[Network]\n"
        f"Address={address}/{net.cidr.prefixlen}\n"
        f"Gateway={net.gateway}\n"
        "DHCP=no\n"
        "LinkLocalAddressing=no\n"
        "IPv6AcceptRA=no\n"
    )


def overlay_options(lower: Path, upper: Path, work: Path) -> str:
    for path in (lower, upper, work):
        if any(c in str(path) for c in ",:\\"):
            raise LabError(f"path {path} cannot be used in an overlay mount (',', ':' or '\\')")
    return f"lowerdir={lower},upperdir={upper},workdir={work}"


def mount_command(lower: Path, upper: Path, work: Path, merged: Path) -> list[str]:
    opts = overlay_options(lower, upper, work)
    return ["mount", "-t", "overlay", "overlay", "-o", opts, str(merged)]


def nspawn_command(
    merged: Path,
    machine: str,
    bridge: str,
    extra_args: tuple[str, ...] = (),
    lab_data: Path | None = None,
) -> list[str]:
    binds = [f"--bind={lab_data}:{LAB_DATA_IN_HOST}"] if lab_data else []
    return [
        "systemd-nspawn", "-q",
        "-D", str(merged),
        f"--machine={machine}",
        "--boot",
        "--register=no", "--keep-unit",  # no systemd on the lab machine to register with
        f"--network-bridge={bridge}",
        "--console=read-only",  # the console goes to the log; a passive one is never drained and fills up
        "--resolv-conf=off",  # keep the image's empty resolv.conf
        "--timezone=off",
        "--link-journal=no",
        *binds,
        *extra_args,
    ]  # fmt: skip


def stat_start_time(stat: str) -> int:
    """Field 22 (starttime) of /proc/PID/stat; the command name may hold spaces."""
    return int(stat[stat.rindex(")") + 2 :].split()[19])


# --- I/O helpers -----------------------------------------------------------------


def process_start_time(pid: int) -> int | None:
    """None when no such process (or only its zombie is left)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    if stat[stat.rindex(")") + 2] == "Z":
        return None
    return stat_start_time(stat)


def reap(pid: int) -> None:
    """Collect the exit status if the process is our child, so it does not linger."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def same_process_alive(pid: int | None, start_time: int | None) -> bool:
    if not pid or start_time is None:
        return False
    reap(pid)
    return process_start_time(pid) == start_time


def wait_gone(pid: int, start_time: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not same_process_alive(pid, start_time):
            return True
        time.sleep(POLL_SECONDS)
    return not same_process_alive(pid, start_time)


def container_pids(merged: Path) -> list[int]:
    """Processes whose root directory is the container's tree.

    They outlive a SIGKILLed nspawn (the container's init is reparented, not killed),
    so they are found by their root (same device and inode as the overlay's root;
    /proc/PID/root reads as "/" from here) rather than as nspawn's children.
    """
    try:
        root = merged.stat()
    except OSError:
        return []
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):  # gone, a zombie, or a kernel thread
            st = os.stat(entry / "root")
            if (st.st_dev, st.st_ino) == (root.st_dev, root.st_ino):
                pids.append(int(entry.name))
    return pids


def kill_container(merged: Path, timeout: float) -> bool:
    """SIGKILL every process of the container; True once none is left."""
    deadline = time.monotonic() + timeout
    while pids := container_pids(merged):
        if time.monotonic() >= deadline:
            return False
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(POLL_SECONDS)
    return True


def run(cmd: list[str], what: str) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise LabError(f"{what} failed: {' '.join(cmd)}: {result.stderr.strip()}")


def unmount(path: Path) -> None:
    if not is_mounted(path):
        return
    result = subprocess.run(["umount", str(path)], capture_output=True, text=True)
    if result.returncode != 0 and is_mounted(path):
        # Something still holds it (a shell cd'ed into it...): detach it now, the
        # kernel frees it when the last user goes.
        run(["umount", "--lazy", str(path)], f"unmounting {path}")


def write_into(root: Path, relative: str, text: str, mode: int) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        path.unlink()
    path.write_text(text)
    path.chmod(mode)


# --- the provider ----------------------------------------------------------------


class NspawnProvider(Provider):
    name = "nspawn"

    def __init__(
        self, lab_root: Path, image: BaseImage | None = None, extra_args: tuple[str, ...] = ()
    ):
        super().__init__(lab_root)
        self._image = image
        # More systemd-nspawn options for every host, e.g. --set-credential=... (tests
        # use it to check the credential path VMs use for root's key).
        self.extra_args = tuple(extra_args)
        self._image_lock = threading.Lock()

    # paths
    def host_dir(self, host: str) -> Path:
        return self.lab_root / "hosts" / host

    def _console_path(self, host: str) -> Path:
        return self.lab_root / "logs" / f"{host}.console.log"

    def base_image(self) -> BaseImage:
        with self._image_lock:  # create() runs in parallel threads
            if self._image is None:
                self._image = ensure_base_image()
            return self._image

    # network
    def ensure_network(self, net: NetworkSpec) -> None:
        netdev.ensure_bridge(net.bridge, net.gateway, net.cidr)

    def destroy_network(self, net: NetworkSpec) -> None:
        netdev.delete_link(net.bridge)

    # hosts
    def create(self, spec: HostSpec) -> HostRecord:
        if shutil.which("systemd-nspawn") is None:
            raise LabError(
                "the nspawn provider needs systemd-nspawn: apt-get install systemd-container"
            )
        image = self.base_image()
        base = self.host_dir(spec.name)
        if is_mounted(base / "merged"):
            raise LabError(
                f"host {spec.name} already exists ({base / 'merged'} is mounted): "
                "destroy it before creating it again"
            )
        if base.exists():  # left by an interrupted create or destroy: start afresh
            shutil.rmtree(base)
        machine = machine_name(spec.network.lab_name, spec.name)
        record = HostRecord(
            name=spec.name,
            provider=self.name,
            address=spec.address,
            details={
                "machine": machine,
                "lower": str(image.rootfs),
                "recipe_hash": image.recipe_hash,
                "upper": str(base / "upper"),
                "work": str(base / "work"),
                "merged": str(base / "merged"),
                "host_dir": str(base),
                "bridge": spec.network.bridge,
                "veth": veth_name(machine),
                "console_log": str(self._console_path(spec.name)),
                "pid": None,
                "start_time": None,
            },
        )
        self._mount(record)
        self._write_identity(Path(record.details["merged"]), spec)
        return self._launch(record)

    def state(self, record: HostRecord) -> str:
        d = record.details
        if same_process_alive(d.get("pid"), d.get("start_time")):
            return "running"
        if Path(d["host_dir"]).exists():
            return "stopped"
        return "missing"

    def start(self, record: HostRecord) -> HostRecord:
        if self.state(record) == "running":
            return record
        if not Path(record.details["upper"]).is_dir():
            raise LabError(f"host {record.name} has no overlay left ({record.details['upper']}): "
                           "destroy it and create it again")  # fmt: skip
        self._mount(record)
        return self._launch(record)

    def stop(self, record: HostRecord) -> None:
        d = record.details
        pid, start_time = d.get("pid"), d.get("start_time")
        merged = Path(d["merged"])
        if same_process_alive(pid, start_time):
            # nspawn turns SIGTERM into a clean poweroff of the container.
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            if not wait_gone(pid, start_time, STOP_GRACE_SECONDS):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                if not wait_gone(pid, start_time, KILL_WAIT_SECONDS):
                    raise LabError(
                        f"host {record.name}: systemd-nspawn (pid {pid}) survived SIGKILL"
                    )
        # Whatever is left of the container (its nspawn was SIGKILLed, now or before).
        if not kill_container(merged, KILL_WAIT_SECONDS):
            raise LabError(f"host {record.name}: processes in {merged} survived SIGKILL")
        unmount(merged)
        for cgroup in d.get("cgroups", []):
            remove_cgroup(Path(cgroup))
        netdev.delete_link(d["veth"])  # normally gone with the container's netns

    def destroy(self, record: HostRecord) -> None:
        self.stop(record)
        host_dir = Path(record.details["host_dir"])
        if host_dir.exists():
            shutil.rmtree(host_dir)

    def console_log(self, record: HostRecord) -> Path:
        return Path(record.details["console_log"])

    # steps
    def _mount(self, record: HostRecord) -> None:
        d = record.details
        lower = Path(d["lower"])
        if not lower.is_dir():
            raise LabError(f"host {record.name}: its base image {lower} is gone: "
                           "destroy the host and create it again")  # fmt: skip
        upper, work, merged = Path(d["upper"]), Path(d["work"]), Path(d["merged"])
        if is_mounted(merged):
            return
        for path in (upper, work, merged):
            path.mkdir(parents=True, exist_ok=True)
        run(mount_command(lower, upper, work, merged), f"mounting the overlay of {record.name}")

    def _write_identity(self, merged: Path, spec: HostSpec) -> None:
        write_into(merged, "etc/hostname", f"{spec.name}\n", 0o644)
        if spec.public_key.strip():  # else it may come as a credential (extra_args)
            (merged / "root/.ssh").mkdir(mode=0o700, parents=True, exist_ok=True)
            write_into(merged, "root/.ssh/authorized_keys", spec.public_key.strip() + "\n", 0o600)
        write_into(
            merged,
            "etc/systemd/network/10-lab-host0.network",
            host_network_file(spec.address, spec.network),
            0o644,
        )

    def _launch(self, record: HostRecord) -> HostRecord:
        d = record.details
        log_path = Path(d["console_log"])
        log_path.parent.mkdir(parents=True, exist_ok=True)
        cgroups = [Path(c) for c in d.setdefault("cgroups", [])] or container_cgroups(d["machine"])
        d["cgroups"] = [str(c) for c in cgroups]
        make_cgroups(cgroups)
        lab_data = Path(d["host_dir"]) / "lab-data"
        lab_data.mkdir(mode=0o755, exist_ok=True)
        cmd = in_cgroups(
            cgroups,
            nspawn_command(
                Path(d["merged"]), d["machine"], d["bridge"], self.extra_args, lab_data
            ),
        )
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True,
            )  # fmt: skip
        start_time = process_start_time(proc.pid)
        if start_time is None:  # exited at once: say why
            proc.wait()
            raise LabError(
                f"host {record.name}: systemd-nspawn exited at once (code {proc.returncode}); "
                f"see {log_path}"
            )
        d["pid"], d["start_time"] = proc.pid, start_time
        return record
