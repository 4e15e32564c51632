"""A container's root filesystem: the image's read-only tree plus a writable layer.

An overlay mount (``lowerdir`` = the image's rootfs, ``upperdir`` + ``workdir`` in
the container's directory) costs one mount; when the kernel refuses it (the upper layer
would sit on another overlayfs, as in an nspawn host whose /var/lib/lab is not bound
from the lab machine) the image is copied instead (``cp -a``, slower for big images).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from agents.runtime.model import RuntimeError_

OVERLAY = "overlay"
COPY = "copy"


def overlay_options(lower: Path, upper: Path, work: Path) -> str:
    for path in (lower, upper, work):
        if any(c in str(path) for c in ",:\\"):
            raise RuntimeError_(f"path {path} cannot be used in an overlay mount (',', ':' or '\\')")
    return f"lowerdir={lower},upperdir={upper},workdir={work}"


def is_mounted(path: Path) -> bool:
    target = str(path)
    try:
        with open("/proc/self/mountinfo") as f:
            return any(line.split()[4] == target for line in f)
    except OSError:
        return False


def prepare(image_rootfs: Path, container_dir: Path, target: Path) -> str:
    """Make ``target`` the container's root; returns how (``overlay`` or ``copy``)."""
    upper, work = container_dir / "upper", container_dir / "work"
    for path in (upper, work, target):
        path.mkdir(parents=True, exist_ok=True)
    opts = overlay_options(image_rootfs, upper, work)
    mounted = subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o", opts, str(target)],
        capture_output=True, text=True,
    )  # fmt: skip
    if mounted.returncode == 0:
        return OVERLAY
    copied = subprocess.run(
        ["cp", "-a", "--reflink=auto", f"{image_rootfs}/.", str(target)],
        capture_output=True, text=True,
    )  # fmt: skip
    if copied.returncode != 0:
        raise RuntimeError_(
            f"cannot make the root filesystem at {target}: overlay mount failed "
            f"({mounted.stderr.strip()}) and copying {image_rootfs} failed ({copied.stderr.strip()})"
        )
    return COPY


def release(target: Path) -> None:
    """Unmount the container's overlay (a no-op for a copy); the caller removes the dir."""
    if not is_mounted(target):
        return
    done = subprocess.run(["umount", str(target)], capture_output=True, text=True)
    if done.returncode != 0 and is_mounted(target):
        subprocess.run(["umount", "--lazy", str(target)], capture_output=True, text=True)
