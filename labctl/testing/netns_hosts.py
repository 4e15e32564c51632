"""Throw-away SSH hosts made of network namespaces: a test double for real lab hosts.

Each host is a network namespace on a private bridge, with its own mount, UTS and
PID namespaces, running its own ``sshd`` (own host key, hostname, authorized_keys).
Its /etc, /root, /home, /var, /opt, /srv and /usr/local are overlays on the lab
machine's directories (writes stay in the host's own upper directory) and /run and
/tmp are tmpfs, so roles can change files freely; programs come from the lab
machine (python3 included). No systemd, no image, ~10 MB and a few ms per host.

    with NetnsHosts(count=3, workdir=tmp_path) as farm:
        conn = Connection(h.name, h.address, key_path=farm.key_path,
                          known_hosts=farm.known_hosts)

Needs root and ``ip``, ``unshare``, ``/usr/sbin/sshd``. ``prefix`` and ``cidr`` default
to an unused pair, so several farms (and several test runs) can live side by side.
Pitfalls this module avoids (measured): an un-overlaid path created inside the host
lands on the real filesystem; sshd's StrictModes rejects authorized_keys under a
world-writable directory; without an empty resolv.conf name lookups hang; shell rc
files slow every command.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from labctl.errors import LabError
from labctl.sshkeys import KnownHosts, fingerprint, new_ed25519_openssh, write_openssh_keypair

SSHD = "/usr/sbin/sshd"
# Directories each host gets its own copy-on-write view of; /run and /tmp are tmpfs.
OVERLAID = ("/etc", "/root", "/home", "/var", "/opt", "/srv", "/usr/local")
# Directories that start empty in a host instead of showing the lab machine's files: they
# are bind mounts of the host's own directory (an overlay's root is always merged).
PRIVATE = ("/root",)
PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{0,7}$")
# Auto-allocated /24s come from here; a lock file serialises allocation across processes.
AUTO_SUPERNET = ipaddress.ip_network("10.213.0.0/16")
ALLOC_LOCK = Path("/run/labctl-netns-hosts.lock")

SSHD_CONFIG = """\
# written by labctl.testing.netns_hosts
ListenAddress {address}:{port}
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PubkeyAuthentication yes
AuthorizedKeysFile .ssh/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
UseDNS no
PrintMotd no
PidFile /run/sshd.pid
# the engine and the tests open many channels on one connection
MaxSessions 64
MaxStartups 64:30:128
AcceptEnv LANG LC_*
Subsystem sftp internal-sftp
"""

BOOT_SCRIPT = """\
#!/bin/sh
# Runs as PID 1 of the host's namespaces; ends by becoming sshd.
set -eu
ip link set lo up
ip addr replace {address}/{prefixlen} dev eth0  # "replace": the netns outlives a restart
ip link set eth0 up
hostname {name}
{overlay_mounts}
mount -t tmpfs -o mode=0755,size=64m tmpfs /run
mount -t tmpfs -o mode=1777,size=256m tmpfs /tmp
mkdir -m 0755 /run/sshd
exec {sshd} -D -e -f /etc/ssh/sshd_config
"""


@dataclass
class NetnsHost:
    name: str
    address: str
    port: int = 22
    pid: int | None = None  # sshd's PID as seen from the lab machine; None while stopped
    netns: str = ""
    veth: str = ""
    dir: Path = field(default_factory=Path)
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def log_path(self) -> Path:
        return self.dir / "sshd.log"

    @property
    def host_key_path(self) -> Path:
        return self.dir / "etc" / "upper" / "ssh" / "ssh_host_ed25519_key"

    def upper(self, path: str) -> Path:
        """Where a file the host wrote under an overlaid directory lives on the lab machine."""
        for top in sorted(OVERLAID, key=len, reverse=True):
            if path == top or path.startswith(top + "/"):
                return (
                    self.dir
                    / top.strip("/").replace("/", "_")
                    / "upper"
                    / path[len(top) :].lstrip("/")
                )
        raise LabError(f"{path} is not under a directory overlaid per host ({', '.join(OVERLAID)})")


def _ip_batch(commands: list[str], *, force: bool = False) -> None:
    args = ["ip", "-force", "-batch", "-"] if force else ["ip", "-batch", "-"]
    proc = subprocess.run(args, input="\n".join(commands) + "\n", capture_output=True, text=True)
    if proc.returncode != 0 and not force:
        raise LabError(
            f"ip -batch failed: {proc.stderr.strip()}\ncommands:\n" + "\n".join(commands)
        )


def _link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def _netns_exists(name: str) -> bool:
    return Path("/run/netns", name).exists()


def _networks_in_use() -> list[ipaddress.IPv4Network]:
    out = subprocess.run(
        ["ip", "-j", "-4", "route", "show", "table", "all"], capture_output=True, text=True
    )
    nets = []
    for route in json.loads(out.stdout or "[]"):
        dst = route.get("dst", "")
        if dst and dst != "default":
            with contextlib.suppress(ValueError):
                nets.append(ipaddress.ip_network(dst, strict=False))
    return nets


@contextlib.contextmanager
def _allocation_lock() -> Iterator[None]:
    fd = os.open(ALLOC_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class NetnsHosts:
    """A farm of ``count`` sshd hosts; a context manager that always tears down."""

    def __init__(
        self,
        count: int = 3,
        prefix: str | None = None,
        cidr: str | None = None,
        *,
        workdir: Path,
        names: list[str] | None = None,
        boot_timeout: float = 10.0,
    ) -> None:
        if names is not None:
            count = len(names)
        if count < 1:
            raise LabError(f"NetnsHosts needs at least one host, got count={count}")
        if prefix is not None and not PREFIX_RE.match(prefix):
            raise LabError(
                f"netns host prefix {prefix!r} must be 1-8 lowercase letters/digits starting "
                "with a letter (bridge and veth names are limited to 15 characters)"
            )
        self.count = count
        self.prefix = prefix
        self.cidr = cidr
        self.workdir = Path(workdir).absolute()
        self.names = names or []
        self.boot_timeout = boot_timeout
        self.hosts: list[NetnsHost] = []
        self.bridge = ""
        self.key_path = self.workdir / "client_ed25519"
        self.known_hosts = self.workdir / "known_hosts"
        self.public_key = ""
        self._network: ipaddress.IPv4Network | None = None
        self._created: list[Path] = []
        self._netns_made: list[str] = []
        self._bridge_made = False
        self._lock = threading.Lock()

    # -- lifecycle -----------------------------------------------------------------

    def __enter__(self) -> NetnsHosts:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with _allocation_lock():
            self._allocate()
            self._make_host_files()
            self._make_network()
        for host in self.hosts:
            self._spawn(host)
        deadline = time.monotonic() + self.boot_timeout
        for host in self.hosts:
            self._wait_listening(host, deadline)

    def stop(self) -> None:
        """Stop every sshd, delete namespaces, veths, the bridge and the files made."""
        errors = []
        for host in self.hosts:  # all at once, then wait for each
            self._signal(host, signal.SIGTERM)
        for host in self.hosts:
            try:
                self.stop_host(host.name)
            except Exception as exc:  # keep tearing down the rest
                errors.append(f"{host.name}: {exc}")
        commands = [f"link del {h.veth}" for h in self.hosts if _link_exists(h.veth)]
        commands += [f"netns del {ns}" for ns in self._netns_made if _netns_exists(ns)]
        if self._bridge_made and _link_exists(self.bridge):
            commands.append(f"link del {self.bridge}")
        if commands:
            _ip_batch(commands, force=True)
        self._netns_made.clear()
        self._bridge_made = False
        for path in reversed(self._created):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        self._created.clear()
        if errors:
            raise LabError("netns hosts teardown: " + "; ".join(errors))

    # -- per-host control (for tests: unreachable hosts, hosts that boot late) --------

    def host(self, name: str) -> NetnsHost:
        for host in self.hosts:
            if host.name == name:
                return host
        raise LabError(
            f"no netns host named {name!r} (have: {', '.join(h.name for h in self.hosts)})"
        )

    def stop_host(self, name: str, timeout: float = 5.0) -> None:
        """SIGTERM the host's sshd (PID 1 of its namespaces: everything in it ends), then SIGKILL."""
        host = self.host(name)
        proc = host.process
        if proc is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            self._signal(host, sig)
            try:
                proc.wait(timeout=timeout)
                break
            except subprocess.TimeoutExpired:
                continue
        else:
            raise LabError(
                f"netns host {name}: unshare (pid {proc.pid}) did not exit after SIGKILL"
            )
        host.process, host.pid = None, None

    @staticmethod
    def _signal(host: NetnsHost, sig: int) -> None:
        proc = host.process
        if proc is None or proc.poll() is not None:
            return
        # sshd is unshare's only child; unshare itself (--kill-child) takes it down on SIGKILL
        sshd = host.pid or _only_child(proc.pid)
        targets = [sshd] if sig == signal.SIGTERM and sshd else [sshd, proc.pid]
        for pid in targets:
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)

    def start_host(self, name: str, *, wait: bool = True) -> None:
        host = self.host(name)
        if host.process is not None:
            return
        self._spawn(host)
        if wait:
            self._wait_listening(host, time.monotonic() + self.boot_timeout)

    def restart_host(self, name: str) -> None:
        self.stop_host(name)
        self.start_host(name)

    def regenerate_host_key(self, name: str) -> str:
        """Give a host a new host key (as a re-created host would have); pins are NOT updated.

        Returns the new key's fingerprint. The host restarts if it was running.
        """
        host = self.host(name)
        running = host.process is not None
        self.stop_host(name)
        private, public = new_ed25519_openssh()
        self._write_host_key(host, private, public)
        if running:
            self.start_host(name)
        return fingerprint(public.split()[1])

    # -- inventory -------------------------------------------------------------------

    def write_inventory(
        self,
        path: Path,
        groups: dict[str, list[str]] | None = None,
        *,
        extra_vars: dict | None = None,
    ) -> Path:
        """An Ansible YAML inventory of these hosts that ansible-core can use as is."""
        path = Path(path)
        common_args = f"-o UserKnownHostsFile={self.known_hosts} -o StrictHostKeyChecking=yes"
        hosts = {}
        for host in self.hosts:
            hvars: dict = {"ansible_host": host.address}
            if host.port != 22:
                hvars["ansible_port"] = host.port
            hosts[host.name] = hvars
        all_vars = {
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(self.key_path),
            "ansible_ssh_common_args": common_args,
            "ansible_python_interpreter": "/usr/bin/python3",
            "lab_network": self.cidr,  # labctl checks that ansible_host lies in it
            **(extra_vars or {}),
        }
        inventory: dict = {"all": {"hosts": hosts, "vars": all_vars}}
        if groups:
            known = {h.name for h in self.hosts}
            children = {}
            for group, members in groups.items():
                unknown = [m for m in members if m not in known]
                if unknown:
                    raise LabError(
                        f"group {group!r} names unknown netns hosts: {', '.join(unknown)}"
                    )
                children[group] = {"hosts": {m: {} for m in members}}
            inventory["all"]["children"] = children
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(inventory, sort_keys=False))
        if path.absolute().is_relative_to(self.workdir):
            self._created.append(path)
        return path

    # -- internals -------------------------------------------------------------------

    def _allocate(self) -> None:
        in_use = _networks_in_use()
        if self.cidr is None:
            for candidate in AUTO_SUPERNET.subnets(new_prefix=24):
                if candidate.network_address.packed[2] == 0:
                    continue
                if not any(candidate.overlaps(net) for net in in_use):
                    self._network = candidate
                    break
            else:
                raise LabError(f"no free /24 left in {AUTO_SUPERNET} for netns hosts")
        else:
            network = ipaddress.ip_network(self.cidr, strict=False)
            clash = [str(n) for n in in_use if n.overlaps(network)]
            if clash:
                raise LabError(
                    f"netns hosts cidr {network} overlaps networks already routed here ({', '.join(clash)}); "
                    "pick another cidr or leave it unset to get a free one"
                )
            self._network = network
        self.cidr = str(self._network)
        if self.count + 1 > self._network.num_addresses - 2:
            raise LabError(f"cidr {self.cidr} is too small for {self.count} hosts plus the bridge")
        if self.prefix is None:
            while True:
                self.prefix = "n" + secrets.token_hex(3)
                if not _link_exists(f"{self.prefix}-br"):
                    break
        self.bridge = f"{self.prefix}-br"
        if _link_exists(self.bridge):
            raise LabError(
                f"bridge {self.bridge} already exists: another NetnsHosts with prefix {self.prefix!r} "
                "is running, or an earlier run was killed (remove its netns "
                f"{self.prefix}-* and link {self.bridge})"
            )
        addresses = self._network.hosts()
        self.bridge_address = str(next(addresses))
        names = self.names or [f"{self.prefix}{i}" for i in range(1, self.count + 1)]
        if len(set(names)) != len(names):
            raise LabError(f"netns host names must be unique: {names}")
        for i, name in enumerate(names, start=1):
            netns = f"{self.prefix}-{i}"
            if _netns_exists(netns):
                raise LabError(
                    f"network namespace {netns} already exists (left over from a killed run?)"
                )
            self.hosts.append(
                NetnsHost(
                    name=name,
                    address=str(next(addresses)),
                    netns=netns,
                    veth=f"{self.prefix}-v{i}",
                    dir=self.workdir / "hosts" / name,
                )
            )

    def _make_host_files(self) -> None:
        for path in (
            self.key_path,
            self.key_path.with_name(self.key_path.name + ".pub"),
            self.known_hosts,
        ):
            if path.exists():
                raise LabError(f"{path} already exists: give each NetnsHosts its own workdir")
        hosts_dir = self.workdir / "hosts"
        if not hosts_dir.exists():
            self._created.append(hosts_dir)
        self._created += [
            self.key_path,
            self.key_path.with_name(self.key_path.name + ".pub"),
            self.known_hosts,
        ]
        self.public_key = write_openssh_keypair(self.key_path)
        self.known_hosts.touch(mode=0o644)
        etc_hosts = Path("/etc/hosts").read_text()
        etc_hosts += "".join(f"{h.address}\t{h.name}\n" for h in self.hosts)
        for host in self.hosts:
            self._make_host_dir(host, etc_hosts)

    def _make_host_dir(self, host: NetnsHost, etc_hosts: str) -> None:
        for top in OVERLAID:
            base = host.dir / top.strip("/").replace("/", "_")
            (base / "work").mkdir(parents=True, exist_ok=True)
            upper = base / "upper"
            upper.mkdir(exist_ok=True)
            lower = os.stat(top)
            os.chown(upper, lower.st_uid, lower.st_gid)
            upper.chmod(lower.st_mode & 0o7777)
        etc = host.dir / "etc" / "upper"
        (etc / "ssh").mkdir(mode=0o755, exist_ok=True)
        (etc / "hostname").write_text(host.name + "\n")
        (etc / "hosts").write_text(etc_hosts)
        (etc / "resolv.conf").write_text(
            ""
        )  # no nameserver: lookups fail at once instead of hanging
        (etc / "machine-id").write_text(secrets.token_hex(16) + "\n")
        (etc / "ssh" / "sshd_config").write_text(
            SSHD_CONFIG.format(address=host.address, port=host.port)
        )
        private, public = new_ed25519_openssh()
        self._write_host_key(host, private, public)
        root = host.dir / "root" / "upper"
        (root / ".ssh").mkdir(mode=0o700, exist_ok=True)
        keys = root / ".ssh" / "authorized_keys"
        keys.write_text(self.public_key + "\n")
        keys.chmod(0o600)
        for rc in (".bashrc", ".profile"):
            (root / rc).write_text("")
        mounts = "\n".join(
            f"mount --bind {host.dir}/{d}/upper {top}"
            if top in PRIVATE
            else f"mount -t overlay overlay -o lowerdir={top},upperdir={host.dir}/{d}/upper,"
            f"workdir={host.dir}/{d}/work {top}"
            for top, d in self._overlay_order(host)
        )
        network = self._network
        assert network is not None
        (host.dir / "boot.sh").write_text(
            BOOT_SCRIPT.format(
                address=host.address,
                prefixlen=network.prefixlen,
                name=host.name,
                overlay_mounts=mounts,
                sshd=SSHD,
            )
        )

    def _overlay_order(self, host: NetnsHost) -> list[tuple[str, str]]:
        # The overlay covering the host's own directory must come last, or the later
        # upperdir paths would resolve inside an overlay (which overlayfs refuses).
        def covers_host_dir(top: str) -> bool:
            return host.dir == Path(top) or Path(top) in host.dir.parents

        order = sorted(OVERLAID, key=covers_host_dir)
        return [(top, top.strip("/").replace("/", "_")) for top in order]

    def _write_host_key(self, host: NetnsHost, private: bytes, public: str) -> None:
        key = host.host_key_path
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(private)
        key.with_name(key.name + ".pub").write_text(f"{public} root@{host.name}\n")
        # Pre-pin the first key only: a regenerated key must look "changed" to clients.
        key_type, key_b64 = public.split()[:2]
        if KnownHosts(self.known_hosts).get(_alias(host)) is None:
            KnownHosts(self.known_hosts).pin(_alias(host), key_type, key_b64)

    def _make_network(self) -> None:
        network = self._network
        assert network is not None
        commands = [
            f"link add name {self.bridge} type bridge",
            f"addr add {self.bridge_address}/{network.prefixlen} dev {self.bridge}",
            f"link set {self.bridge} up",
        ]
        self._bridge_made = True
        for host in self.hosts:
            commands += [
                f"netns add {host.netns}",
                f"link add {host.veth} type veth peer name eth0 netns {host.netns}",
                f"link set {host.veth} master {self.bridge} up",
            ]
            self._netns_made.append(host.netns)
        _ip_batch(commands)

    def _spawn(self, host: NetnsHost) -> None:
        log = open(host.log_path, "ab")  # noqa: SIM115 - handed to the child
        try:
            host.process = subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    host.netns,
                    "unshare",
                    "--kill-child",
                    "--mount",
                    "--uts",
                    "--pid",
                    "--fork",
                    "--mount-proc",
                    "--propagation",
                    "private",
                    "/bin/sh",
                    str(host.dir / "boot.sh"),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C reaches us, and we tear down in order
            )
        finally:
            log.close()

    def _wait_listening(self, host: NetnsHost, deadline: float) -> None:
        # Watch the namespace's own socket table first: a TCP probe sent before the
        # address exists waits out an ARP retry (~1 s). Then prove the route with one connect.
        delay = 0.002
        while True:
            proc = host.process
            if proc is None or proc.poll() is not None:
                raise LabError(
                    f"netns host {host.name} exited while starting; its log {host.log_path}:\n"
                    + _tail(host.log_path)
                )
            if _is_listening(proc.pid, host.port):
                break
            if time.monotonic() > deadline:
                raise LabError(
                    f"netns host {host.name} ({host.address}): sshd not listening after "
                    f"{self.boot_timeout:.0f}s; log {host.log_path}:\n" + _tail(host.log_path)
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        try:
            with socket.create_connection(
                (host.address, host.port), timeout=max(0.5, deadline - time.monotonic())
            ):
                pass
        except OSError as exc:
            raise LabError(
                f"netns host {host.name}: sshd listens but {host.address}:{host.port} is unreachable from the lab machine: {exc}"
            ) from exc
        host.pid = _only_child(proc.pid)


def _is_listening(pid: int, port: int) -> bool:
    """Whether a TCP socket listens on ``port`` in the network namespace of ``pid``."""
    try:
        table = Path(f"/proc/{pid}/net/tcp").read_text()
    except OSError:
        return False
    suffix = f":{port:04X}"
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 3 and fields[3] == "0A" and fields[1].endswith(suffix):
            return True
    return False


def _alias(host: NetnsHost) -> str:
    return host.address if host.port == 22 else f"[{host.address}]:{host.port}"


def _only_child(pid: int) -> int | None:
    """The PID of unshare's forked child (the host's PID 1, i.e. sshd)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
