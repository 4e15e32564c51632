"""labctl/wheelhouse.py without pip or hosts: what the key hashes, and bundles whose
bytes depend only on their sources and whose bytecode stays valid once unpacked."""

from __future__ import annotations

import importlib.util
import os
import struct
import sys
import tarfile
from pathlib import Path

import pytest

from labctl import wheelhouse
from labctl.wheelhouse import (
    BUNDLE_MTIME,
    build_agents_bundle,
    deps_bundle_name,
    prune,
    tree_key,
    write_tarball,
)

pytestmark = pytest.mark.unit


def make_project(root: Path) -> Path:
    (root / "agents" / "sub").mkdir(parents=True)
    (root / "pyproject.toml").write_text('[project.optional-dependencies]\nagents = ["pyyaml"]\n')
    (root / "agents" / "__init__.py").write_text("")
    (root / "agents" / "sub" / "__init__.py").write_text("VALUE = {'a', 'b', 'c'}\n")
    (root / "agents" / "sub" / "api.proto").write_text("syntax = 'proto3';\n")
    (root / "labctl").mkdir()
    (root / "labctl" / "cli.py").write_text("x = 1\n")
    return root


def test_key_follows_agents_content_only(tmp_path):
    root = make_project(tmp_path / "src")
    key = tree_key(root)
    (root / "agents" / "__pycache__").mkdir()
    (root / "agents" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"junk")
    (root / "agents" / "sub" / "stray.pyc").write_bytes(b"junk")
    (root / "labctl" / "cli.py").write_text("x = 2\n")          # not in the agents bundle
    os.utime(root / "agents" / "__init__.py", (1, 1))          # mtimes do not count
    assert tree_key(root) == key
    (root / "agents" / "sub" / "api.proto").write_text("syntax = 'proto2';\n")
    assert tree_key(root) != key


def test_agents_bundle_has_the_same_bytes_for_the_same_sources(tmp_path):
    one = make_project(tmp_path / "one")
    two = make_project(tmp_path / "two")
    for path in two.rglob("*"):
        os.utime(path, (12345, 12345))
    (two / "agents" / "__pycache__").mkdir()
    (two / "agents" / "__pycache__" / "old.cpython-311.pyc").write_bytes(b"junk")
    build_agents_bundle(one, tmp_path / "one.tar.gz")
    build_agents_bundle(two, tmp_path / "two.tar.gz")
    assert (tmp_path / "one.tar.gz").read_bytes() == (tmp_path / "two.tar.gz").read_bytes()
    with tarfile.open(tmp_path / "one.tar.gz") as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert "agents/sub/api.proto" in names
    assert "agents/__pycache__/old.cpython-311.pyc" not in names
    assert f"agents/sub/__pycache__/__init__.{sys.implementation.cache_tag}.pyc" in names
    assert {(m.mtime, m.uid, m.gid) for m in members} == {(BUNDLE_MTIME, 0, 0)}
    assert not any(n.startswith(("labctl", "/")) for n in names)


def test_unpacked_bytecode_matches_its_source_so_nothing_is_recompiled(tmp_path):
    root = make_project(tmp_path / "src")
    build_agents_bundle(root, tmp_path / "agents.tar.gz")
    out = tmp_path / "out"
    with tarfile.open(tmp_path / "agents.tar.gz") as tar:
        tar.extractall(out)  # our own archive (3.11.2 has no extraction filters)
    source = out / "agents" / "sub" / "__init__.py"
    cached = Path(importlib.util.cache_from_source(str(source)))
    header = cached.read_bytes()[:16]
    flags, mtime, size = struct.unpack("<III", header[4:16])
    assert header[:4] == importlib.util.MAGIC_NUMBER
    assert flags == 0, "timestamp-based pyc expected"
    assert (mtime, size) == (int(source.stat().st_mtime), source.stat().st_size)


def test_tarball_ignores_mtimes_and_normalizes_modes(tmp_path):
    trees = []
    for i, mtime in enumerate((1, 99999)):
        tree = tmp_path / f"t{i}"
        (tree / "d").mkdir(parents=True)
        (tree / "d" / "run.so").write_bytes(b"\x7fELF")
        (tree / "d" / "run.so").chmod(0o775)
        (tree / "a.txt").write_text("a")
        (tree / "a.txt").chmod(0o600)
        for p in [*tree.rglob("*"), tree]:
            os.utime(p, (mtime, mtime))
        write_tarball(tree, tmp_path / f"t{i}.tar.gz")
        trees.append((tmp_path / f"t{i}.tar.gz").read_bytes())
    assert trees[0] == trees[1]
    with tarfile.open(tmp_path / "t0.tar.gz") as tar:
        modes = {m.name: m.mode for m in tar.getmembers()}
    assert modes == {"a.txt": 0o644, "d": 0o755, "d/run.so": 0o755}


def test_dependency_bundle_is_named_by_python_version():
    assert deps_bundle_name("3.11") == "agents-deps-py3.11.tar.gz"
    assert deps_bundle_name() == f"agents-deps-py{sys.version_info[0]}.{sys.version_info[1]}.tar.gz"


def test_prune_keeps_dependency_caches_and_the_newest_houses(tmp_path):
    cache = tmp_path / "cache"
    for i, name in enumerate(["deps-1", "bundle-deps-1-py3.11", "h1", "h2", "h3", "h4"]):
        (cache / name).mkdir(parents=True)
        os.utime(cache / name, (i, i))
    prune(cache, keep=2, current=cache / "h1")
    assert sorted(p.name for p in cache.iterdir()) == ["bundle-deps-1-py3.11", "deps-1", "h1", "h4"]


def test_a_syntax_error_fails_the_build_with_the_file_named(tmp_path):
    root = make_project(tmp_path / "src")
    (root / "agents" / "broken.py").write_text("def (:\n")
    with pytest.raises(wheelhouse.LabError, match="broken.py"):
        build_agents_bundle(root, tmp_path / "agents.tar.gz")
