"""Where a container's memory cgroup is, and whether the kernel OOM-killed in it.

runc's ``cgroupsPath`` is relative to each hierarchy's mount: cgroup v2 (unified)
``/sys/fs/cgroup/<path>/memory.events``; v1 (hybrid hosts like the build machine and
nspawn hosts on it) ``/sys/fs/cgroup/memory/<path>/memory.oom_control``. Both carry an
``oom_kill N`` line (kernel >= 4.13).

The shim imports this module on every container start: ``os`` only (``pathlib`` costs
milliseconds of imports).
"""

from __future__ import annotations

import os

CGROUP_ROOT = "/sys/fs/cgroup"


def oom_kill_count_from(text: str) -> int:
    """The ``oom_kill`` counter of memory.events / memory.oom_control text (pure)."""
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill":
            return int(value.strip() or 0)
    return 0


def memory_files(cgroups_path: str, root: str | os.PathLike = CGROUP_ROOT) -> list[str]:
    relative = cgroups_path.lstrip("/")
    return [os.path.join(root, relative, "memory.events"),
            os.path.join(root, "memory", relative, "memory.oom_control")]


def oom_kill_count(cgroups_path: str, root: str | os.PathLike = CGROUP_ROOT) -> int:
    for path in memory_files(cgroups_path, root):
        try:
            with open(path) as f:
                return oom_kill_count_from(f.read())
        except OSError:
            continue
    return 0


def read_only_controllers(mountinfo: str) -> list[str]:
    """v1 controller hierarchies mounted read-only (pure): systemd-nspawn mounts them so,
    and runc then cannot create a container's cgroup (roles/runtime remounts them rw)."""
    found = []
    for line in mountinfo.splitlines():
        if " - cgroup " not in line:
            continue
        fields = line.split()
        if "ro" in fields[5].split(","):
            found.append(fields[4])
    return found


def unified_only(root: str | os.PathLike = CGROUP_ROOT) -> bool:
    """cgroup v2 alone (VMs): the v2 root has cgroup.controllers at /sys/fs/cgroup."""
    return os.path.exists(os.path.join(root, "cgroup.controllers"))
