"""The image cache: build into a temp dir, rename when complete, keep the last 2."""

from __future__ import annotations

import os

import pytest

from labctl.errors import LabError
from labctl.images import cache, ensure_base_image, image_recipe
from labctl.images.mirror import SourceEntry

pytestmark = pytest.mark.unit

MIRROR = SourceEntry(
    ("deb",), "http://mirror.example.org/debian", ("bookworm",), ("main",), None, "t"
)


def fake_build(calls, fail=False):
    def build(recipe, out, mirror, progress, deb_cache):
        calls.append(out)
        out.mkdir(parents=True)
        (out / "rootfs").mkdir()
        (out / "base.qcow2").write_text("q")
        if fail:
            raise LabError("debootstrap failed")
        (out / "vmlinuz").write_text("k")
        (out / "initrd.img").write_text("i")

    return build


@pytest.fixture
def builds(monkeypatch):
    calls = []
    monkeypatch.setattr(cache.builder, "build_image", fake_build(calls))
    monkeypatch.setattr(cache, "find_mirror", lambda suite, component: MIRROR)
    return calls


def test_builds_once_then_returns_the_cached_image(tmp_path, builds):
    lines = []
    image = ensure_base_image(progress=lines.append, home=tmp_path)
    assert image.recipe_hash == image_recipe().hash
    assert image.root == tmp_path / "images" / image.recipe_hash
    assert image.is_complete() and image.kernel.read_text() == "k"
    assert len(builds) == 1 and builds[0].name.startswith(".tmp-")
    assert not builds[0].exists()  # renamed into place
    assert any("base image ready" in line for line in lines)
    assert ensure_base_image(progress=lines.append, home=tmp_path) == image
    assert len(builds) == 1
    assert (tmp_path / "images").stat().st_mode & 0o001  # qemu can traverse


def test_a_failed_build_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(cache.builder, "build_image", fake_build(calls, fail=True))
    monkeypatch.setattr(cache, "find_mirror", lambda suite, component: MIRROR)
    with pytest.raises(LabError, match="debootstrap failed"):
        ensure_base_image(progress=lambda _: None, home=tmp_path)
    names = [p.name for p in (tmp_path / "images").iterdir()]
    assert sorted(names) == [".lock", "debs"]


def test_stale_temp_dirs_of_interrupted_builds_are_removed(tmp_path, builds):
    stale = tmp_path / "images" / ".tmp-0000-1"
    (stale / "rootfs").mkdir(parents=True)
    ensure_base_image(progress=lambda _: None, home=tmp_path)
    assert not stale.exists()


def test_a_changed_recipe_builds_a_new_image(tmp_path, builds):
    first = ensure_base_image(progress=lambda _: None, home=tmp_path)
    second = ensure_base_image(
        progress=lambda _: None, home=tmp_path, recipe=image_recipe(extra_packages=("busybox",))
    )
    assert first.root != second.root and first.is_complete() and second.is_complete()
    assert len(builds) == 2


def test_prune_keeps_the_most_recent_and_those_in_use(tmp_path):
    root = tmp_path / "images"
    for i, name in enumerate(["a", "b", "c", "d"]):
        (root / name).mkdir(parents=True)
        os.utime(root / name, (1000 + i, 1000 + i))
    (root / "debs").mkdir()
    lines = []
    cache.prune(root, 2, lines.append, in_use=lambda p: p.name == "a")
    assert sorted(p.name for p in root.iterdir()) == ["a", "c", "d", "debs"]
    assert "keeping old image a: still in use" in lines


def test_mount_points_using_finds_overlays_on_an_image():
    info = (
        "22 1 0:21 / / rw - ext4 /dev/vda rw\n"
        "99 22 0:50 / /labs/x/hosts/n1/merged rw - overlay overlay "
        "rw,lowerdir=/var/lib/labctl/images/abc/rootfs,upperdir=/u\n"
    )
    from pathlib import Path

    assert cache.mount_points_using(Path("/var/lib/labctl/images/abc"), info) == [
        "/labs/x/hosts/n1/merged"
    ]
    assert cache.mount_points_using(Path("/var/lib/labctl/images/zzz"), info) == []


def test_lab_records_naming_an_image_keep_it(tmp_path):
    image = tmp_path / "images" / "abc"
    hosts = tmp_path / "labs" / "demo" / "hosts"
    hosts.mkdir(parents=True)
    (hosts / "n1.json").write_text(f'{{"details": {{"lower": "{image}/rootfs"}}}}')
    (hosts / "n2.json").write_text('{"details": {}}')
    assert cache.lab_records_using(image, tmp_path / "labs") == [hosts / "n1.json"]
    assert cache.lab_records_using(tmp_path / "images" / "ab", tmp_path / "labs") == []
    assert cache.is_in_use(image)


def test_rebuild_refuses_an_image_that_labs_still_use(tmp_path, builds, monkeypatch):
    image = ensure_base_image(progress=lambda _: None, home=tmp_path)
    monkeypatch.setattr(cache, "is_in_use", lambda path: path == image.root)
    with pytest.raises(LabError, match="cannot rebuild image .* take those labs down first"):
        ensure_base_image(progress=lambda _: None, home=tmp_path, rebuild=True)
    monkeypatch.setattr(cache, "is_in_use", lambda path: False)
    ensure_base_image(progress=lambda _: None, home=tmp_path, rebuild=True)
    assert len(builds) == 2 and image.is_complete()
