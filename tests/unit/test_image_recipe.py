"""The image recipe: data validation and the hash that keys the image cache."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import yaml

from labctl.errors import LabError
from labctl.images import image_recipe
from labctl.images.recipe import RECIPE_FILE, recipe_from_data

pytestmark = pytest.mark.unit

HOST_NEEDS = {
    "systemd-sysv", "openssh-server", "python3", "python3-venv", "linux-image-cloud-amd64",
    "initramfs-tools", "iproute2", "nftables", "iptables", "kmod", "procps", "netbase",
    "ca-certificates",
}  # fmt: skip


@pytest.fixture
def data():
    return yaml.safe_load(RECIPE_FILE.read_text())


def test_shipped_recipe_has_what_hosts_need():
    recipe = image_recipe()
    assert set(recipe.packages) >= HOST_NEEDS
    assert recipe.suite == "bookworm" and recipe.variant == "minbase"
    assert recipe.initrd_modules == ("virtio_pci", "virtio_blk")
    assert "systemd-networkd.service" in recipe.enabled_units
    assert "systemd-network-generator.service" in recipe.enabled_units
    assert "haproxy.service" in recipe.disabled_units and "runc" in recipe.packages
    assert list(recipe.packages) == sorted(set(recipe.packages))


def test_hash_is_stable_and_short(data):
    a = recipe_from_data(copy.deepcopy(data))
    b = recipe_from_data(copy.deepcopy(data))
    assert a.hash == b.hash == image_recipe().hash
    assert len(a.hash) == 16 and int(a.hash, 16) >= 0


def test_adding_a_package_changes_the_hash(data):
    base = recipe_from_data(copy.deepcopy(data)).hash
    data["packages"]["dns"] = ["dnsutils"]
    assert recipe_from_data(data).hash != base
    assert image_recipe(extra_packages=("busybox",)).hash != image_recipe().hash


def test_package_order_and_grouping_do_not_matter(data):
    base = recipe_from_data(copy.deepcopy(data)).hash
    regrouped = copy.deepcopy(data)
    everything = [p for group in data["packages"].values() for p in group]
    regrouped["packages"] = {"all": list(reversed(everything))}
    assert recipe_from_data(regrouped).hash == base


def test_customisation_text_is_part_of_the_hash(data):
    recipe = recipe_from_data(data)
    edited = dataclasses.replace(
        recipe,
        files=tuple(
            dataclasses.replace(f, text=f.text + "# edited\n")
            if f.path.endswith("10-lab.conf")
            else f
            for f in recipe.files
        ),
    )
    assert edited.hash != recipe.hash
    assert dataclasses.replace(recipe, masked_units=()).hash != recipe.hash
    assert dataclasses.replace(recipe, masked_generators=()).hash != recipe.hash
    assert dataclasses.replace(recipe, steps_version=99).hash != recipe.hash


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.pop("suite"), "`suite` must be a string"),
        (lambda d: d.update(packages=[]), "`packages` must map group names"),
        (lambda d: d["packages"].update(boot="kmod"), "`boot` must be a list"),
        (lambda d: d.update(disk_size_mb=10), "`disk_size_mb`"),
        (lambda d: d.update(masked_units=[""]), "`masked_units` must be a list"),
    ],
)
def test_bad_recipe_data_is_a_clear_error(data, edit, message):
    edit(data)
    with pytest.raises(LabError, match=message):
        recipe_from_data(data)


def test_unreadable_recipe_file(tmp_path):
    bad = tmp_path / "r.yaml"
    bad.write_text("suite: [unclosed")
    with pytest.raises(LabError, match="cannot read the image recipe"):
        image_recipe(bad)
