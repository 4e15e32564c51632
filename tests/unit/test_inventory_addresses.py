"""Stable address allocation on the lab network."""

from __future__ import annotations

import ipaddress
import textwrap

import pytest

from labctl.inventory import load_inventory
from labctl.inventory.addresses import allocate, capacity

pytestmark = pytest.mark.unit

NET = ipaddress.IPv4Network("10.70.0.0/24")


def test_never_network_gateway_or_broadcast():
    small = ipaddress.IPv4Network("10.70.0.0/29")  # .0 network, .1 gateway, .7 broadcast
    assert capacity(small) == 5
    names = [f"h{i}" for i in range(5)]
    got = allocate(small, names)
    assert sorted(got.values()) == [f"10.70.0.{n}" for n in range(2, 7)]
    with pytest.raises(ValueError, match="5 free addresses for 6 hosts"):
        allocate(small, [*names, "h5"])


def test_deterministic_and_order_independent():
    names = [f"node-{i}" for i in range(40)]
    first = allocate(NET, names)
    assert allocate(NET, list(reversed(names))) == first
    assert len(set(first.values())) == 40


def test_adding_or_removing_hosts_keeps_other_addresses():
    names = ["cp-1", "cp-2", "cp-3", "worker-1", "worker-2"]
    before = allocate(NET, names)
    after = allocate(NET, [*names, "worker-3", "etcd-1"])
    assert {n: after[n] for n in names} == before
    fewer = allocate(NET, ["cp-1", "worker-2"])
    assert fewer == {n: before[n] for n in ("cp-1", "worker-2")}


def test_collisions_resolve_in_sorted_name_order():
    tiny = ipaddress.IPv4Network("10.70.0.0/30")  # exactly one usable address: .2
    assert allocate(tiny, ["b"]) == {"b": "10.70.0.2"}
    mid = ipaddress.IPv4Network("10.70.0.0/29")
    both = allocate(mid, ["zz", "aa"])
    alone = allocate(mid, ["aa"])
    assert both["aa"] == alone["aa"]  # the name sorting first keeps its hashed slot


def test_taken_addresses_are_skipped():
    names = [f"n{i}" for i in range(20)]
    free = allocate(NET, names)
    taken = {free["n3"]}
    moved = allocate(NET, names, taken)
    assert moved["n3"] != free["n3"] and free["n3"] not in moved.values()


def test_explicit_ansible_host_wins_and_others_stay(tmp_path):
    text = textwrap.dedent("""\
        all:
          vars: {lab_network: 10.70.0.0/24}
          children:
            control_plane: {hosts: {cp-1: }}
            etcd: {hosts: {cp-1: }}
            workers:
              hosts:
                w-1:
                w-2:
    """)
    (tmp_path / "a.yml").write_text(text)
    auto = load_inventory(tmp_path / "a.yml")
    pinned = text.replace("w-1:", "w-1: {ansible_host: 10.70.0.200}")
    (tmp_path / "b.yml").write_text(pinned)
    inv = load_inventory(tmp_path / "b.yml")
    assert inv.hosts["w-1"].address == "10.70.0.200"
    assert inv.hosts["w-1"].vars["ansible_host"] == "10.70.0.200"
    assert inv.hosts["cp-1"].address == auto.hosts["cp-1"].address
    assert inv.hosts["w-2"].address == auto.hosts["w-2"].address
    for host in inv.hosts.values():
        assert ipaddress.IPv4Address(host.address) in inv.network
        assert host.address != inv.gateway


def test_shipped_inventory_addresses_survive_a_new_host(tmp_path):
    from tests.unit.test_inventory import REPO

    original = (REPO / "inventory" / "ha-external.yml").read_text()
    before = load_inventory(REPO / "inventory" / "ha-external.yml")
    grown = tmp_path / "ha-external.yml"
    grown.write_text(original.replace("        worker-2:\n", "        worker-2:\n        worker-3:\n"))
    after = load_inventory(grown)
    assert {n: h.address for n, h in before.hosts.items()} == {
        n: after.hosts[n].address for n in before.hosts
    }
