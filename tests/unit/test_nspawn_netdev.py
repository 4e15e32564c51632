"""The bridge helpers' decisions, with `ip` and /sys/class/net faked."""

from __future__ import annotations

import ipaddress
import subprocess

import pytest

from labctl.errors import LabError
from labctl.providers import netdev

pytestmark = pytest.mark.unit

NET = ipaddress.IPv4Network("10.40.0.0/24")


@pytest.fixture
def fake_ip(monkeypatch, tmp_path):
    """/sys/class/net under tmp_path; `ip` calls recorded and applied to it."""
    calls = []

    def run_ip(cmd):
        calls.append(cmd)
        if cmd[:3] == ["ip", "link", "add"]:
            (tmp_path / cmd[4] / "bridge").mkdir(parents=True)
        if cmd[:3] == ["ip", "link", "delete"]:
            (tmp_path / cmd[4] / "bridge").rmdir()
            (tmp_path / cmd[4]).rmdir()
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(netdev, "SYS_NET", tmp_path)
    monkeypatch.setattr(netdev, "run_ip", run_ip)
    return calls


def test_ensure_bridge_creates_addresses_and_brings_it_up(fake_ip):
    netdev.ensure_bridge("labx0", "10.40.0.1", NET)
    assert [c[:3] for c in fake_ip] == [
        ["ip", "link", "add"],
        ["ip", "address", "replace"],
        ["ip", "link", "set"],
    ]
    assert "10.40.0.1/24" in fake_ip[1]
    fake_ip.clear()
    netdev.ensure_bridge("labx0", "10.40.0.1", NET)  # again: no second bridge
    assert [c[:3] for c in fake_ip] == [["ip", "address", "replace"], ["ip", "link", "set"]]


def test_an_interface_that_is_not_a_bridge_is_left_alone(fake_ip, tmp_path):
    (tmp_path / "eth9").mkdir()
    with pytest.raises(LabError, match="eth9 exists and is not a bridge"):
        netdev.ensure_bridge("eth9", "10.40.0.1", NET)
    assert fake_ip == []


def test_delete_link_is_idempotent(fake_ip):
    netdev.ensure_bridge("labx0", "10.40.0.1", NET)
    fake_ip.clear()
    netdev.delete_link("labx0")
    netdev.delete_link("labx0")
    assert fake_ip == [["ip", "link", "delete", "dev", "labx0"]]


def test_failures_say_which_command_failed(monkeypatch, tmp_path):
    monkeypatch.setattr(netdev, "SYS_NET", tmp_path)
    monkeypatch.setattr(
        netdev,
        "run_ip",
        lambda cmd: subprocess.CompletedProcess(
            cmd, 2, "", "RTNETLINK answers: Operation not permitted"
        ),
    )
    with pytest.raises(LabError, match="creating bridge labx0 failed: ip link add .*not permitted"):
        netdev.ensure_bridge("labx0", "10.40.0.1", NET)
