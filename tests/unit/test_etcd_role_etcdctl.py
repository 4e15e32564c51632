"""``labctl etcdctl``: the lab's endpoints and certificates handed to etcdctl."""

from __future__ import annotations

import argparse
import json
import os
import textwrap
from pathlib import Path

import pytest

from labctl.commands import etcdctl as etcdctl_command
from labctl.commands.etcdctl import client_endpoints, etcdctl_args, etcdctl_environment
from labctl.errors import LabError
from labctl.inventory import load_inventory
from labctl.pki_for_lab import ensure_lab_pki
from labctl.state import LabState

pytestmark = pytest.mark.unit

INVENTORY = """
all:
  vars: {lab_name: ctl, lab_network: 10.9.4.0/24}
  children:
    etcd:
      hosts:
        etcd-1: {ansible_host: 10.9.4.31}
        etcd-2: {ansible_host: 10.9.4.32, etcd_client_port: 12379}
        etcd-3: {ansible_host: 10.9.4.33}
    control_plane:
      hosts:
        cp-1: {ansible_host: 10.9.4.11}
    workers:
      hosts:
        worker-1: {ansible_host: 10.9.4.21}
"""

# A stand-in etcdctl: prints its arguments and the ETCDCTL_* environment as JSON.
FAKE_ETCDCTL = """#!/usr/bin/env python3
import json, os, sys
print(json.dumps({"args": sys.argv[1:],
                  "env": {k: v for k, v in os.environ.items() if k.startswith("ETCDCTL_")}}))
sys.exit(3)
"""


def cli(argv: list[str]) -> int:
    """The command as the CLI dispatches it (only this command registered: fast)."""
    parser = argparse.ArgumentParser(prog="labctl")
    etcdctl_command.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture
def inventory_file(tmp_path):
    path = tmp_path / "ctl.yml"
    path.write_text(textwrap.dedent(INVENTORY))
    return path


@pytest.fixture
def home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("LABCTL_HOME", str(home))
    return home


@pytest.fixture
def fake_etcdctl(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "etcdctl"
    tool.write_text(FAKE_ETCDCTL)
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return tool


def test_endpoints_are_every_etcd_host_with_its_client_port(inventory_file):
    assert client_endpoints(load_inventory(inventory_file)) == [
        "https://10.9.4.31:2379", "https://10.9.4.32:12379", "https://10.9.4.33:2379"]


def test_a_lab_without_etcd_hosts_is_refused(tmp_path):
    path = tmp_path / "noetcd.yml"
    path.write_text("all:\n  hosts:\n    h1:\n")
    with pytest.raises(LabError, match="no etcd group"):
        client_endpoints(load_inventory(path))


def test_environment_names_the_lab_and_forces_api_3():
    env = etcdctl_environment(["https://a:2379", "https://b:2379"], Path("/p"), ["get", "k"],
                              {"HOME": "/root", "ETCDCTL_API": "2"})
    assert env == {
        "HOME": "/root",
        "ETCDCTL_API": "3",
        "ETCDCTL_ENDPOINTS": "https://a:2379,https://b:2379",
        "ETCDCTL_CACERT": "/p/ca.crt",
        "ETCDCTL_CERT": "/p/etcd/healthcheck-client.crt",
        "ETCDCTL_KEY": "/p/etcd/healthcheck-client.key",
    }


def test_a_flag_in_the_arguments_replaces_its_environment_variable():
    """etcdctl refuses a value given both ways, so the user's flag wins alone."""
    env = etcdctl_environment(["https://a:2379"], Path("/p"),
                              ["--endpoints=https://b:2379", "--cert", "/x.crt", "get", "k"],
                              {"ETCDCTL_ENDPOINTS": "stale"})
    assert "ETCDCTL_ENDPOINTS" not in env and "ETCDCTL_CERT" not in env
    assert env["ETCDCTL_KEY"] == "/p/etcd/healthcheck-client.key"


def test_arguments_after_the_separator_and_none_is_an_error():
    assert etcdctl_args(["--", "member", "list"]) == ["member", "list"]
    assert etcdctl_args(["endpoint", "health"]) == ["endpoint", "health"]
    with pytest.raises(LabError, match="no etcdctl command"):
        etcdctl_args(["--"])


def test_cli_runs_etcdctl_with_the_labs_pki_and_returns_its_exit_code(
        inventory_file, home, fake_etcdctl, capfd):
    inv = load_inventory(inventory_file)
    pki = ensure_lab_pki(inv, LabState.for_lab("ctl", home=home))
    code = cli(["etcdctl", "-i", str(inventory_file), "--", "endpoint", "health", "--cluster"])
    out = json.loads(capfd.readouterr().out)
    assert code == 3
    assert out["args"] == ["endpoint", "health", "--cluster"]
    assert out["env"]["ETCDCTL_API"] == "3"
    assert out["env"]["ETCDCTL_ENDPOINTS"] == ",".join(client_endpoints(inv))
    assert out["env"]["ETCDCTL_CACERT"] == str(pki.ca_cert)
    assert out["env"]["ETCDCTL_CERT"] == str(pki.cert("etcd/healthcheck-client"))


def test_cli_says_when_the_lab_has_no_pki_yet(inventory_file, home, fake_etcdctl):
    with pytest.raises(LabError, match="lab 'ctl' has no PKI yet.*labctl up -i"):
        cli(["etcdctl", "-i", str(inventory_file), "--", "member", "list"])


def test_cli_says_when_etcdctl_is_missing(inventory_file, home, tmp_path, monkeypatch):
    ensure_lab_pki(load_inventory(inventory_file), LabState.for_lab("ctl", home=home))
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(LabError, match="etcdctl is not installed.*etcd-client"):
        cli(["etcdctl", "-i", str(inventory_file), "--", "member", "list"])
