"""Build the base image from a recipe into a directory: debootstrap, customise, and
turn the tree into a qcow2 + kernel + initrd. No loop mounts anywhere: the ext4
filesystem is made from the tree (``mkfs.ext4 -d``), the initrd is regenerated in a
chroot inside a private mount namespace (its /proc mount dies with it).

Command lines are built by pure functions; ``build_image`` runs them in order.
"""

from __future__ import annotations

import collections
import glob
import os
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path

from labctl.errors import LabError
from labctl.images import customize
from labctl.images.mirror import SourceEntry
from labctl.images.progress import DebootstrapProgress, Progress
from labctl.images.recipe import Recipe

ROOTFS = "rootfs"
QCOW2 = "base.qcow2"
KERNEL = "vmlinuz"
INITRD = "initrd.img"
BUILD_LOG = "build.log"
REQUIRED_TOOLS = ("debootstrap", "chroot", "unshare", "systemctl", "mkfs.ext4", "qemu-img")


def debootstrap_command(
    recipe: Recipe, rootfs: Path, mirror: SourceEntry, deb_cache: Path | None
) -> list[str]:
    cmd = [
        "debootstrap",
        f"--variant={recipe.variant}",
        f"--components={recipe.component}",
        f"--include={','.join(recipe.packages)}",
    ]
    if mirror.signed_by:
        cmd.append(f"--keyring={mirror.signed_by}")
    if deb_cache is not None:
        cmd.append(f"--cache-dir={deb_cache}")
    return cmd + [recipe.suite, str(rootfs), mirror.uri]


def initramfs_command(rootfs: Path) -> list[str]:
    script = "mount -t proc proc /proc && exec update-initramfs -u -k all"
    return [
        "unshare", "--mount", "--propagation", "private", "--",
        "chroot", str(rootfs), "/bin/sh", "-c", script,
    ]  # fmt: skip


def enable_command(rootfs: Path, units: tuple[str, ...], verb: str = "enable") -> list[str]:
    return ["systemctl", f"--root={rootfs}", "--quiet", verb, *units]


def mkfs_command(raw: Path, rootfs: Path) -> list[str]:
    return ["mkfs.ext4", "-q", "-F", "-L", "labroot", "-d", str(rootfs), str(raw)]


def qcow2_command(raw: Path, qcow2: Path) -> list[str]:
    return ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(qcow2)]


def check_tools() -> None:
    missing = [t for t in REQUIRED_TOOLS if not shutil.which(t)]
    if missing:
        raise LabError(
            f"building the base image needs {', '.join(missing)}: install the Debian "
            "packages debootstrap, e2fsprogs, qemu-utils (see scripts/apt-packages.txt)"
        )
    if os.geteuid() != 0:
        raise LabError("building the base image needs root (debootstrap, chroot)")


def run_logged(cmd: list[str], log: Path, what: str) -> None:
    """Run a command, appending its output to the build log; clear error on failure."""
    with log.open("a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        result = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise LabError(f"{what} failed (exit {result.returncode}): see the end of {log}")


def _pump(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)  # end of output


def run_debootstrap(cmd: list[str], log: Path, progress: Progress) -> None:
    summary = DebootstrapProgress()
    tail: collections.deque[str] = collections.deque(maxlen=15)
    lines: queue.Queue[str | None] = queue.Queue()
    with log.open("a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, errors="replace",
        )  # fmt: skip
        try:
            threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
            while True:
                try:
                    line = lines.get(timeout=1.0)
                except queue.Empty:
                    message = summary.idle(time.monotonic())
                else:
                    if line is None:
                        break
                    out.write(line)
                    tail.append(line.rstrip())
                    message = summary.feed(line, time.monotonic())
                if message:
                    progress(message)
            code = proc.wait()
        finally:
            if proc.poll() is None:  # interrupted: don't leave debootstrap running
                proc.terminate()
                proc.wait()
    if code != 0:
        raise LabError(
            f"debootstrap failed (exit {code}); last lines:\n  "
            + "\n  ".join(tail)
            + f"\nfull log: {log}"
        )


def write_file(rootfs: Path, item: customize.ImageFile) -> None:
    path = rootfs / item.path
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or path.exists():
        path.unlink()  # e.g. a resolv.conf symlink: replace it, never write through it
    path.write_text(item.text)
    path.chmod(item.mode)


def mask_unit(rootfs: Path, unit: str, directory: str = "etc/systemd/system") -> None:
    """Link ``unit`` to /dev/null in ``directory`` (also how a generator is disabled)."""
    link = rootfs / directory / unit
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to("/dev/null")


def remove_paths(rootfs: Path, patterns: tuple[str, ...]) -> None:
    for pattern in patterns:
        if pattern.startswith("/") or ".." in pattern.split("/"):
            raise LabError(
                f"image recipe remove path {pattern!r} must be relative, inside the image"
            )
        for match in glob.glob(str(rootfs / pattern)):
            path = Path(match)
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()


def customise(rootfs: Path, recipe: Recipe, log: Path) -> None:
    for item in recipe.files:
        write_file(rootfs, item)
    for unit in recipe.masked_units:
        mask_unit(rootfs, unit)
    for generator in recipe.masked_generators:
        mask_unit(rootfs, generator, "etc/systemd/system-generators")
    run_logged(enable_command(rootfs, recipe.enabled_units), log, "enabling units")
    if recipe.disabled_units:
        run_logged(enable_command(rootfs, recipe.disabled_units, "disable"), log,
                   "disabling units")
    run_logged(initramfs_command(rootfs), log, "regenerating the initrd")
    remove_paths(rootfs, recipe.remove_paths)
    write_file(
        rootfs,
        customize.ImageFile(
            customize.LAB_IMAGE_FILE, customize.lab_image_text(recipe.hash, recipe.suite)
        ),
    )
    write_needs_update_stamps(rootfs)


def write_needs_update_stamps(rootfs: Path) -> None:
    """Mark /etc and /var as up to date with /usr (see customize.needs_update_stamp)."""
    usr = (rootfs / "usr").stat()
    for path in customize.NEEDS_UPDATE_STAMPS:
        write_file(rootfs, customize.ImageFile(path, customize.needs_update_stamp(usr.st_mtime_ns)))
        os.utime(rootfs / path, ns=(usr.st_atime_ns, usr.st_mtime_ns))


def single_boot_file(rootfs: Path, prefix: str) -> Path:
    found = sorted((rootfs / "boot").glob(f"{prefix}-*"))
    if len(found) != 1:
        raise LabError(
            f"expected one {prefix}-* in {rootfs / 'boot'}, found {len(found)}: "
            "the recipe must install exactly one kernel"
        )
    return found[0]


def make_disk(out: Path, recipe: Recipe, log: Path) -> None:
    raw = out / "base.raw"
    try:
        with raw.open("wb") as f:
            f.truncate(recipe.disk_size_mb * 1024 * 1024)  # sparse
        run_logged(mkfs_command(raw, out / ROOTFS), log, "mkfs.ext4 -d")
        run_logged(qcow2_command(raw, out / QCOW2), log, "qemu-img convert")
    finally:
        raw.unlink(missing_ok=True)


def build_image(
    recipe: Recipe, out: Path, mirror: SourceEntry, progress: Progress, deb_cache: Path | None
) -> None:
    """Build every output of ``recipe`` into the (new, empty) directory ``out``."""
    check_tools()
    out.mkdir(parents=True)
    log = out / BUILD_LOG
    rootfs = out / ROOTFS
    progress(f"debootstrap {recipe.suite} ({len(recipe.packages)} packages) from {mirror.uri}")
    run_debootstrap(debootstrap_command(recipe, rootfs, mirror, deb_cache), log, progress)
    progress("customising (units, sshd, initrd with virtio modules only)")
    customise(rootfs, recipe, log)
    shutil.copy2(single_boot_file(rootfs, "vmlinuz"), out / KERNEL)
    shutil.copy2(single_boot_file(rootfs, "initrd.img"), out / INITRD)
    progress(f"making the VM disk (mkfs.ext4 -d, {recipe.disk_size_mb} MB sparse, qemu-img)")
    make_disk(out, recipe, log)
    # qemu runs as libvirt-qemu: it must traverse the dir and read the VM files.
    out.chmod(0o755)
    for name in (QCOW2, KERNEL, INITRD):
        (out / name).chmod(0o644)
