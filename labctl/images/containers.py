"""Container images for pods: built from Debian packages on the lab machine, cached.

    from labctl.images.containers import ensure_container_images
    out = ensure_container_images()       # images/.containers/<recipe hash>/
    out / "lab/busybox/latest/rootfs.tar.gz", out / "lab/busybox/latest/image.json"

The recipe (``containers.yaml``) names one debootstrap tree and the images cut from it
(see the recipe's comments). Each image is a gzip'd tarball of its root filesystem plus
``image.json`` (name, tag, id = sha256 of the tarball, size, config: entrypoint, cmd,
env, working_dir) — the node's image store layout (agents/runtime/images.py) once
roles/runtime has unpacked it. Pure parts: recipe validation and hash, the dpkg status
parser, the dependency closure, the applet links, the image.json text.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from labctl.errors import LabError
from labctl.images import builder
from labctl.images.cache import DEB_CACHE, TMP_PREFIX, build_lock
from labctl.images.mirror import find_mirror
from labctl.images.progress import Progress
from labctl.state import images_dir

RECIPE_FILE = Path(__file__).with_name("containers.yaml")
# A dot name: the base image cache (cache.image_dirs) neither lists nor prunes it.
CONTAINERS_DIR = ".containers"
TARBALL = "rootfs.tar.gz"
IMAGE_FILE = "image.json"
KINDS = ("busybox", "packages")
BUILD_STEPS_VERSION = 1
# Files taken from the tree whatever the image (when it has them): who root is, how
# names are looked up, and /bin/sh (a link made by dash's maintainer script, so in no
# package's file list).
ALWAYS_COPIED = ("etc/passwd", "etc/group", "etc/nsswitch.conf", "bin/sh")
# Directories runc and programs expect even when no package file lands there.
SKELETON = ("proc", "sys", "dev", "tmp", "etc", "root", "run", "var/tmp")


@dataclass(frozen=True)
class ImageSpec:
    name: str
    tag: str
    kind: str
    packages: tuple[str, ...]
    exclude: tuple[str, ...]
    config: dict[str, Any]

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.tag}"


@dataclass(frozen=True)
class ContainerRecipe:
    suite: str
    variant: str
    component: str
    packages: tuple[str, ...]
    images: tuple[ImageSpec, ...]
    steps_version: int = BUILD_STEPS_VERSION

    @property
    def hash(self) -> str:
        canonical = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


# --- recipe (pure) ---------------------------------------------------------------


def _strings(value: Any, what: str, where: Path) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise LabError(f"{where}: {what} must be a list of non-empty strings")
    return tuple(value)


def _image_config(value: Any, what: str, where: Path) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise LabError(f"{where}: {what}: `config` must be a mapping (cmd, entrypoint, env, working_dir)")
    unknown = set(value) - {"cmd", "entrypoint", "env", "working_dir"}
    if unknown:
        raise LabError(f"{where}: {what}: unknown config keys {sorted(unknown)}")
    config = {k: list(_strings(value.get(k, []), f"{what} config.{k}", where))
              for k in ("cmd", "entrypoint", "env")}  # fmt: skip
    config["working_dir"] = str(value.get("working_dir", "/"))
    if not config["cmd"] and not config["entrypoint"]:
        raise LabError(f"{where}: {what}: config needs a cmd or an entrypoint")
    if not config["working_dir"].startswith("/"):
        raise LabError(f"{where}: {what}: config.working_dir must be absolute")
    return config


def recipe_from_data(data: Any, where: Path = RECIPE_FILE) -> ContainerRecipe:
    if not isinstance(data, dict):
        raise LabError(f"{where}: expected a mapping at the top level")
    for key in ("suite", "variant", "component"):
        if not isinstance(data.get(key), str):
            raise LabError(f"{where}: `{key}` must be a string")
    packages = _strings(data.get("packages"), "`packages`", where)
    raw_images = data.get("images")
    if not isinstance(raw_images, list) or not raw_images:
        raise LabError(f"{where}: `images` must be a non-empty list")
    images, seen = [], set()
    for number, item in enumerate(raw_images, 1):
        what = f"image {number}"
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise LabError(f"{where}: {what} needs a `name`")
        what = f"image {item['name']}"
        kind = item.get("from")
        if kind not in KINDS:
            raise LabError(f"{where}: {what}: `from` must be one of {', '.join(KINDS)}")
        roots = _strings(item.get("packages", []), f"{what} packages", where)
        if kind == "packages" and not roots:
            raise LabError(f"{where}: {what}: `from: packages` needs `packages`")
        spec = ImageSpec(
            name=item["name"], tag=str(item.get("tag", "latest")), kind=kind, packages=roots,
            exclude=_strings(item.get("exclude", []), f"{what} exclude", where),
            config=_image_config(item.get("config"), what, where),
        )  # fmt: skip
        if spec.ref in seen:
            raise LabError(f"{where}: image {spec.ref} is listed twice")
        seen.add(spec.ref)
        images.append(spec)
    return ContainerRecipe(
        suite=data["suite"], variant=data["variant"], component=data["component"],
        packages=tuple(sorted(set(packages))), images=tuple(images),
    )  # fmt: skip


def container_recipe(path: Path | None = None) -> ContainerRecipe:
    where = path or RECIPE_FILE
    try:
        data = yaml.safe_load(where.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise LabError(f"cannot read the container image recipe {where}: {exc}") from exc
    return recipe_from_data(data, where)


# --- dpkg facts (pure) -----------------------------------------------------------


def parse_dpkg_status(text: str) -> dict[str, tuple[tuple[str, ...], ...]]:
    """Installed packages -> their dependencies, each a tuple of alternatives
    (``a | b``), from /var/lib/dpkg/status. Versions and arch qualifiers are dropped;
    ``Provides`` maps virtual names to the package that provides them."""
    packages: dict[str, tuple[tuple[str, ...], ...]] = {}
    provides: dict[str, str] = {}
    for paragraph in text.split("\n\n"):
        fields: dict[str, str] = {}
        key = None
        for line in paragraph.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += " " + line.strip()
                continue
            key, _, value = line.partition(":")
            fields[key] = value.strip()
        name = fields.get("Package")
        if not name or "installed" not in fields.get("Status", "").split():
            continue
        deps = []
        for field in ("Pre-Depends", "Depends"):
            for clause in filter(None, (c.strip() for c in fields.get(field, "").split(","))):
                deps.append(tuple(_dep_name(alt) for alt in clause.split("|")))
        packages[name] = tuple(deps)
        for virtual in filter(None, (p.strip() for p in fields.get("Provides", "").split(","))):
            provides.setdefault(_dep_name(virtual), name)
    for virtual, real in provides.items():
        packages.setdefault(virtual, ((real,),))
    return packages


def _dep_name(text: str) -> str:
    return text.strip().split()[0].split(":")[0] if text.strip() else ""


def dependency_closure(
    installed: dict[str, tuple[tuple[str, ...], ...]], roots: Iterable[str], exclude: Iterable[str] = ()
) -> list[str]:
    """Every installed package ``roots`` need (sorted), never entering ``exclude``. Of
    alternatives the first installed one is taken."""
    skip = set(exclude)
    wanted: set[str] = set()
    todo = [r for r in roots if r not in skip]
    for root in todo:
        if root not in installed:
            raise LabError(f"package {root} is not installed in the image tree")
    while todo:
        name = todo.pop()
        if name in wanted or name in skip:
            continue
        wanted.add(name)
        for alternatives in installed.get(name, ()):
            chosen = next((a for a in alternatives if a in installed), None)
            if chosen and chosen not in wanted:
                todo.append(chosen)
    return sorted(wanted)


def applet_links(list_full: str) -> dict[str, str]:
    """``busybox --list-full`` output -> {link path: relative target} (pure)."""
    links = {}
    for line in list_full.split():
        path = line.strip().lstrip("/")
        if not path or path == "bin/busybox":
            continue
        depth = path.count("/")
        links[path] = "../" * depth + "bin/busybox"
    return links


def image_json(spec: ImageSpec, digest: str, size: int) -> dict[str, Any]:
    return {"name": spec.name, "tag": spec.tag, "id": f"sha256:{digest}", "size": size,
            "config": spec.config}  # fmt: skip


# --- building (I/O) --------------------------------------------------------------


def package_files(tree: Path, package: str) -> list[str]:
    info = tree / "var/lib/dpkg/info"
    for name in (f"{package}.list", f"{package}:amd64.list"):
        if (info / name).is_file():
            return [line for line in (info / name).read_text().splitlines() if line.strip()]
    return []  # a virtual package: its provider brings the files


def link_target(relative: str, link: str) -> str:
    """Where the symlink at ``relative`` (in a tree) points, relative to the tree's root;
    absolute links are taken as rooted in the tree, never in the lab machine."""
    target = link.lstrip("/") if link.startswith("/") else os.path.normpath(
        os.path.join(os.path.dirname(relative), link))
    if target == ".." or target.startswith("../"):
        raise LabError(f"symlink {relative} -> {link} leaves the image tree")
    return target


def resolve_parents(tree: Path, relative: str, depth: int = 0) -> str:
    """``relative`` with every symlink among its parent directories followed (inside the
    tree), so a copy never writes through a link."""
    if depth > 16:
        raise LabError(f"too many levels of symlinks below {tree / relative}")
    parts = Path(relative).parts
    for i in range(1, len(parts)):
        sub = str(Path(*parts[:i]))
        if (tree / sub).is_symlink():
            rest = str(Path(*parts[i:]))
            base = link_target(sub, os.readlink(tree / sub))
            return resolve_parents(tree, os.path.join(base, rest), depth + 1)
    return relative


def copy_path(tree: Path, rootfs: Path, relative: str) -> None:
    """Copy one file, symlink or (empty) directory; its parent must exist in rootfs."""
    relative = resolve_parents(tree, relative)
    source, target = tree / relative, rootfs / relative
    if not (source.is_symlink() or source.exists()) or target.is_symlink() or target.exists():
        return
    if source.is_symlink():
        target.symlink_to(os.readlink(source))
    elif source.is_dir():
        target.mkdir()
        shutil.copystat(source, target)
    else:
        shutil.copy2(source, target)


def ensure_dir(tree: Path, rootfs: Path, relative: str, depth: int = 0) -> None:
    """Make ``relative`` a directory in rootfs the way it is in the tree: each component
    a directory, or a symlink copied as such whose target is made too (Debian 12's
    merged /usr: bin -> usr/bin)."""
    if depth > 8:
        raise LabError(f"too many levels of symlinks below {tree / relative}")
    parts = Path(relative).parts
    for i in range(1, len(parts) + 1):
        sub = str(Path(*parts[:i]))
        source = tree / sub
        if source.is_symlink():
            copy_path(tree, rootfs, sub)
            ensure_dir(tree, rootfs, link_target(sub, os.readlink(source)), depth + 1)
        elif source.is_dir():
            copy_path(tree, rootfs, sub)


def _resolve_dirs(tree: Path, rootfs: Path, relative: str) -> None:
    """The parent directories of ``relative`` exist in rootfs (see ensure_dir)."""
    parent = os.path.dirname(relative)
    if parent:
        ensure_dir(tree, rootfs, parent)


def assemble_packages(tree: Path, rootfs: Path, spec: ImageSpec) -> list[str]:
    installed = parse_dpkg_status((tree / "var/lib/dpkg/status").read_text())
    chosen = dependency_closure(installed, spec.packages, spec.exclude)
    for package in chosen:
        for path in package_files(tree, package):
            relative = path.lstrip("/")
            if not relative:
                continue
            _resolve_dirs(tree, rootfs, relative)
            copy_path(tree, rootfs, relative)
    return chosen


def assemble_busybox(tree: Path, rootfs: Path) -> None:
    busybox = tree / "bin/busybox"
    _resolve_dirs(tree, rootfs, "bin/busybox")
    copy_path(tree, rootfs, "bin/busybox")
    listing = subprocess.run([str(busybox), "--list-full"], capture_output=True, text=True)
    if listing.returncode != 0:
        raise LabError(f"{busybox} --list-full failed: {listing.stderr.strip()}")
    for link, target in applet_links(listing.stdout).items():
        path = rootfs / link
        if path.is_symlink() or path.exists():
            continue
        _resolve_dirs(tree, rootfs, link)
        path = rootfs / resolve_parents(tree, link)
        if not (path.is_symlink() or path.exists()):
            path.symlink_to(target)


def finish_rootfs(tree: Path, rootfs: Path) -> None:
    for relative in ALWAYS_COPIED:
        _resolve_dirs(tree, rootfs, relative)
        copy_path(tree, rootfs, relative)
    for relative in SKELETON:
        (rootfs / relative).mkdir(parents=True, exist_ok=True)
    (rootfs / "tmp").chmod(0o1777)
    for junk in ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale",
                 "usr/share/lintian"):  # fmt: skip
        shutil.rmtree(rootfs / junk, ignore_errors=True)


def write_tarball(rootfs: Path, tarball: Path) -> None:
    def reset(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    with tarfile.open(tarball, "w:gz", compresslevel=6) as tar:
        for entry in sorted(rootfs.iterdir()):
            tar.add(entry, arcname=entry.name, filter=reset)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tree_size(path: Path) -> int:
    total = 0
    for where, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(where, name)).st_size
    return total


def check_tools() -> None:
    if not shutil.which("debootstrap"):
        raise LabError("building the container images needs debootstrap: apt-get install debootstrap")
    if os.geteuid() != 0:
        raise LabError("building the container images needs root (debootstrap)")


def build_images(recipe: ContainerRecipe, out: Path, progress: Progress, deb_cache: Path | None) -> None:
    check_tools()
    out.mkdir(parents=True)
    log = out / "build.log"
    tree = out / ".tree"
    mirror = find_mirror(recipe.suite, recipe.component)
    progress(f"debootstrap {recipe.suite} {recipe.variant} + {', '.join(recipe.packages)} "
             f"for the container images")  # fmt: skip
    builder.run_debootstrap(builder.debootstrap_command(recipe, tree, mirror, deb_cache), log, progress)
    for spec in recipe.images:
        rootfs = out / ".rootfs"
        rootfs.mkdir()
        if spec.kind == "busybox":
            assemble_busybox(tree, rootfs)
        else:
            chosen = assemble_packages(tree, rootfs, spec)
            with log.open("a") as f:
                f.write(f"{spec.ref}: packages {' '.join(chosen)}\n")
        finish_rootfs(tree, rootfs)
        size = tree_size(rootfs)
        where = out / spec.name / spec.tag
        where.mkdir(parents=True)
        write_tarball(rootfs, where / TARBALL)
        manifest = image_json(spec, sha256_of(where / TARBALL), size)
        (where / IMAGE_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        progress(f"image {spec.ref}: {size / 1e6:.1f} MB tree, "
                 f"{(where / TARBALL).stat().st_size / 1e6:.1f} MB tarball")  # fmt: skip
        shutil.rmtree(rootfs)
    shutil.rmtree(tree)
    (out / "images.json").write_text(json.dumps(
        [{"name": s.name, "tag": s.tag} for s in recipe.images], indent=2) + "\n")


def containers_root(home: Path | None = None) -> Path:
    return images_dir(home) / CONTAINERS_DIR


def is_complete(out: Path, recipe: ContainerRecipe) -> bool:
    return all((out / s.name / s.tag / n).is_file() for s in recipe.images for n in (TARBALL, IMAGE_FILE))


def ensure_container_images(
    progress: Callable[[str], None] | None = None,
    home: Path | None = None,
    recipe: ContainerRecipe | None = None,
    rebuild: bool = False,
) -> Path:
    """The directory of the cached container images for ``recipe`` (built when missing:
    about a minute with the base image's .deb cache warm)."""
    recipe = recipe or container_recipe()
    root = containers_root(home)
    out = root / recipe.hash
    if is_complete(out, recipe) and not rebuild:
        return out
    report = Progress(progress)
    root.mkdir(parents=True, exist_ok=True)
    with build_lock(root, report):
        if is_complete(out, recipe) and not rebuild:
            return out
        for stale in root.glob(TMP_PREFIX + "*"):
            shutil.rmtree(stale, ignore_errors=True)
        deb_cache = images_dir(home) / DEB_CACHE
        deb_cache.mkdir(parents=True, exist_ok=True)
        tmp = root / f"{TMP_PREFIX}{recipe.hash}-{os.getpid()}"
        report(f"building container images {recipe.hash}")
        try:
            build_images(recipe, tmp, report, deb_cache)
            if out.exists():
                shutil.rmtree(out)
            os.rename(tmp, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        report(f"container images ready: {out}")
        for old in root.iterdir():  # one recipe at a time: nodes get theirs at deploy
            if old.is_dir() and old.name != recipe.hash and not old.name.startswith("."):
                shutil.rmtree(old, ignore_errors=True)
    return out
