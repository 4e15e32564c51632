"""The wheelhouse: wheels of this project (it carries ``agents/``) and of the agents'
runtime dependencies, built on the lab machine and pushed to hosts, which have no
package access.

    path = ensure_wheelhouse()      # labctl_home()/wheelhouse/<key>/

Two caches, so that the lab machine can go offline after the first build:

- ``deps-<hash of the agents requirements>/``: the dependency wheels, built once;
- ``<key>/``: what is pushed — the project wheel plus hard links to the dependency
  wheels and ``agents-requirements.txt``; the key hashes ``agents/``, ``pyproject.toml``
  and the requirements, so an unchanged tree is never rebuilt (and its wheel's bytes
  never change, which is how the ``common`` role knows not to reinstall).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from labctl.errors import LabError
from labctl.state import labctl_home

REQUIREMENTS_FILE = "agents-requirements.txt"
COMPLETE_MARK = ".complete"
KEEP_HOUSES = 5


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


def tree_key(root: Path) -> str:
    """Hash of everything that goes into the pushed wheels."""
    h = hashlib.sha256()
    files = [root / "pyproject.toml"]
    for base, dirs, names in os.walk(root / "agents"):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        files += [Path(base, n) for n in sorted(names) if not n.endswith((".pyc", ".pyo"))]
    for f in files:
        h.update(str(f.relative_to(root)).encode() + b"\0")
        h.update(f.read_bytes() + b"\0")
    h.update("\n".join(agents_requirements(root)).encode())
    return h.hexdigest()[:16]


def copy_sources(root: Path, dest: Path) -> None:
    """What the project wheel is built from: pyproject, README and the two packages."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (root / name).exists():
            shutil.copy2(root / name, dest / name)
    for package in ("labctl", "agents"):
        shutil.copytree(root / package, dest / package, ignore=ignore)


def _pip_wheel(args: list[str], what: str) -> None:
    cmd = [sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check", "--quiet", *args]
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip()[-3000:]
        raise LabError(f"building wheels of {what} failed (`{' '.join(cmd)}`):\n{tail}")


def _build_into(final: Path, build) -> Path:
    """Build in a temp dir next to ``final`` and rename: a half build is never used."""
    if (final / COMPLETE_MARK).exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        build(tmp)
        (tmp / COMPLETE_MARK).write_text("")
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return final


def ensure_wheelhouse(root: Path | None = None, home: Path | None = None) -> Path:
    """The directory of wheels to push, built now only if the tree changed."""
    root = root or project_root()
    cache = (home or labctl_home()) / "wheelhouse"
    requirements = agents_requirements(root)
    deps_key = hashlib.sha256("\n".join(requirements).encode()).hexdigest()[:16]
    deps = _build_into(cache / f"deps-{deps_key}",
                       lambda d: _pip_wheel(["--wheel-dir", str(d), *requirements], "the agents' dependencies"))

    def build_house(d: Path) -> None:
        # build from a copy: setuptools writes build/ and *.egg-info into the source tree
        with tempfile.TemporaryDirectory(prefix="labctl-wheel-src-") as src:
            copy_sources(root, Path(src))
            _pip_wheel(["--no-deps", "--no-build-isolation", "--wheel-dir", str(d), src], str(root))
        for wheel in deps.glob("*.whl"):
            os.link(wheel, d / wheel.name)
        (d / REQUIREMENTS_FILE).write_text("".join(f"{r}\n" for r in requirements))

    house = _build_into(cache / tree_key(root), build_house)
    prune(cache, keep=KEEP_HOUSES, current=house)
    return house


def prune(cache: Path, keep: int, current: Path) -> None:
    """Drop all but the ``keep`` newest wheelhouses (agents change often while developing);
    dependency builds stay."""
    houses = sorted((d for d in cache.iterdir()
                     if d.is_dir() and not d.name.startswith(("deps-", ".")) and d != current),
                    key=lambda d: d.stat().st_mtime, reverse=True)
    for old in houses[keep - 1:]:
        shutil.rmtree(old, ignore_errors=True)


def main() -> None:  # pragma: no cover - convenience: python -m labctl.wheelhouse
    print(ensure_wheelhouse())


if __name__ == "__main__":  # pragma: no cover
    main()
