"""The lifecycle commands' pure parts: argument parsing, lab selection, the ssh command line."""

from __future__ import annotations

import argparse

import pytest

from labctl.cli import build_parser
from labctl.commands.ssh import ssh_argv
from labctl.commands.status import lab_from_args
from labctl.commands.up import parse_step_timeouts
from labctl.errors import LabError

pytestmark = pytest.mark.unit


def test_ssh_argv_uses_the_lab_key_and_pinned_host_keys_only():
    argv = ssh_argv("10.1.0.5", "/lab/ssh/id_ed25519", "/lab/ssh/known_hosts", ["uname", "-a"])
    assert argv[0] == "ssh" and argv[-4:] == ["root@10.1.0.5", "--", "uname", "-a"]
    text = " ".join(argv)
    for option in ("-i /lab/ssh/id_ed25519", "UserKnownHostsFile=/lab/ssh/known_hosts",
                   "StrictHostKeyChecking=yes", "IdentitiesOnly=yes", "BatchMode=yes"):
        assert option in text
    assert ssh_argv("10.1.0.5", "k", "kh", [])[-1] == "root@10.1.0.5"  # interactive shell


def test_step_timeouts_from_the_command_line():
    t = parse_step_timeouts(["ssh-banner=300", "booted=20.5"])
    assert (t.ssh_banner, t.booted) == (300.0, 20.5)
    for bad in ("ssh-banner", "booted=soon", "nap=3"):
        with pytest.raises(LabError):
            parse_step_timeouts([bad])


def test_cli_parses_lifecycle_commands():
    parser = build_parser()
    args = parser.parse_args(["ssh", "--lab", "demo", "node-1", "--", "ls", "-l"])
    assert (args.lab, args.host, args.command) == ("demo", "node-1", ["ls", "-l"])
    args = parser.parse_args(["down", "--lab", "demo", "--keep-state"])
    assert args.keep_state
    args = parser.parse_args(["up", "-i", "inv.yml", "--no-deploy", "--step-timeout", "booted=9"])
    assert args.no_deploy and args.step_timeout == ["booted=9"]
    args = parser.parse_args(["console", "node-1", "-n", "20"])
    assert (args.host, args.lines, args.follow) == ("node-1", 20, False)


def test_lab_selection_without_inventory(tmp_path, monkeypatch):
    monkeypatch.setenv("LABCTL_HOME", str(tmp_path))
    ns = argparse.Namespace(inventory=None, lab=None, extra_vars=[])
    with pytest.raises(LabError, match="no lab exists yet"):
        lab_from_args(ns)
    (tmp_path / "labs" / "one").mkdir(parents=True)
    assert lab_from_args(ns) == ("one", None)
    (tmp_path / "labs" / "two").mkdir()
    with pytest.raises(LabError, match=r"several labs exist \(one, two\)"):
        lab_from_args(ns)
    assert lab_from_args(argparse.Namespace(inventory=None, lab="two", extra_vars=[])) == ("two", None)
