"""nspawn provider pieces built by pure functions: names, files, command lines, parsers."""

from __future__ import annotations

import ipaddress

import pytest

from labctl.errors import LabError
from labctl.providers import netdev
from labctl.providers.base import NetworkSpec
from labctl.providers.mountinfo import mount_points, unescape_mountinfo
from labctl.providers.nspawn import (
    host_network_file,
    machine_name,
    mount_command,
    nspawn_command,
    stat_start_time,
    veth_name,
)

pytestmark = pytest.mark.unit

NET = NetworkSpec("demo", ipaddress.IPv4Network("10.40.0.0/24"), "10.40.0.1", "labdemo0")


def test_machine_names_are_short_unique_and_stable():
    a, b = machine_name("lab1", "node1"), machine_name("lab2", "node1")
    assert a != b and a == machine_name("lab1", "node1")
    assert len(veth_name(a)) == 15  # IFNAMSIZ - 1: nspawn keeps it as is
    netdev.check_ifname(veth_name(a))


def test_network_file_matches_host0_with_the_static_address():
    text = host_network_file("10.40.0.11", NET)
    assert "[Match]\nName=host0\n" in text
    assert "Address=10.40.0.11/24\n" in text
    assert "Gateway=10.40.0.1\n" in text
    assert "DHCP=no\n" in text and "LinkLocalAddressing=no\n" in text


def test_nspawn_command_has_the_flags_that_work_without_host_systemd(tmp_path):
    cmd = nspawn_command(tmp_path / "merged", "lab-12345678", "labdemo0")
    assert cmd[0] == "systemd-nspawn"
    for flag in (
        "--boot",
        "--register=no",
        "--keep-unit",
        "--network-bridge=labdemo0",
        "--console=read-only",
        "--machine=lab-12345678",
        "--resolv-conf=off",
    ):
        assert flag in cmd
    assert cmd[cmd.index("-D") + 1] == str(tmp_path / "merged")
    assert (
        nspawn_command(tmp_path, "m", "b", ("--set-credential=a:b",))[-1] == "--set-credential=a:b"
    )


def test_overlay_mount_command(tmp_path):
    cmd = mount_command(tmp_path / "lower", tmp_path / "u", tmp_path / "w", tmp_path / "m")
    assert cmd[:4] == ["mount", "-t", "overlay", "overlay"]
    assert cmd[5] == f"lowerdir={tmp_path}/lower,upperdir={tmp_path}/u,workdir={tmp_path}/w"
    with pytest.raises(LabError, match="cannot be used in an overlay"):
        mount_command(tmp_path / "a,b", tmp_path / "u", tmp_path / "w", tmp_path / "m")


def test_mountinfo_parsing_unescapes_mount_points():
    info = (
        "22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
        "99 22 0:50 / /var/lib/labs/my\\040lab/merged rw - overlay overlay rw,lowerdir=/x\n"
    )
    assert mount_points(info) == ["/", "/var/lib/labs/my lab/merged"]
    assert unescape_mountinfo("a\\134b\\011c") == "a\\b\tc"
    assert unescape_mountinfo("trailing\\04") == "trailing\\04"


def test_start_time_is_read_after_the_command_name():
    stat = "1234 (odd ) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 987654 1000 0"
    assert stat_start_time(stat) == 987654


def test_bridge_commands():
    assert netdev.create_bridge_command("labdemo0") == [
        "ip", "link", "add", "name", "labdemo0", "type", "bridge",
        "stp_state", "0", "forward_delay", "0",
    ]  # fmt: skip
    iface = ipaddress.IPv4Interface("10.40.0.1/24")
    assert netdev.address_command("labdemo0", iface) == [
        "ip", "address", "replace", "10.40.0.1/24", "dev", "labdemo0",
    ]  # fmt: skip
    assert netdev.delete_link_command("x0") == ["ip", "link", "delete", "dev", "x0"]


@pytest.mark.parametrize("bad", ["", "a" * 16, "bad name", "x/y"])
def test_bad_interface_names_are_rejected(bad):
    with pytest.raises(LabError, match="invalid network interface name"):
        netdev.check_ifname(bad)
