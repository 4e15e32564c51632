"""Inventory groups -> the lab PKI's certificates (``labctl.pki_for_lab``)."""

from __future__ import annotations

import textwrap

import pytest

from labctl.inventory import load_inventory
from labctl.pki_for_lab import ensure_lab_pki, pki_hosts
from labctl.state import LabState

pytestmark = pytest.mark.unit

EXTERNAL = """
all:
  vars: {lab_name: ext, lab_network: 10.9.2.0/24}
  children:
    etcd:
      hosts:
        etcd-1: {ansible_host: 10.9.2.31}
        etcd-2:
    control_plane:
      hosts:
        cp-1: {ansible_host: 10.9.2.11}
    workers:
      hosts:
        worker-1: {ansible_host: 10.9.2.21}
"""

STACKED = """
all:
  vars: {lab_name: stk, lab_network: 10.9.1.0/24}
  children:
    control_plane:
      hosts:
        cp-1: {ansible_host: 10.9.1.11}
    etcd:
      children:
        control_plane:
    workers:
      hosts:
        worker-1: {ansible_host: 10.9.1.21}
"""


def inventory(tmp_path, text):
    path = tmp_path / "inv.yml"
    path.write_text(textwrap.dedent(text))
    return load_inventory(path)


def test_external_etcd_hosts_are_the_etcd_group(tmp_path):
    inv = inventory(tmp_path, EXTERNAL)
    hosts = pki_hosts(inv)
    allocated = inv.hosts["etcd-2"].address  # no ansible_host: labctl's stable address
    assert hosts["etcd_hosts"] == {"etcd-1": "10.9.2.31", "etcd-2": allocated}
    assert hosts["control_plane_hosts"] == {"cp-1": "10.9.2.11"}
    assert hosts["nodes"] == {"worker-1": "10.9.2.21"}


def test_stacked_etcd_hosts_are_the_control_plane(tmp_path):
    hosts = pki_hosts(inventory(tmp_path, STACKED))
    assert hosts["etcd_hosts"] == {"cp-1": "10.9.1.11"}
    assert hosts["control_plane_hosts"] == {"cp-1": "10.9.1.11"}


def test_ensure_lab_pki_writes_into_the_labs_state_and_is_idempotent(tmp_path):
    inv = inventory(tmp_path, STACKED)
    state = LabState.for_lab(inv.lab_name, home=tmp_path / "home")
    pki = ensure_lab_pki(inv, state)
    assert pki.dir == state.pki_dir
    for name in ("ca.crt", "etcd/cp-1-server.crt", "etcd/cp-1-peer.key",
                 "etcd/healthcheck-client.crt", "etcd/apiserver-etcd-client.key"):
        assert (state.pki_dir / name).is_file(), name
    assert state.pki_dir.stat().st_mode & 0o777 == 0o700
    assert ensure_lab_pki(inv, state).issued == []


def test_a_new_etcd_member_gets_its_certificates_and_the_rest_stay(tmp_path):
    home = tmp_path / "home"
    first = inventory(tmp_path, STACKED)
    state = LabState.for_lab("stk", home=home)
    ensure_lab_pki(first, state)
    bigger = inventory(tmp_path, STACKED.replace(
        "        cp-1: {ansible_host: 10.9.1.11}",
        "        cp-1: {ansible_host: 10.9.1.11}\n        cp-2: {ansible_host: 10.9.1.12}"))
    issued = ensure_lab_pki(bigger, state).issued
    assert "etcd/cp-2-peer" in issued and "etcd/cp-2-server" in issued
    assert not any(name.startswith("etcd/cp-1") for name in issued)
