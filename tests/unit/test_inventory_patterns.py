"""Ansible host patterns (--limit) over an inventory."""

from __future__ import annotations

import textwrap

import pytest

from labctl.inventory import InventoryError, load_inventory
from labctl.inventory.patterns import split_pattern

pytestmark = pytest.mark.unit

TEXT = """\
all:
  children:
    etcd:
      hosts:
        etcd-1:
        etcd-2:
        etcd-3:
    control_plane:
      hosts:
        cp-1:
        cp-2:
    workers:
      children:
        big:
          hosts:
            w-2:
      hosts:
        w-1:
"""


@pytest.fixture(scope="module")
def inv(tmp_path_factory):
    path = tmp_path_factory.mktemp("patterns") / "p.yml"
    path.write_text(textwrap.dedent(TEXT))
    return load_inventory(path)


@pytest.mark.parametrize(
    ("pattern", "hosts"),
    [
        ("all", ["etcd-1", "etcd-2", "etcd-3", "cp-1", "cp-2", "w-1", "w-2"]),
        ("*", ["etcd-1", "etcd-2", "etcd-3", "cp-1", "cp-2", "w-1", "w-2"]),
        ("cp-2", ["cp-2"]),
        ("workers", ["w-1", "w-2"]),  # own hosts, then children's
        ("etcd:control_plane", ["etcd-1", "etcd-2", "etcd-3", "cp-1", "cp-2"]),
        ("etcd,cp-1", ["etcd-1", "etcd-2", "etcd-3", "cp-1"]),
        ("all:!etcd", ["cp-1", "cp-2", "w-1", "w-2"]),
        ("!etcd", ["cp-1", "cp-2", "w-1", "w-2"]),
        ("etcd:&etcd-2", ["etcd-2"]),
        ("&workers", ["w-1", "w-2"]),
        ("etcd-*", ["etcd-1", "etcd-2", "etcd-3"]),
        ("etcd-?:!etcd-3", ["etcd-1", "etcd-2"]),
        ("~(cp|w)-1", ["cp-1", "w-1"]),
        ("etcd[0]", ["etcd-1"]),
        ("etcd[-1]", ["etcd-3"]),
        ("etcd[1:2]", ["etcd-2", "etcd-3"]),
        ("etcd[1:]", ["etcd-2", "etcd-3"]),
        ("etcd[0]:workers", ["etcd-1", "w-1", "w-2"]),
        ("workers:etcd", ["w-1", "w-2", "etcd-1", "etcd-2", "etcd-3"]),  # written order
        ("w-1:cp-2:etcd", ["w-1", "cp-2", "etcd-1", "etcd-2", "etcd-3"]),
        ("nothing", []),
        ("big", ["w-2"]),
    ],
)
def test_patterns(inv, pattern, hosts):
    assert inv.hosts_matching(pattern) == hosts


def test_split_keeps_ranges_together():
    assert split_pattern("a[1:2]:b") == ["a[1:2]", "b"]
    assert split_pattern(" a , b:c ") == ["a", "b:c"]


def test_bad_patterns(inv):
    with pytest.raises(InventoryError, match="not a valid regular expression"):
        inv.hosts_matching("~(etcd")
    with pytest.raises(InventoryError, match="index 9 is out of range"):
        inv.hosts_matching("etcd[9]")
