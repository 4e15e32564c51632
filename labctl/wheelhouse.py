"""The wheelhouse: what the ``common`` role pushes to hosts, which have no package
access and a slow Python (≈18× slower under TCG), so nothing is resolved, installed or
byte-compiled there. Hosts run the same Debian Python as the lab machine, so every
installed tree is built here once and travels as a tarball that the host only unpacks:

    path = ensure_wheelhouse()      # labctl_home()/wheelhouse/<key>/

- ``agents-deps-py<X.Y>.tar.gz``: the agents' dependencies (pyproject's ``agents``
  extra) installed with pip ``--target`` and byte-compiled, for this Python version
  (their extension modules load in no other); changes only with the requirements;
- ``agents.tar.gz``: the ``agents`` package, byte-compiled; changes with agents/;
- ``agents-requirements.txt``: what the dependency bundle satisfies.

Tarballs are reproducible (sorted, fixed mtimes and owners, gzip without a timestamp):
the same sources give the same bytes, so an unchanged tree is never pushed or unpacked
again even if its cache entry was rebuilt. Sources keep that fixed mtime and their .pyc
record it, so the bytecode stays valid after unpacking.

Caches under ``labctl_home()/wheelhouse``, so the lab machine can go offline after the
first build: ``deps-<requirements hash>/`` (the dependency wheels, from PyPI once),
``bundle-deps-<requirements hash>-py<X.Y>/`` (the dependency bundle) and ``<key>/``
(what is pushed: hard links to the dependency bundle, the agents bundle and the
requirements; the key hashes what goes into them, nothing else).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from collections.abc import Callable
from pathlib import Path

from labctl.errors import LabError
from labctl.state import labctl_home

REQUIREMENTS_FILE = "agents-requirements.txt"
AGENTS_BUNDLE = "agents.tar.gz"
COMPLETE_MARK = ".complete"
KEEP_HOUSES = 5
# mtime of every file in a bundle (and recorded in its .pyc): 2000-01-01 UTC
BUNDLE_MTIME = 946684800
SKIPPED_DIRS = {"__pycache__"}
SKIPPED_SUFFIXES = (".pyc", ".pyo")


def python_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def deps_bundle_name(version: str | None = None) -> str:
    """Named by Python version: a host whose venv has another version fails at the push
    ("could not find …") instead of at an import of a mismatched extension module."""
    return f"agents-deps-py{version or python_version()}.tar.gz"


def project_root() -> Path:
    root = Path(__file__).resolve().parent.parent
    if not (root / "pyproject.toml").is_file():
        raise LabError(f"{root} has no pyproject.toml: the wheelhouse is built from a source checkout")
    return root


def agents_requirements(root: Path) -> list[str]:
    data = tomllib.loads((root / "pyproject.toml").read_text())
    try:
        return list(data["project"]["optional-dependencies"]["agents"])
    except KeyError:
        raise LabError(f"{root}/pyproject.toml has no [project.optional-dependencies] agents list") from None


def source_files(tree: Path) -> list[Path]:
    """Files under ``tree`` that are content (no bytecode caches), sorted, relative."""
    out = []
    for base, dirs, names in os.walk(tree):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
        out += [Path(base, n).relative_to(tree) for n in sorted(names)
                if not n.endswith(SKIPPED_SUFFIXES)]
    return out


def tree_key(root: Path) -> str:
    """Hash of exactly what goes into the agents bundle: agents/'s files (not their
    bytecode caches) and the Python version its bytecode is compiled for."""
    h = hashlib.sha256(f"python {python_version()}\0".encode())
    for rel in source_files(root / "agents"):
        h.update(str(rel).encode() + b"\0")
        h.update((root / "agents" / rel).read_bytes() + b"\0")
    return h.hexdigest()[:16]


def requirements_key(requirements: list[str]) -> str:
    return hashlib.sha256("\n".join(requirements).encode()).hexdigest()[:16]


def copy_sources(root: Path, dest: Path) -> None:
    """A copy of the project as the wheelhouse reads it (pyproject and the agents):
    tests build wheelhouses from modified copies."""
    shutil.copy2(root / "pyproject.toml", dest / "pyproject.toml")
    shutil.copytree(root / "agents", dest / "agents",
                    ignore=shutil.ignore_patterns(*SKIPPED_DIRS, *(f"*{s}" for s in SKIPPED_SUFFIXES)))


# ---------------------------------------------------------------------------
# reproducible installed trees


def freeze_and_compile(tree: Path) -> None:
    """Give every file the fixed mtime, then byte-compile: each .pyc records that mtime,
    which the unpacked source keeps, so the host never recompiles."""
    for base, dirs, names in os.walk(tree):
        for d in list(dirs):
            if d in SKIPPED_DIRS:
                shutil.rmtree(Path(base, d))
                dirs.remove(d)
        for n in names:
            if n.endswith(SKIPPED_SUFFIXES):
                os.unlink(Path(base, n))
            else:
                os.utime(Path(base, n), (BUNDLE_MTIME, BUNDLE_MTIME), follow_symlinks=False)
    # A fresh interpreter with a fixed hash seed: marshal's output depends on refcounts
    # left by earlier compiles in the same process and on set ordering. ``-d ""``:
    # record paths relative to the tree, not this temp dir (Python replaces them with the
    # real path at import). Explicit mode: SOURCE_DATE_EPOCH would switch to hash pycs.
    proc = subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "-d", "", "--invalidation-mode", "timestamp", str(tree)],
        stdin=subprocess.DEVNULL, capture_output=True, text=True,
        env={**os.environ, "PYTHONHASHSEED": "0"})
    if proc.returncode != 0:
        raise LabError(f"byte-compiling {tree} failed (a syntax error in a file under it?):\n"
                       f"{(proc.stdout + proc.stderr).strip()[-3000:]}")


def _normalized(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mtime = BUNDLE_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    if info.isdir():
        info.mode = 0o755
    elif info.isfile():
        info.mode = 0o755 if info.mode & 0o100 else 0o644
    return info


def write_tarball(tree: Path, dest: Path) -> None:
    """``tree``'s contents as a gzipped tar whose bytes depend only on names, contents
    and executable bits (sorted entries, fixed mtime and owner, no gzip timestamp)."""
    entries = []
    for base, dirs, names in os.walk(tree):
        dirs.sort()
        entries += [Path(base, d) for d in dirs] + [Path(base, n) for n in sorted(names)]
    with open(dest, "wb") as raw, \
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for path in entries:
            info = _normalized(tar.gettarinfo(str(path), arcname=str(path.relative_to(tree))))
            if info.isfile():
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)


def _pip(args: list[str], what: str) -> None:
    cmd = [sys.executable, "-m", "pip", *args[:1], "--disable-pip-version-check", "--quiet", *args[1:]]
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip()[-3000:]
        raise LabError(f"{what} failed (`{' '.join(cmd)}`):\n{tail}")


def build_agents_bundle(root: Path, dest: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="labctl-agents-") as tmp:
        site = Path(tmp)
        shutil.copytree(root / "agents", site / "agents",
                        ignore=shutil.ignore_patterns(*SKIPPED_DIRS, *(f"*{s}" for s in SKIPPED_SUFFIXES)))
        freeze_and_compile(site)
        write_tarball(site, dest)


def build_deps_bundle(wheels: Path, requirements: list[str], dest: Path) -> None:
    """Install the dependency wheels the way pip would into a venv's site-packages (no
    scripts: their shebangs would name this machine's python), compile, pack."""
    with tempfile.TemporaryDirectory(prefix="labctl-deps-") as tmp:
        site = Path(tmp, "site")
        _pip(["install", "--no-index", "--find-links", str(wheels), "--no-compile",
              "--target", str(site), *requirements], "installing the agents' dependencies")
        shutil.rmtree(site / "bin", ignore_errors=True)
        freeze_and_compile(site)
        write_tarball(site, dest)


# ---------------------------------------------------------------------------
# caches


def _build_into(final: Path, build: Callable[[Path], None]) -> Path:
    """Build in a temp dir next to ``final`` and rename: a half build is never used."""
    if (final / COMPLETE_MARK).exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        build(tmp)
        (tmp / COMPLETE_MARK).write_text("")
        tmp.chmod(0o755)
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return final


def ensure_wheelhouse(root: Path | None = None, home: Path | None = None) -> Path:
    """The directory to push, built now only if what goes into it changed."""
    root = root or project_root()
    cache = (home or labctl_home()) / "wheelhouse"
    requirements = agents_requirements(root)
    req_key = requirements_key(requirements)
    wheels = _build_into(cache / f"deps-{req_key}", lambda d: _pip(
        ["wheel", "--wheel-dir", str(d), *requirements], "building wheels of the agents' dependencies"))
    deps_name = deps_bundle_name()
    deps = _build_into(cache / f"bundle-deps-{req_key}-py{python_version()}",
                       lambda d: build_deps_bundle(wheels, requirements, d / deps_name))

    def build_house(d: Path) -> None:
        build_agents_bundle(root, d / AGENTS_BUNDLE)
        os.link(deps / deps_name, d / deps_name)
        (d / REQUIREMENTS_FILE).write_text("".join(f"{r}\n" for r in requirements))

    house_key = hashlib.sha256(f"{tree_key(root)} {req_key}".encode()).hexdigest()[:16]
    house = _build_into(cache / house_key, build_house)
    prune(cache, keep=KEEP_HOUSES, current=house)
    return house


def prune(cache: Path, keep: int, current: Path) -> None:
    """Drop all but the ``keep`` newest wheelhouses (agents change often while developing);
    dependency wheels and bundles stay."""
    houses = sorted((d for d in cache.iterdir()
                     if d.is_dir() and not d.name.startswith(("deps-", "bundle-", ".")) and d != current),
                    key=lambda d: d.stat().st_mtime, reverse=True)
    for old in houses[keep - 1:]:
        shutil.rmtree(old, ignore_errors=True)


def main() -> None:  # pragma: no cover - convenience: python -m labctl.wheelhouse
    print(ensure_wheelhouse())


if __name__ == "__main__":  # pragma: no cover
    main()
