"""Each nspawn container gets its own cgroup, made by labctl (no systemd on the lab
machine does it).

With ``--keep-unit``, systemd-nspawn builds the container's cgroup tree (``payload/``,
``supervisor/``) under the cgroup it was started in. Containers started side by side
from one labctl process would share that tree, and their systemd instances trip over
each other's units (units fail with status=219/CGROUP). So each nspawn is started in
``<our cgroup>/labctl-<machine>`` of every cgroup hierarchy: the v1 ``name=systemd`` one and
the cgroup2 one (the hybrid layout of this machine has both), and every v1 controller
hierarchy (memory, cpu, pids, ...). The controllers matter for the container runtime on
workers: nspawn mounts the v1 controllers inside a cgroup namespace rooted at the
container's cgroup, so with its own ``labctl-<machine>`` there the cgroups runc creates
for pods (memory/cpu limits, OOM kills) stay inside the host's own subtree, are
accounted to it, and are removed with it.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import time
from pathlib import Path

from labctl.providers.mountinfo import read_mountinfo, unescape_mountinfo


def systemd_hierarchies(proc_cgroup: str, mountinfo: str) -> list[Path]:
    """Where our own cgroup is in the systemd-relevant hierarchies (pure).

    ``proc_cgroup`` is /proc/self/cgroup (``id:controllers:path`` lines), ``mountinfo``
    is /proc/self/mountinfo; the result is ``mount point + our path`` for each.
    """
    mounts: dict[str, tuple[str, str]] = {}  # "name=systemd" / "cgroup2" -> (root, mount point)
    for line in mountinfo.splitlines():
        fields = line.split()
        if " - " not in line:
            continue
        after = line.split(" - ", 1)[1].split()
        fstype, options = after[0], after[2] if len(after) > 2 else ""
        key = None
        if fstype == "cgroup2":
            key = "cgroup2"
        elif fstype == "cgroup" and "name=systemd" in options.split(","):
            key = "name=systemd"
        if key and key not in mounts:
            mounts[key] = (unescape_mountinfo(fields[3]), unescape_mountinfo(fields[4]))
    found = []
    for line in proc_cgroup.splitlines():
        hierarchy, controllers, path = line.split(":", 2)
        if hierarchy == "0" and controllers == "":
            key = "cgroup2"
        elif "name=systemd" in controllers.split(","):
            key = "name=systemd"
        else:
            continue
        if key not in mounts:
            continue
        root, mount_point = mounts[key]
        relative = os.path.relpath(path, root) if path.startswith(root) else path.lstrip("/")
        found.append(Path(os.path.normpath(Path(mount_point) / relative)))
    return found


def controller_hierarchies(proc_cgroup: str, mountinfo: str) -> list[Path]:
    """Where our own cgroup is in every v1 controller hierarchy (pure), e.g.
    ``/sys/fs/cgroup/memory/<our path>``; ``name=`` hierarchies and cgroup2 are left to
    ``systemd_hierarchies``. A hierarchy may hold several controllers (``cpu,cpuacct``):
    the mount whose options name all of them is the one."""
    mounts: list[tuple[set[str], str, str]] = []  # (options, root, mount point)
    for line in mountinfo.splitlines():
        if " - " not in line:
            continue
        fields = line.split()
        after = line.split(" - ", 1)[1].split()
        if after[0] == "cgroup" and len(after) > 2:
            mounts.append((set(after[2].split(",")), unescape_mountinfo(fields[3]),
                           unescape_mountinfo(fields[4])))
    found = []
    for line in proc_cgroup.splitlines():
        hierarchy, controllers, path = line.split(":", 2)
        names = set(controllers.split(",")) - {""}
        if hierarchy == "0" or not names or any(n.startswith("name=") for n in names):
            continue
        for options, root, mount_point in mounts:
            if names <= options:
                relative = os.path.relpath(path, root) if path.startswith(root) else path.lstrip("/")
                found.append(Path(os.path.normpath(Path(mount_point) / relative)))
                break
    return found


def container_cgroups(machine: str) -> list[Path]:
    """The cgroups to start ``machine``'s nspawn in (one per hierarchy)."""
    proc_cgroup, mountinfo = Path("/proc/self/cgroup").read_text(), read_mountinfo()
    hierarchies = systemd_hierarchies(proc_cgroup, mountinfo)
    hierarchies += controller_hierarchies(proc_cgroup, mountinfo)
    return [h / f"labctl-{machine}" for h in hierarchies]


def in_cgroups(cgroups: list[Path], cmd: list[str]) -> list[str]:
    """``cmd`` started by a shell that first moves itself into ``cgroups`` (pure).

    The shell execs ``cmd``, so the PID (and its start time) stays the command's. A
    preexec_fn would do the same without a shell, but is unsafe with threads, and
    hosts are created from parallel threads.
    """
    if not cgroups:
        return cmd
    moves = " && ".join(f"echo $$ > {shlex.quote(str(c / 'cgroup.procs'))}" for c in cgroups)
    return ["/bin/sh", "-c", f'{moves} && exec "$@"', "sh", *cmd]


def make_cgroups(cgroups: list[Path]) -> None:
    for cgroup in cgroups:
        cgroup.mkdir(exist_ok=True)
        inherit_cpuset(cgroup)


def inherit_cpuset(cgroup: Path) -> None:
    """A new v1 cpuset cgroup starts with no CPUs and no memory nodes, and no task can
    join it until both are set: copy the parent's."""
    for name in ("cpuset.cpus", "cpuset.mems"):
        own = cgroup / name
        if own.is_file() and not own.read_text().strip():
            own.write_text((cgroup.parent / name).read_text())


def remove_cgroup(cgroup: Path, timeout: float = 5.0) -> bool:
    """rmdir the cgroup tree bottom-up (only directories can go in cgroupfs).

    A task that was just killed may hold its cgroup for a moment, so this retries
    until ``timeout``; True when the tree is gone.
    """
    deadline = time.monotonic() + timeout
    while cgroup.is_dir():
        for parent, dirs, _ in os.walk(cgroup, topdown=False):
            for name in dirs:
                with contextlib.suppress(OSError):
                    os.rmdir(os.path.join(parent, name))
        with contextlib.suppress(OSError):
            os.rmdir(cgroup)
        if not cgroup.is_dir():
            break
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True
