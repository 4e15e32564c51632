"""libvirt provider: each host is a qemu VM booting the lab's base image.

Per lab: one isolated libvirt network (a bridge carrying the gateway address, no
``<forward>``, no dnsmasq) and, per host, a qcow2 overlay on the shared base image and
a persistent domain that boots the image's kernel directly. The host's identity travels
on the kernel command line (``systemd.hostname=``, ``ip=`` and the root SSH key as a
systemd credential), so no per-VM files or cloud-init are needed.

This is the only module that imports ``libvirt``. The XML/command-line rendering and
the naming are pure functions (unit-tested); the ``LibvirtProvider`` class does the I/O.

A host may name its own hypervisor with the ``libvirt_uri`` variable (per host or, via
group_vars/all, per lab). Every URI a lab touches is remembered in
``<lab>/libvirt.json`` so ``destroy_network`` removes the network from each of them.
Creating hosts on a remote URI (``qemu+ssh://…``) is refused for now with a clear
error (``_require_local``): the overlay and kernel are local files, and an isolated
bridge on another machine is unreachable from this one without a tunnel.

Boot without an initrd: the Debian cloud kernel has NVMe built in (virtio_blk is a
module), so the root disk is an emulated NVMe drive the kernel mounts by itself. That
skips the initramfs stage, which took ~14 s of a ~47 s boot under TCG. libvirt 9 has
no NVMe disk bus, so the drive goes on qemu's command line (``<qemu:commandline>``);
libvirt does not chown such files, so the overlay is given to the user qemu runs as
(the DAC base label in the host's capabilities).

KVM is used when the CPU advertises vmx/svm and /dev/kvm works; otherwise TCG with a
capped translation cache. ``libvirt_virt_type`` (inventory) or
``LABCTL_LIBVIRT_VIRT_TYPE`` force one. ``systemd.show_status=1`` keeps boot progress
on the serial console even with ``quiet``, so a readiness timeout can show it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import jinja2
import libvirt

from labctl.errors import LabError
from labctl.providers.base import HostRecord, HostSpec, NetworkSpec, Provider

DEFAULT_URI = "qemu:///system"
METADATA_NS = "urn:labctl:host:1"
TB_CACHE_MIB = 128  # capped TCG translation cache: ~300-400 MB per VM instead of ~570
VIRT_TYPE_ENV = "LABCTL_LIBVIRT_VIRT_TYPE"  # force "kvm" or "qemu"
URIS_FILE = "libvirt.json"
ROOT_DEVICE = "/dev/nvme0n1"  # the built-in NVMe driver finds it without an initrd
ROOT_DRIVE_ID = "labroot"

KVM_GET_API_VERSION = 0xAE00
KVM_CREATE_VM = 0xAE01
KVM_API_VERSION = 12

LIBVIRTD_SOCK = Path("/run/libvirt/libvirt-sock")
VIRTLOGD_SOCK = Path("/run/libvirt/virtlogd-sock")

# libvirt prints every error to stderr by default; ours become LabErrors instead
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

_templates = jinja2.Environment(
    loader=jinja2.PackageLoader("labctl.providers", "templates"),
    autoescape=True,  # XML: quotes/ampersands in values are escaped, not injected
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
)

# ---------------------------------------------------------------- pure helpers


def network_name(lab_name: str) -> str:
    return f"labctl-{lab_name}"


def domain_name(lab_name: str, host_name: str) -> str:
    return f"labctl-{lab_name}-{host_name}"


def mac_address(lab_name: str, host_name: str) -> str:
    """A stable MAC per host, so a recreated VM does not leave a stale ARP entry behind."""
    digest = hashlib.sha256(f"{lab_name}/{host_name}".encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])


_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def kernel_cmdline(spec: HostSpec) -> str:
    """The guest's identity: hostname, static address and root's SSH key.

    The key is a systemd credential (``ssh.authorized_keys.root``); it contains spaces,
    so the whole parameter is double-quoted, which the kernel honours.
    """
    if not _HOSTNAME.match(spec.name):
        raise LabError(
            f"host {spec.name!r}: not usable as a hostname (letters, digits and '-', "
            "at most 63 characters); rename it in the inventory"
        )
    key = spec.public_key.strip()
    if not key or any(c in key for c in '"\n\r'):
        raise LabError(
            f"host {spec.name}: the lab's public key must be one line without double quotes"
        )
    netmask = spec.network.cidr.netmask
    ip = f"ip={spec.address}::{spec.network.gateway}:{netmask}::eth0:off"
    return " ".join(
        [
            # rootwait: the NVMe drive is probed asynchronously; rootfstype skips probing
            f"root={ROOT_DEVICE} rootfstype=ext4 rootwait rw",
            "console=ttyS0 net.ifnames=0 quiet systemd.show_status=1",
            # throwaway lab guests: no Spectre/Meltdown barriers, no crypto self-tests
            # (both cost noticeable time under TCG); no timer-IRQ check at boot; and
            # trust the TSC: on a busy host the clocksource watchdog saw a descheduled
            # TCG guest's HPET "delay", marked the TSC unstable and switched to HPET,
            # whose every clock read is an emulated MMIO access
            "mitigations=off cryptomgr.notests no_timer_check tsc=reliable",
            f"systemd.hostname={spec.name}",
            ip,
            f'"systemd.set_credential=ssh.authorized_keys.root:{key}"',
        ]
    )


@dataclass(frozen=True)
class DomainParams:
    lab_name: str
    host_name: str
    virt_type: str  # "kvm" or "qemu" (TCG)
    cpus: int
    memory_mb: int
    kernel: Path
    cmdline: str
    overlay: Path
    console_log: Path
    network_name: str
    mac: str
    tb_cache_mib: int = TB_CACHE_MIB


def qemu_option_value(value: str) -> str:
    """A value inside a qemu ``-drive`` option list: commas are doubled."""
    return value.replace(",", ",,")


def root_drive_args(overlay: Path) -> list[str]:
    """qemu arguments attaching the overlay as the guest's NVMe root drive."""
    drive = ",".join(
        [
            f"file={qemu_option_value(str(overlay))}",
            "format=qcow2",
            "if=none",
            f"id={ROOT_DRIVE_ID}",
            "discard=unmap",
        ]
    )
    # JSON: qemu creates JSON -devices in command-line order, after libvirt's (also
    # JSON); a key=value -device would be created first and take a slot libvirt assigned.
    device = json.dumps({"driver": "nvme", "drive": ROOT_DRIVE_ID, "serial": ROOT_DRIVE_ID})
    return ["-drive", drive, "-device", device]


def render_domain_xml(p: DomainParams) -> str:
    if p.virt_type not in ("kvm", "qemu"):
        raise LabError(f"virt type must be 'kvm' or 'qemu', not {p.virt_type!r}")
    if any(c in str(p.overlay) for c in "\n\r"):
        raise LabError(f"overlay path {str(p.overlay)!r} has a line break: choose another LABCTL_HOME")
    return _templates.get_template("domain.xml.j2").render(
        domain_name=domain_name(p.lab_name, p.host_name),
        metadata_ns=METADATA_NS,
        lab_name=p.lab_name,
        host_name=p.host_name,
        virt_type=p.virt_type,
        cpus=p.cpus,
        memory_mb=p.memory_mb,
        kernel=p.kernel,
        cmdline=p.cmdline,
        qemu_args=root_drive_args(p.overlay),
        console_log=p.console_log,
        network_name=p.network_name,
        mac=p.mac,
        tb_cache_mib=p.tb_cache_mib,
    )


def dac_owner(capabilities_xml: str, virt_type: str) -> tuple[int, int] | None:
    """uid and gid qemu runs as, from the DAC base label in libvirt's capabilities
    (``<baselabel type='qemu'>+64055:+64055</baselabel>``); None when there is none."""
    root = ET.fromstring(capabilities_xml)
    for model in root.iter("secmodel"):
        if (model.findtext("model") or "").strip() != "dac":
            continue
        for label in model.iter("baselabel"):
            if label.get("type") != virt_type:
                continue
            match = re.fullmatch(r"\+?(\d+):\+?(\d+)", (label.text or "").strip())
            if match:
                return int(match.group(1)), int(match.group(2))
    return None


def check_bridge_name(bridge: str) -> None:
    if not bridge or len(bridge) > 15 or not re.match(r"^[A-Za-z0-9_.-]+$", bridge):
        raise LabError(
            f"bridge name {bridge!r} is not a valid Linux interface name (1-15 of [A-Za-z0-9_.-])"
        )


def render_network_xml(net: NetworkSpec) -> str:
    check_bridge_name(net.bridge)
    gateway = ipaddress.IPv4Address(net.gateway)
    if gateway not in net.cidr:
        raise LabError(f"lab {net.lab_name}: gateway {gateway} is outside the lab network {net.cidr}")
    return _templates.get_template("network.xml.j2").render(
        network_name=network_name(net.lab_name),
        bridge=net.bridge,
        gateway=gateway,
        netmask=net.cidr.netmask,
    )


def is_local_uri(uri: str) -> bool:
    """``qemu:///system`` is local; ``qemu+ssh://h/system`` names another hypervisor."""
    return not urlparse(uri).netloc


def uses_local_daemons(uri: str) -> bool:
    """qemu:///system needs this machine's libvirtd; test:///default (in-process) does not."""
    return is_local_uri(uri) and urlparse(uri).scheme.startswith("qemu")


def host_uri(spec_vars: dict[str, Any], default: str) -> str:
    return str(spec_vars.get("libvirt_uri") or default)


def host_virt_type_override(spec_vars: dict[str, Any]) -> str | None:
    value = spec_vars.get("libvirt_virt_type") or os.environ.get(VIRT_TYPE_ENV)
    if value and value not in ("kvm", "qemu"):
        raise LabError(f"libvirt_virt_type / {VIRT_TYPE_ENV} must be 'kvm' or 'qemu', not {value!r}")
    return value or None


# ---------------------------------------------------------------- host checks


def cpu_has_virtualization(cpuinfo: str) -> bool:
    """vmx (Intel) or svm (AMD) among the CPU flags."""
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags = set(line.partition(":")[2].split())
            return bool(flags & {"vmx", "svm"})
    return False


def local_kvm_usable(device: str = "/dev/kvm", cpuinfo: str | None = None) -> bool:
    """True when this machine can run KVM guests.

    The CPU must advertise vmx/svm, and the device must open, speak API 12 and make a
    VM. The flag check matters: on some nested setups /dev/kvm answers every ioctl yet
    guests never get past the first instructions.
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    if not cpu_has_virtualization(cpuinfo):
        return False
    try:
        fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        if fcntl.ioctl(fd, KVM_GET_API_VERSION) != KVM_API_VERSION:
            return False
        vm_fd = fcntl.ioctl(fd, KVM_CREATE_VM, 0)
        os.close(vm_fd)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _socket_answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect(str(path))
            return True
        except OSError:
            return False


def _wait_for_socket(path: Path, deadline_s: float) -> bool:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if _socket_answers(path):
            return True
        time.sleep(0.05)
    return False


_daemons_lock = threading.Lock()


def daemons_refusal(missing: list[str], systemd: bool, root: bool) -> str | None:
    """Why we will not start the missing daemons ourselves (and what to run), or None."""
    if not missing:
        return None
    if systemd:
        units = " ".join(f"{name}.socket" for name in missing)
        return f"{', '.join(missing)} not running: run `systemctl start {units}`"
    if not root:
        return f"{', '.join(missing)} not running: as root run " + "; ".join(
            f"{name} -d" for name in missing
        )
    return None


def ensure_local_daemons() -> list[str]:
    """Make sure virtlogd and libvirtd answer; start them when we may, else say what to run.

    Without systemd as PID 1 nothing starts them, and a domain with a serial log fails
    with "Failed to connect socket to '/run/libvirt/virtlogd-sock'". Returns the names
    of the daemons started (they keep running: they are the machine's services).
    """
    with _daemons_lock:
        missing = [
            name
            for name, sock in (("virtlogd", VIRTLOGD_SOCK), ("libvirtd", LIBVIRTD_SOCK))
            if not _socket_answers(sock)
        ]
        if not missing:
            return []
        refusal = daemons_refusal(missing, Path("/run/systemd/system").is_dir(), os.geteuid() == 0)
        if refusal:
            raise LabError(refusal)
        for name in missing:
            exe = shutil.which(name) or f"/usr/sbin/{name}"
            if not os.path.exists(exe):
                raise LabError(f"{name} is not installed: apt-get install libvirt-daemon-system")
            subprocess.run([exe, "-d"], check=True, stdin=subprocess.DEVNULL)
            sock = VIRTLOGD_SOCK if name == "virtlogd" else LIBVIRTD_SOCK
            if not _wait_for_socket(sock, 15.0):
                raise LabError(f"started `{name} -d` but {sock} did not answer within 15 s")
        return missing


LIBVIRT_STATE_DIRS = (Path("/var/lib/libvirt/dnsmasq"),)


def ensure_local_state_dirs() -> None:
    """Directories libvirt writes to when a domain joins a network (even one without
    DHCP: it records the MACs there); minimal installs can lack them."""
    for directory in LIBVIRT_STATE_DIRS:
        if directory.is_dir():
            continue
        if os.geteuid() != 0:
            raise LabError(f"{directory} is missing: as root run `mkdir -p {directory}`")
        directory.mkdir(mode=0o755, parents=True, exist_ok=True)


def ensure_traversable(path: Path, stop_at: Path | None = None) -> None:
    """qemu runs as libvirt-qemu: every directory above its files needs o+x.

    Directories below ``stop_at`` (ours) are fixed; others are reported.
    """
    for directory in [path, *path.parents]:
        mode = directory.stat().st_mode
        if mode & 0o001:
            continue
        if stop_at is not None and (directory == stop_at or stop_at in directory.parents):
            directory.chmod(mode | 0o001)
            continue
        raise LabError(
            f"{directory} is not searchable by others (mode {oct(mode & 0o777)}), so qemu "
            f"(user libvirt-qemu) cannot reach {path}: run `chmod o+x {directory}` or set "
            "LABCTL_HOME to a directory under a searchable path"
        )


# ---------------------------------------------------------------- the provider


def _err_code(exc: libvirt.libvirtError) -> int:
    return exc.get_error_code()


def _libvirt_error(what: str, exc: libvirt.libvirtError) -> LabError:
    message = str(exc)
    if "virtlogd-sock" in message:
        return LabError(f"{what}: virtlogd is not running ({message}); run `virtlogd -d` as root")
    return LabError(f"{what}: {message}")


class LibvirtProvider(Provider):
    name = "libvirt"

    def __init__(self, lab_root: Path, *, default_uri: str | None = None, image=None):
        super().__init__(lab_root)
        self.lab_name = lab_root.name
        self.default_uri = default_uri or os.environ.get("LABCTL_LIBVIRT_URI") or DEFAULT_URI
        self._image = image
        self._lock = threading.RLock()
        self._conns: dict[str, libvirt.virConnect] = {}
        self._networks_ready: set[str] = set()
        self._virt_types: dict[str, str] = {}
        self._dac_owners: dict[tuple[str, str], tuple[int, int] | None] = {}

    # -- paths

    @property
    def vms_dir(self) -> Path:
        return self.lab_root / "vms"

    def overlay_path(self, host: str) -> Path:
        return self.vms_dir / f"{host}.qcow2"

    def console_path(self, host: str) -> Path:
        return self.lab_root / "logs" / f"{host}.console.log"

    # -- connections and remembered URIs

    def _conn(self, uri: str) -> libvirt.virConnect:
        with self._lock:
            conn = self._conns.get(uri)
            if conn is not None and conn.isAlive():
                return conn
            if uses_local_daemons(uri):
                ensure_local_daemons()
                ensure_local_state_dirs()
            try:
                conn = libvirt.open(uri)
            except libvirt.libvirtError as exc:
                raise LabError(
                    f"cannot connect to libvirt at {uri}: {exc}; check that libvirtd runs there"
                ) from exc
            self._conns[uri] = conn
            return conn

    def _uris_file(self) -> Path:
        return self.lab_root / URIS_FILE

    def known_uris(self) -> list[str]:
        try:
            data = json.loads(self._uris_file().read_text())
            return list(data.get("uris", []))
        except FileNotFoundError:
            return []
        except ValueError as exc:
            raise LabError(f"{self._uris_file()}: unreadable ({exc})") from exc

    def _remember_uri(self, uri: str) -> None:
        with self._lock:
            uris = self.known_uris()
            if uri in uris:
                return
            self.lab_root.mkdir(parents=True, exist_ok=True)
            tmp = self._uris_file().with_suffix(".tmp")
            tmp.write_text(json.dumps({"uris": [*uris, uri]}, indent=2) + "\n")
            os.replace(tmp, self._uris_file())

    def _virt_type(self, uri: str, override: str | None) -> str:
        if override:
            return override
        with self._lock:
            if uri not in self._virt_types:
                if is_local_uri(uri):
                    kvm = local_kvm_usable()
                else:
                    try:
                        self._conn(uri).getDomainCapabilities(None, "x86_64", None, "kvm")
                        kvm = True
                    except libvirt.libvirtError:
                        kvm = False
                self._virt_types[uri] = "kvm" if kvm else "qemu"
            return self._virt_types[uri]

    def _base_image(self):
        with self._lock:
            if self._image is None:
                from labctl.images import ensure_base_image

                self._image = ensure_base_image()
            return self._image

    # -- network

    def ensure_network(self, net: NetworkSpec) -> None:
        self._ensure_network_on(self.default_uri, net)

    def _ensure_network_on(self, uri: str, net: NetworkSpec) -> None:
        with self._lock:
            if uri in self._networks_ready:
                return
            xml = render_network_xml(net)
            conn = self._conn(uri)
            self._remember_uri(uri)
            name = network_name(net.lab_name)
            try:
                network = conn.networkLookupByName(name)
            except libvirt.libvirtError as exc:
                if _err_code(exc) != libvirt.VIR_ERR_NO_NETWORK:
                    raise _libvirt_error(f"looking up network {name} on {uri}", exc) from exc
                network = None
            if network is not None:
                self._check_same_network(network, net, uri)
            else:
                try:
                    network = conn.networkDefineXML(xml)
                except libvirt.libvirtError as exc:
                    raise _libvirt_error(f"defining network {name} on {uri}", exc) from exc
            if not network.isActive():
                try:
                    network.create()
                except libvirt.libvirtError as exc:
                    raise _libvirt_error(
                        f"starting network {name} (bridge {net.bridge}) on {uri}", exc
                    ) from exc
            self._networks_ready.add(uri)

    @staticmethod
    def _check_same_network(network, net: NetworkSpec, uri: str) -> None:
        current = network.XMLDesc(0)
        wanted_bridge = f"name='{net.bridge}'"
        wanted_ip = f"address='{net.gateway}'"
        if wanted_bridge not in current or wanted_ip not in current:
            raise LabError(
                f"libvirt network {network.name()} on {uri} exists with another bridge or "
                f"address than lab {net.lab_name} wants ({net.bridge}, {net.gateway}): "
                "run `labctl down` for the lab, then `labctl up` again"
            )

    def destroy_network(self, net: NetworkSpec) -> None:
        name = network_name(net.lab_name)
        uris = self.known_uris() or [self.default_uri]
        for uri in uris:
            conn = self._conn(uri)
            try:
                network = conn.networkLookupByName(name)
            except libvirt.libvirtError as exc:
                if _err_code(exc) == libvirt.VIR_ERR_NO_NETWORK:
                    continue
                raise _libvirt_error(f"looking up network {name} on {uri}", exc) from exc
            try:
                if network.isActive():
                    network.destroy()
                if network.isPersistent():
                    network.undefine()
            except libvirt.libvirtError as exc:
                if _err_code(exc) != libvirt.VIR_ERR_NO_NETWORK:
                    raise _libvirt_error(f"removing network {name} on {uri}", exc) from exc
        with self._lock:
            self._networks_ready.clear()
            self._uris_file().unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                self.vms_dir.rmdir()  # the lab is going away; only removed when empty

    # -- hosts

    def create(self, spec: HostSpec) -> HostRecord:
        uri = host_uri(spec.vars, self.default_uri)
        self._require_local(uri, spec.name)
        self._ensure_network_on(uri, spec.network)
        image = self._base_image()
        virt_type = self._virt_type(uri, host_virt_type_override(spec.vars))
        overlay = self.overlay_path(spec.name)
        console = self.console_path(spec.name)
        dom_name = domain_name(self.lab_name, spec.name)
        record = HostRecord(
            name=spec.name,
            provider=self.name,
            address=spec.address,
            details={
                "uri": uri,
                "domain": dom_name,
                "overlay": str(overlay),
                "console_log": str(console),
                "virt_type": virt_type,
                "base_image": str(image.qcow2),
            },
        )
        # leftovers of an interrupted run are replaced, never reused half-made
        self.destroy(record)
        self.vms_dir.mkdir(parents=True, exist_ok=True)
        console.parent.mkdir(parents=True, exist_ok=True)
        ensure_traversable(self.vms_dir, stop_at=self.lab_root.parent.parent)
        ensure_traversable(Path(image.qcow2).parent)
        self._make_overlay(Path(image.qcow2), overlay)
        self._give_to_qemu(uri, virt_type, overlay)
        xml = render_domain_xml(
            DomainParams(
                lab_name=self.lab_name,
                host_name=spec.name,
                virt_type=virt_type,
                cpus=spec.cpus,
                memory_mb=spec.memory_mb,
                kernel=Path(image.kernel),
                cmdline=kernel_cmdline(spec),
                overlay=overlay,
                console_log=console,
                network_name=network_name(spec.network.lab_name),
                mac=mac_address(self.lab_name, spec.name),
            )
        )
        conn = self._conn(uri)
        try:
            domain = conn.defineXML(xml)
            domain.create()
        except libvirt.libvirtError as exc:
            with contextlib.suppress(LabError):
                self.destroy(record)
            raise _libvirt_error(f"host {spec.name}: starting VM {dom_name} on {uri}", exc) from exc
        return record

    @staticmethod
    def _require_local(uri: str, host: str) -> None:
        if not is_local_uri(uri):
            raise LabError(
                f"host {host}: libvirt_uri {uri} names a remote hypervisor; remote VMs need "
                "the base image there and a network reaching across machines, which labctl "
                "does not set up yet: use a local URI such as qemu:///system"
            )

    @staticmethod
    def _make_overlay(base: Path, overlay: Path) -> None:
        if not base.exists():
            raise LabError(f"base image {base} is missing: run `labctl image build`")
        result = subprocess.run(
            ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base), "-F", "qcow2", str(overlay)],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise LabError(f"qemu-img could not create overlay {overlay}: {result.stderr.strip()}")

    def _give_to_qemu(self, uri: str, virt_type: str, overlay: Path) -> None:
        """qemu must write the overlay; libvirt only chowns the disks it manages itself."""
        with self._lock:
            if (uri, virt_type) not in self._dac_owners:
                capabilities = self._conn(uri).getCapabilities()
                self._dac_owners[(uri, virt_type)] = dac_owner(capabilities, virt_type)
            owner = self._dac_owners[(uri, virt_type)]
        if owner is None:
            return  # no DAC driver (e.g. the test driver): qemu runs as whoever we are
        uid, gid = owner
        try:
            os.chown(overlay, uid, gid)
        except OSError as exc:
            raise LabError(
                f"cannot give the VM disk {overlay} to uid {uid} (qemu's user): {exc}; "
                "run labctl as root"
            ) from exc

    def _lookup(self, record: HostRecord):
        uri = record.details.get("uri", self.default_uri)
        name = record.details.get("domain") or domain_name(self.lab_name, record.name)
        try:
            return self._conn(uri).lookupByName(name)
        except libvirt.libvirtError as exc:
            if _err_code(exc) == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise _libvirt_error(f"host {record.name}: looking up VM {name} on {uri}", exc) from exc

    def state(self, record: HostRecord) -> str:
        domain = self._lookup(record)
        if domain is None:
            return "missing"
        return "running" if domain.isActive() else "stopped"

    def start(self, record: HostRecord) -> HostRecord:
        domain = self._lookup(record)
        if domain is None:
            raise LabError(f"host {record.name}: its VM is gone; run `labctl up` to recreate it")
        if not domain.isActive():
            try:
                domain.create()
            except libvirt.libvirtError as exc:
                raise _libvirt_error(f"host {record.name}: starting VM", exc) from exc
        return record

    def stop(self, record: HostRecord, timeout_s: float = 60.0) -> None:
        domain = self._lookup(record)
        if domain is None or not domain.isActive():
            return
        with contextlib.suppress(libvirt.libvirtError):
            domain.shutdown()  # ACPI power button: systemd shuts down cleanly
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if not domain.isActive():
                    return
            except libvirt.libvirtError:
                return
            time.sleep(0.2)
        with contextlib.suppress(libvirt.libvirtError):
            domain.destroy()

    def destroy(self, record: HostRecord) -> None:
        domain = self._lookup(record)
        if domain is not None:
            try:
                if domain.isActive():
                    domain.destroy()
                domain.undefine()
            except libvirt.libvirtError as exc:
                if _err_code(exc) != libvirt.VIR_ERR_NO_DOMAIN:
                    raise _libvirt_error(f"host {record.name}: removing VM", exc) from exc
        overlay = Path(record.details.get("overlay") or self.overlay_path(record.name))
        overlay.unlink(missing_ok=True)
        console = Path(record.details.get("console_log") or self.console_path(record.name))
        console.unlink(missing_ok=True)

    def console_log(self, record: HostRecord) -> Path:
        return Path(record.details.get("console_log") or self.console_path(record.name))

    def close(self) -> None:
        with self._lock:
            for conn in self._conns.values():
                with contextlib.suppress(libvirt.libvirtError):
                    conn.close()
            self._conns.clear()
