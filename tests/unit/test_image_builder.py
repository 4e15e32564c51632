"""Builder pieces: command lines, customisation steps on a tree, progress summaries."""

from __future__ import annotations

import os

import pytest

from labctl.errors import LabError
from labctl.images import builder, customize, image_recipe
from labctl.images.mirror import SourceEntry
from labctl.images.progress import DebootstrapProgress, Progress

pytestmark = pytest.mark.unit

MIRROR = SourceEntry(
    types=("deb",),
    uri="http://mirror.example.org/debian",
    suites=("bookworm",),
    components=("main",),
    signed_by="/usr/share/keyrings/k.gpg",
    origin="x.sources:1",
)


def test_debootstrap_command(tmp_path):
    recipe = image_recipe()
    cmd = builder.debootstrap_command(recipe, tmp_path / "rootfs", MIRROR, tmp_path / "debs")
    assert cmd[0] == "debootstrap"
    assert "--variant=minbase" in cmd and "--components=main" in cmd
    include = next(a for a in cmd if a.startswith("--include="))
    assert set(include.removeprefix("--include=").split(",")) == set(recipe.packages)
    assert "--keyring=/usr/share/keyrings/k.gpg" in cmd
    assert f"--cache-dir={tmp_path / 'debs'}" in cmd
    assert cmd[-3:] == ["bookworm", str(tmp_path / "rootfs"), "http://mirror.example.org/debian"]


def test_disk_and_initrd_commands_use_no_loop_mounts(tmp_path):
    mkfs = builder.mkfs_command(tmp_path / "a.raw", tmp_path / "rootfs")
    assert mkfs[:2] == ["mkfs.ext4", "-q"] and mkfs[mkfs.index("-d") + 1] == str(
        tmp_path / "rootfs"
    )
    assert builder.qcow2_command(tmp_path / "a.raw", tmp_path / "b.qcow2") == [
        "qemu-img", "convert", "-f", "raw", "-O", "qcow2",
        str(tmp_path / "a.raw"), str(tmp_path / "b.qcow2"),
    ]  # fmt: skip
    initramfs = builder.initramfs_command(tmp_path)
    # /proc is mounted only inside a private mount namespace that dies with the command
    assert initramfs[:4] == ["unshare", "--mount", "--propagation", "private"]
    assert "update-initramfs -u -k all" in initramfs[-1]
    assert builder.enable_command(tmp_path, ("a.service",))[-2:] == ["enable", "a.service"]
    assert builder.enable_command(tmp_path, ("b.service",), "disable")[-2:] == ["disable", "b.service"]


def test_write_file_replaces_symlinks_instead_of_writing_through(tmp_path):
    target = tmp_path / "outside"
    target.write_text("host's resolv.conf")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/resolv.conf").symlink_to(target)
    builder.write_file(tmp_path, customize.ImageFile("etc/resolv.conf", ""))
    assert target.read_text() == "host's resolv.conf"
    assert not (tmp_path / "etc/resolv.conf").is_symlink()
    assert (tmp_path / "etc/resolv.conf").read_text() == ""
    builder.write_file(tmp_path, customize.ImageFile("etc/machine-id", "", 0o444))
    assert (tmp_path / "etc/machine-id").stat().st_mode & 0o777 == 0o444


def test_mask_unit_links_to_dev_null(tmp_path):
    builder.mask_unit(tmp_path, "getty@.service")
    builder.mask_unit(tmp_path, "getty@.service")  # again: still one link
    assert os.readlink(tmp_path / "etc/systemd/system/getty@.service") == "/dev/null"
    builder.mask_unit(tmp_path, "systemd-sysv-generator", "etc/systemd/system-generators")
    link = tmp_path / "etc/systemd/system-generators/systemd-sysv-generator"
    assert os.readlink(link) == "/dev/null"


def test_remove_paths_globs_inside_the_tree_only(tmp_path):
    for rel in ("usr/share/doc/a/x", "usr/share/doc/b", "etc/ssh/ssh_host_rsa_key", "etc/keep"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    builder.remove_paths(tmp_path, ("usr/share/doc/*", "etc/ssh/ssh_host_*", "var/missing/*"))
    assert (tmp_path / "usr/share/doc").is_dir() and not any((tmp_path / "usr/share/doc").iterdir())
    assert not (tmp_path / "etc/ssh/ssh_host_rsa_key").exists()
    assert (tmp_path / "etc/keep").exists()
    for bad in ("/etc/*", "../x"):
        with pytest.raises(LabError, match="must be relative"):
            builder.remove_paths(tmp_path, (bad,))


def test_needs_update_stamps_match_usr_so_update_units_skip(tmp_path):
    for rel in ("usr", "etc", "var"):
        (tmp_path / rel).mkdir()
    os.utime(tmp_path / "usr", ns=(1_700_000_000_123_456_789, 1_700_000_000_123_456_789))
    builder.write_needs_update_stamps(tmp_path)
    usr = (tmp_path / "usr").stat()
    for rel in ("etc/.updated", "var/.updated"):
        stamp = tmp_path / rel
        # systemd's ConditionNeedsUpdate is true only when /usr is newer than the stamp
        assert stamp.stat().st_mtime_ns == usr.st_mtime_ns
        assert stamp.read_text() == f"TIMESTAMP_NSEC={usr.st_mtime_ns}\n"


def test_single_boot_file(tmp_path):
    (tmp_path / "boot").mkdir()
    with pytest.raises(LabError, match="expected one vmlinuz-"):
        builder.single_boot_file(tmp_path, "vmlinuz")
    (tmp_path / "boot/vmlinuz-6.1.0-1-cloud-amd64").write_text("k")
    assert builder.single_boot_file(tmp_path, "vmlinuz").name == "vmlinuz-6.1.0-1-cloud-amd64"


def test_debootstrap_progress_summarises_interleaved_steps():
    summary = DebootstrapProgress(every=3, interval=100.0)
    shown = []
    for i in range(7):
        for step in ("Retrieving", "Validating"):
            shown.append(summary.feed(f"I: {step} pkg{i} 1.0\n", now=float(i)))
    shown = [s for s in shown if s]
    assert shown == [
        "debootstrap: retrieving (1) pkg0 1.0",
        "debootstrap: validating (1) pkg0 1.0",
        "debootstrap: retrieving (3) pkg2 1.0",
        "debootstrap: validating (3) pkg2 1.0",
        "debootstrap: retrieving (6) pkg5 1.0",
        "debootstrap: validating (6) pkg5 1.0",
    ]
    assert summary.feed("W: something odd\n", 0.0) == "W: something odd"
    assert summary.feed("random noise\n", 0.0) is None


def test_debootstrap_progress_speaks_up_after_a_quiet_interval():
    summary = DebootstrapProgress(every=1000, interval=5.0)
    assert summary.feed("I: Extracting a...\n", 0.0) == "debootstrap: extracting (1) a"
    assert summary.feed("I: Extracting b...\n", 1.0) is None
    assert summary.feed("I: Extracting c...\n", 6.5) == "debootstrap: extracting (3) c"


def test_progress_prefixes_elapsed_time():
    lines, now = [], [100.0]
    progress = Progress(lines.append, clock=lambda: now[0])
    now[0] = 112.25
    progress("mkfs")
    assert lines == ["[  12.2s] mkfs"]


def test_debootstrap_progress_heartbeat_when_silent():
    summary = DebootstrapProgress(every=1000, interval=10.0)
    assert summary.idle(100.0) is None  # nothing started yet
    assert summary.feed("I: Configuring a...\n", 0.0) == "debootstrap: configuring (1) a"
    assert summary.idle(5.0) is None
    assert summary.idle(10.5) == "debootstrap: still configuring (after 1)"
    assert summary.idle(12.0) is None


def test_run_debootstrap_streams_progress_and_reports_failures(tmp_path):
    lines = []
    script = "echo 'I: Retrieving a'; echo 'I: Retrieving b'; echo 'E: no luck'; exit 3"
    with pytest.raises(LabError, match=r"debootstrap failed \(exit 3\)[\s\S]*E: no luck"):
        builder.run_debootstrap(["sh", "-c", script], tmp_path / "log", Progress(lines.append))
    assert any(line.endswith("debootstrap: retrieving (1) a") for line in lines)
    assert any(line.endswith("E: no luck") for line in lines)
    assert "I: Retrieving b" in (tmp_path / "log").read_text()
