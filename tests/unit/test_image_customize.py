"""The files written into the base image, as rendered text."""

from __future__ import annotations

import pytest

from labctl.images import customize

pytestmark = pytest.mark.unit


def files_by_path():
    return {f.path: f for f in customize.image_files(initrd_modules=("virtio_pci", "virtio_blk"))}


def test_sshd_allows_key_only_root_login_without_dns():
    lines = customize.sshd_config().splitlines()
    for wanted in (
        "PermitRootLogin prohibit-password",
        "PasswordAuthentication no",
        "UseDNS no",
        "HostKey /etc/ssh/ssh_host_ed25519_key",
    ):
        assert wanted in lines


def test_host_key_unit_makes_only_an_ed25519_key_once():
    unit = customize.hostkey_unit()
    assert "ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key" in unit
    assert "Before=ssh.service" in unit
    exec_line = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    assert "-t ed25519" in exec_line and "-A" not in exec_line.split()
    dropin = customize.ssh_service_dropin()
    assert f"Wants={customize.HOSTKEY_UNIT}" in dropin
    assert f"After={customize.HOSTKEY_UNIT}" in dropin


def test_initrd_lists_only_the_virtio_modules():
    files = files_by_path()
    assert "MODULES=list" in files["etc/initramfs-tools/conf.d/lab.conf"].text
    modules = [
        line for line in files["etc/initramfs-tools/modules"].text.splitlines()
        if not line.startswith("#")
    ]  # fmt: skip
    assert modules == ["virtio_pci", "virtio_blk"]


def test_identity_files_are_empty():
    files = files_by_path()
    for path in ("etc/machine-id", "etc/resolv.conf", "etc/fstab"):
        assert files[path].text == ""
    assert files["etc/machine-id"].mode == 0o444


def test_every_file_is_relative_and_written_once():
    paths = [f.path for f in customize.image_files(initrd_modules=("virtio_blk",))]
    assert len(paths) == len(set(paths))
    assert all(not p.startswith("/") and ".." not in p.split("/") for p in paths)


def test_lab_image_file_names_the_recipe():
    text = customize.lab_image_text("0123456789abcdef", "bookworm")
    assert "LAB_IMAGE_RECIPE=0123456789abcdef\n" in text
    assert "LAB_IMAGE_SUITE=bookworm\n" in text


def test_ssh_starts_without_the_extra_config_check_run():
    dropin = customize.ssh_service_dropin()
    service = dropin[dropin.index("[Service]") :].splitlines()
    assert "ExecStartPre=" in service  # an empty assignment clears Debian's `sshd -t`


def test_journal_stays_in_memory():
    files = files_by_path()
    assert "Storage=volatile" in files["etc/systemd/journald.conf.d/10-lab.conf"].text.splitlines()


def test_cpu_feature_modules_are_blacklisted_not_removed():
    text = files_by_path()["etc/modprobe.d/lab-blacklist.conf"].text
    blacklisted = {line.split()[1] for line in text.splitlines() if line.startswith("blacklist ")}
    assert {"kvm", "kvm_amd", "kvm_intel"} <= blacklisted


def test_needs_update_stamp_carries_the_usr_timestamp():
    assert customize.needs_update_stamp(1700000000123456789) == "TIMESTAMP_NSEC=1700000000123456789\n"
    assert set(customize.NEEDS_UPDATE_STAMPS) == {"etc/.updated", "var/.updated"}



def test_vms_load_their_virtio_drivers_without_udev_coldplug():
    text = files_by_path()["etc/modules-load.d/lab-virtio.conf"].text
    modules = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert modules == ["virtio_pci", "virtio_net", "virtio_rng", "button"]  # pci first: it makes the others' devices
