"""The image cache: ``images/<recipe_hash>/`` under the labctl home.

An image is built into ``images/.tmp-<hash>-<pid>/`` and renamed into place only
when complete, so an interrupted build never looks complete. ``images/.lock`` (flock)
serialises builds across processes. Debian packages are kept in ``images/debs/`` so a
rebuild after a recipe change downloads only what is new. The 2 most recently used
images are kept; an older one is removed unless something still uses it (an overlay
mount on its rootfs, a process holding one of its files open, e.g. a VM's qemu, or a
lab's host record naming it, e.g. a stopped host).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from labctl.errors import LabError
from labctl.images import builder
from labctl.images.mirror import find_mirror
from labctl.images.progress import Progress
from labctl.images.recipe import Recipe, image_recipe
from labctl.state import images_dir

KEEP_IMAGES = 2
DEB_CACHE = "debs"
LOCK_FILE = ".lock"
TMP_PREFIX = ".tmp-"


@dataclass(frozen=True)
class BaseImage:
    root: Path
    recipe_hash: str

    @property
    def rootfs(self) -> Path:
        return self.root / builder.ROOTFS

    @property
    def qcow2(self) -> Path:
        return self.root / builder.QCOW2

    @property
    def kernel(self) -> Path:
        return self.root / builder.KERNEL

    @property
    def initrd(self) -> Path:
        return self.root / builder.INITRD

    def is_complete(self) -> bool:
        return all(p.exists() for p in (self.rootfs, self.qcow2, self.kernel, self.initrd))


def cached_image(recipe: Recipe, home: Path | None = None) -> BaseImage:
    return BaseImage(images_dir(home) / recipe.hash, recipe.hash)


@contextlib.contextmanager
def build_lock(root: Path, progress: Progress) -> Iterator[None]:
    with (root / LOCK_FILE).open("w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(f"waiting for another image build to finish (lock {root / LOCK_FILE})")
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def image_dirs(root: Path) -> list[Path]:
    """Finished image directories, most recently used first."""
    if not root.is_dir():
        return []
    dirs = [
        p for p in root.iterdir()
        if p.is_dir() and not p.name.startswith(".") and p.name != DEB_CACHE
    ]  # fmt: skip
    return sorted(dirs, key=lambda p: p.stat().st_mtime, reverse=True)


def mount_points_using(path: Path, mountinfo: str) -> list[str]:
    """Mount points in ``mountinfo`` text whose source, options or place mention ``path``."""
    needle = str(path) + "/"
    return [line.split()[4] for line in mountinfo.splitlines() if needle in line]


def lab_records_using(path: Path, labs_dir: Path) -> list[Path]:
    """Host records (``labs/*/hosts/*.json``) that mention the image directory: a
    stopped host needs its image again when it starts."""
    needle = str(path) + "/"
    found = []
    for record in labs_dir.glob("*/hosts/*.json"):
        with contextlib.suppress(OSError):
            if needle in record.read_text():
                found.append(record)
    return found


def is_in_use(path: Path) -> bool:
    """Mounted (nspawn overlays), open (qemu) or named by a lab's host record."""
    mountinfo = Path("/proc/self/mountinfo").read_text()
    if mount_points_using(path, mountinfo):
        return True
    if lab_records_using(path, path.parent.parent / "labs"):
        return True
    prefix = str(path) + os.sep
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            for fd in fd_dir.iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd).startswith(prefix):
                        return True
        except OSError:
            continue  # process gone or not ours to look at
    return False


def prune(root: Path, keep: int, progress: Progress, in_use: Callable[[Path], bool] = is_in_use):
    for old in image_dirs(root)[keep:]:
        if in_use(old):
            progress(f"keeping old image {old.name}: still in use")
            continue
        progress(f"removing old image {old.name}")
        shutil.rmtree(old, ignore_errors=True)


def remove_stale_builds(root: Path) -> None:
    """Leftovers of interrupted builds (only called while holding the build lock)."""
    for tmp in root.glob(TMP_PREFIX + "*"):
        shutil.rmtree(tmp, ignore_errors=True)


def ensure_base_image(
    progress: Callable[[str], None] | None = None,
    home: Path | None = None,
    recipe: Recipe | None = None,
    rebuild: bool = False,
) -> BaseImage:
    """The cached base image for ``recipe``; builds it first when missing (minutes).

    ``progress`` receives one line per step (default: printed to stderr).
    """
    recipe = recipe or image_recipe()
    image = cached_image(recipe, home)
    if image.is_complete() and not rebuild:
        with contextlib.suppress(OSError):
            os.utime(image.root)  # most recently used: pruning keeps it
        return image
    if rebuild and image.root.exists() and is_in_use(image.root):
        raise LabError(
            f"cannot rebuild image {recipe.hash}: labs still use {image.root} "
            "(running hosts or host records); take those labs down first"
        )
    report = Progress(progress)
    root = images_dir(home)
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(root.stat().st_mode | 0o011)  # qemu (libvirt-qemu) must traverse it
    with build_lock(root, report):
        if image.is_complete() and not rebuild:
            return image  # another process built it while we waited
        remove_stale_builds(root)
        mirror = find_mirror(recipe.suite, recipe.component)
        deb_cache = root / DEB_CACHE
        deb_cache.mkdir(exist_ok=True)
        tmp = root / f"{TMP_PREFIX}{recipe.hash}-{os.getpid()}"
        report(f"building base image {recipe.hash} (takes a few minutes)")
        try:
            builder.build_image(recipe, tmp, mirror, report, deb_cache)
            if image.root.exists():  # rebuild: move the old one out of the way first
                shutil.rmtree(image.root)
            os.rename(tmp, image.root)
            os.utime(image.root)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        report(f"base image ready: {image.root}")
        prune(root, KEEP_IMAGES, report)
    return image
