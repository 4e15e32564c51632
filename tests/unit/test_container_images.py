"""Container image recipe, dpkg facts and image manifests (pure parts of
labctl/images/containers.py)."""

from __future__ import annotations

import copy

import pytest
import yaml

from labctl.errors import LabError
from labctl.images.containers import (
    RECIPE_FILE,
    applet_links,
    container_recipe,
    dependency_closure,
    image_json,
    parse_dpkg_status,
    recipe_from_data,
)

pytestmark = pytest.mark.unit

STATUS = """\
Package: python3
Status: install ok installed
Depends: python3.11 (>= 3.11.2-1~), libpython3-stdlib (= 3.11.2-1+b1)
Pre-Depends: python3-minimal (= 3.11.2-1+b1)

Package: python3.11
Status: install ok installed
Depends: python3.11-minimal (= 3.11.2-6), media-types | mime-support,
 libc6:amd64 (>= 2.34)

Package: python3-minimal
Status: install ok installed
Pre-Depends: python3.11-minimal (>= 3.11.2-1~)
Depends: dpkg (>= 1.13.20)

Package: python3.11-minimal
Status: install ok installed
Pre-Depends: libc6 (>= 2.36), zlib1g (>= 1:1.2.0)

Package: libpython3.11-stdlib
Status: install ok installed
Provides: libpython3-stdlib
Depends: libc6

Package: libc6
Status: install ok installed
Depends: libgcc-s1

Package: libgcc-s1
Status: install ok installed

Package: zlib1g
Status: install ok installed

Package: media-types
Status: install ok installed

Package: dpkg
Status: install ok installed
Depends: tar

Package: tar
Status: install ok installed

Package: removed-one
Status: deinstall ok config-files
"""


@pytest.fixture
def data():
    return yaml.safe_load(RECIPE_FILE.read_text())


def test_shipped_recipe_has_busybox_and_python_images():
    recipe = container_recipe()
    refs = {i.ref: i for i in recipe.images}
    assert set(refs) == {"lab/busybox:latest", "lab/python:latest"}
    assert refs["lab/busybox:latest"].kind == "busybox"
    assert refs["lab/python:latest"].config["cmd"][:3] == ["python3", "-m", "http.server"]
    assert {"python3", "busybox-static"} <= set(recipe.packages)


def test_recipe_hash_is_stable_and_changes_with_any_value(data):
    base = recipe_from_data(data).hash
    assert recipe_from_data(copy.deepcopy(data)).hash == base
    changed = copy.deepcopy(data)
    changed["images"][1]["config"]["cmd"] = ["python3", "-V"]
    assert recipe_from_data(changed).hash != base
    more = copy.deepcopy(data)
    more["packages"].append("curl")
    assert recipe_from_data(more).hash != base


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("suite"), "`suite` must be a string"),
    (lambda d: d.update(images=[]), "non-empty list"),
    (lambda d: d["images"][0].update({"from": "docker"}), "`from` must be one of"),
    (lambda d: d["images"][1].update(packages=[]), "needs `packages`"),
    (lambda d: d["images"][0].update(config={"cmd": []}), "needs a cmd or an entrypoint"),
    (lambda d: d["images"][0].update(config={"cmd": ["sh"], "user": "x"}), "unknown config keys"),
    (lambda d: d["images"][0]["config"].update(working_dir="srv"), "must be absolute"),
    (lambda d: d["images"].append(copy.deepcopy(d["images"][0])), "listed twice"),
])  # fmt: skip
def test_bad_recipes_are_refused_with_the_reason(data, mutate, message):
    mutate(data)
    with pytest.raises(LabError, match=message):
        recipe_from_data(data)


def test_dpkg_status_parsing_keeps_installed_packages_and_alternatives():
    installed = parse_dpkg_status(STATUS)
    assert "removed-one" not in installed
    assert ("media-types", "mime-support") in installed["python3.11"]
    assert ("libc6",) in installed["python3.11"]  # arch qualifier and version dropped
    assert installed["libpython3-stdlib"] == (("libpython3.11-stdlib",),)  # Provides


def test_dependency_closure_follows_depends_pre_depends_and_skips_excluded():
    installed = parse_dpkg_status(STATUS)
    assert dependency_closure(installed, ["python3"], exclude=["dpkg"]) == [
        "libc6", "libgcc-s1", "libpython3-stdlib", "libpython3.11-stdlib", "media-types",
        "python3", "python3-minimal", "python3.11", "python3.11-minimal", "zlib1g",
    ]  # fmt: skip
    assert "tar" in dependency_closure(installed, ["python3"])
    with pytest.raises(LabError, match="not installed"):
        dependency_closure(installed, ["perl"])


def test_busybox_applet_links_are_relative():
    links = applet_links("/bin/busybox\n/bin/sh\n/usr/bin/wget\n/sbin/ip\n")
    assert links == {"bin/sh": "../bin/busybox", "usr/bin/wget": "../../bin/busybox",
                     "sbin/ip": "../bin/busybox"}


def test_image_json_is_the_node_store_manifest():
    spec = container_recipe().images[0]
    manifest = image_json(spec, "ab" * 32, 2048)
    assert manifest == {"name": "lab/busybox", "tag": "latest", "id": "sha256:" + "ab" * 32,
                        "size": 2048, "config": spec.config}
    from agents.runtime.model import ImageConfig

    assert ImageConfig.from_dict(manifest["config"]).cmd == ("sh",)


def test_files_are_copied_through_merged_usr_symlinks(tmp_path):
    from labctl.images.containers import _resolve_dirs, copy_path

    tree, rootfs = tmp_path / "tree", tmp_path / "rootfs"
    (tree / "usr/bin").mkdir(parents=True)
    (tree / "usr/lib/x86_64-linux-gnu").mkdir(parents=True)
    (tree / "bin").symlink_to("usr/bin")
    (tree / "lib64").symlink_to("/usr/lib/x86_64-linux-gnu")
    (tree / "usr/bin/busybox").write_text("bb")
    (tree / "usr/lib/x86_64-linux-gnu/libc.so.6").write_text("libc")
    rootfs.mkdir()
    for path in ("bin/busybox", "lib64/libc.so.6"):
        _resolve_dirs(tree, rootfs, path)
        copy_path(tree, rootfs, path)
    assert (rootfs / "bin").is_symlink() and (rootfs / "usr/bin/busybox").read_text() == "bb"
    assert (rootfs / "lib64").readlink().as_posix() == "/usr/lib/x86_64-linux-gnu"
    assert (rootfs / "usr/lib/x86_64-linux-gnu/libc.so.6").read_text() == "libc"


def test_image_build_containers_prints_each_image(tmp_path, monkeypatch, capsys):
    import argparse
    import json

    from labctl.commands import image as command
    from labctl.images import containers

    recipe = container_recipe()
    for spec in recipe.images:
        where = tmp_path / spec.name / spec.tag
        where.mkdir(parents=True)
        (where / "image.json").write_text(json.dumps(image_json(spec, "0" * 64, 3_000_000)))
    seen = {}

    def built(rebuild=False):
        seen["rebuild"] = rebuild
        return tmp_path

    monkeypatch.setattr(containers, "ensure_container_images", built)
    assert command.cmd_build_containers(argparse.Namespace(rebuild=True)) == 0
    out = capsys.readouterr().out
    assert seen == {"rebuild": True}
    assert f"recipe  {recipe.hash}" in out
    assert "lab/busybox:latest" in out and "3.0 MB" in out and "lab/python:latest" in out
