"""The OCI runtime spec (runc's ``config.json``) of a container: a pure function of the
container's config, its image's config and its sandbox.

Rules, as Kubernetes defines them and runc expects them:
- argv: ``command`` replaces the image's entrypoint, ``args`` its cmd; ``command``
  without ``args`` drops the image's cmd.
- env: the image's, then the container's (a later name wins); PATH always set;
  HOSTNAME is the pod's hostname.
- namespaces: own pid, ipc, uts and mount; the sandbox's network namespace joined by
  path (none with host networking: the node's own).
- cpu: a CFS quota of ``millis/1000`` CPUs per 100 ms period (and shares from the same
  millis); memory: a hard limit, the OOM killer acts inside the container's cgroup.
- /etc/hostname, /etc/hosts and /etc/resolv.conf are the sandbox's files, bound in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from agents.runtime.model import ContainerConfig, ImageConfig, RuntimeError_

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CPU_PERIOD_US = 100_000
MIN_CPU_QUOTA_US = 1_000  # the kernel refuses less
# Docker's (and so Kubernetes') default capability set.
DEFAULT_CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
)  # fmt: skip
MASKED_PATHS = (
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
    "/sys/firmware",
)  # fmt: skip
READONLY_PATHS = (
    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
)  # fmt: skip


@dataclass(frozen=True)
class SandboxFiles:
    """What a container takes from its sandbox."""

    hostname: str
    netns_path: str  # "" = host networking
    hostname_file: str
    hosts_file: str
    resolv_conf: str


def container_argv(config: ContainerConfig, image: ImageConfig) -> list[str]:
    if config.command:
        argv = list(config.command) + list(config.args or ())
    else:
        argv = list(image.entrypoint) + list(config.args or image.cmd)
    if not argv:
        raise RuntimeError_(
            f"container {config.name!r}: no command to run (image {config.image!r} has no "
            "entrypoint or cmd, and the container gives no command or args)"
        )
    return argv


def container_env(config: ContainerConfig, image: ImageConfig, hostname: str) -> list[str]:
    env: dict[str, str] = {"PATH": DEFAULT_PATH}
    for item in image.env:
        name, _, value = item.partition("=")
        env[name] = value
    env["HOSTNAME"] = hostname
    if config.tty:
        env["TERM"] = "xterm"
    for name, value in config.env_pairs():
        if not name or "=" in name:
            raise RuntimeError_(f"container {config.name!r}: invalid environment name {name!r}")
        env[name] = value
    return [f"{k}={v}" for k, v in env.items()]


def cpu_resources(millis: int) -> dict:
    if millis <= 0:
        return {}
    quota = max(MIN_CPU_QUOTA_US, millis * CPU_PERIOD_US // 1000)
    shares = max(2, millis * 1024 // 1000)
    return {"quota": quota, "period": CPU_PERIOD_US, "shares": shares}


def bind(source: str, destination: str, read_only: bool) -> dict:
    options = ["rbind", "rprivate"] + (["ro"] if read_only else ["rw"])
    return {"destination": destination, "type": "bind", "source": source, "options": options}


def base_mounts(host_network: bool) -> list[dict]:
    """/proc, /dev (+ pts, shm, mqueue), /sys and the container's cgroup, read-only.

    With host networking sysfs cannot be mounted afresh (no network namespace of the
    container's own): the node's /sys is bound read-only instead, without cgroups."""
    if host_network:
        system = [bind("/sys", "/sys", True)]
    else:
        system = [
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
        ]  # fmt: skip
    return [
        {"destination": "/proc", "type": "proc", "source": "proc",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        *system,
    ]  # fmt: skip


def check_mount_path(name: str, path: str) -> None:
    if not path.startswith("/") or ".." in path.split("/"):
        raise RuntimeError_(
            f"container {name!r}: mount path {path!r} must be absolute and without '..'"
        )


def oci_spec(
    config: ContainerConfig,
    image: ImageConfig,
    sandbox: SandboxFiles,
    cgroups_path: str,
    rootfs: str = "rootfs",
    cgroup_namespace: bool = False,
) -> dict:
    """The complete ``config.json`` for runc (pure). ``cgroup_namespace``: on a cgroup v2
    host the container gets its own cgroup namespace, so its /sys/fs/cgroup is its own
    cgroup (with its cpu.max, memory.max) instead of the node's root."""
    caps = list(DEFAULT_CAPABILITIES)
    mounts = base_mounts(host_network=sandbox.netns_path == "")
    mounts += [
        bind(sandbox.hostname_file, "/etc/hostname", False),
        bind(sandbox.hosts_file, "/etc/hosts", False),
        bind(sandbox.resolv_conf, "/etc/resolv.conf", False),
    ]
    for m in config.mounts or ():
        check_mount_path(config.name, m.container_path)
        mounts.append(bind(m.host_path, m.container_path, m.read_only))
    namespaces: list[dict] = [{"type": t} for t in ("pid", "ipc", "uts", "mount")]
    if sandbox.netns_path:
        namespaces.append({"type": "network", "path": sandbox.netns_path})
    if cgroup_namespace:
        namespaces.append({"type": "cgroup"})
    resources: dict = {"devices": [{"allow": False, "access": "rwm"}]}
    if cpu := cpu_resources(config.cpu_millis):
        resources["cpu"] = cpu
    if config.memory_limit_bytes > 0:
        resources["memory"] = {"limit": int(config.memory_limit_bytes)}
    cwd = config.working_dir or image.working_dir or "/"
    if not cwd.startswith("/"):
        raise RuntimeError_(f"container {config.name!r}: working directory {cwd!r} must be absolute")
    return {
        "ociVersion": "1.0.2",
        "process": {
            # No attach (kubectl attach / run -i): a container's output goes to its log,
            # so even a tty container gets pipes (runc would need a console socket).
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": container_argv(config, image),
            "env": container_env(config, image, sandbox.hostname),
            "cwd": cwd,
            "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
            "noNewPrivileges": False,
        },
        "root": {"path": rootfs, "readonly": False},
        "hostname": sandbox.hostname,
        "mounts": mounts,
        "linux": {
            "namespaces": namespaces,
            "resources": resources,
            "cgroupsPath": cgroups_path,
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
        },
    }


def resolv_conf(servers: Sequence[str], searches: Sequence[str], options: Sequence[str]) -> str:
    lines = [f"nameserver {s}" for s in servers]
    if searches:
        lines.append("search " + " ".join(searches))
    if options:
        lines.append("options " + " ".join(options))
    return "".join(line + "\n" for line in lines)


def hosts_file(hostname: str, ip: str) -> str:
    text = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    if ip and hostname:
        text += f"{ip}\t{hostname}\n"
    return text
