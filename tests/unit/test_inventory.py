"""Loading inventories: structure, children, host keys, variable precedence, vars dirs."""

from __future__ import annotations

import ipaddress
import textwrap
from pathlib import Path

import pytest

from labctl.errors import LabError
from labctl.inventory import Group, Host, InventoryError, load_inventory

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


LAB = """\
all:
  vars:
    lab_network: 10.50.0.0/24
    color: all
  children:
    control_plane:
      vars: {color: cp}
      hosts:
        cp-1: {cpus: 2}
    etcd:
      children:
        control_plane:
    workers:
      hosts:
        w-1:
        w-2: {memory_mb: 1024, color: host}
"""


@pytest.fixture
def lab(tmp_path):
    return write(tmp_path / "lab.yml", LAB)


def test_hosts_groups_and_lab_settings(lab):
    inv = load_inventory(lab)
    assert list(inv.hosts) == ["cp-1", "w-1", "w-2"]
    assert inv.path == lab
    assert inv.lab_name == "lab"
    assert inv.provider == "nspawn"
    assert inv.network == ipaddress.IPv4Network("10.50.0.0/24")
    assert inv.gateway == "10.50.0.1"
    assert inv.etcd_topology == "stacked"
    assert inv.problems() == []
    cp = inv.hosts["cp-1"]
    assert isinstance(cp, Host)
    assert cp.groups == ("control_plane", "etcd")
    assert (cp.cpus, cp.memory_mb) == (2, 512)
    assert (inv.hosts["w-2"].cpus, inv.hosts["w-2"].memory_mb) == (1, 1024)
    etcd = inv.groups["etcd"]
    assert isinstance(etcd, Group)
    assert etcd.hosts == ["cp-1"] and etcd.children == ["control_plane"] and etcd.direct_hosts == []
    assert inv.groups["all"].hosts == ["cp-1", "w-1", "w-2"]
    assert inv.groups["all"].children == ["ungrouped", "control_plane", "etcd", "workers"]


def test_host_vars_final_view(lab):
    inv = load_inventory(lab, {"color": "extra", "lab_provider": "libvirt"})
    final = inv.hosts["w-2"].vars
    assert final["color"] == "extra"  # -e beats the host's own var
    assert final["lab_provider"] == "libvirt" and inv.provider == "libvirt"
    assert final["lab_name"] == "lab"
    assert final["lab_network"] == "10.50.0.0/24"
    assert final["libvirt_uri"] == "qemu:///system"  # documented default
    assert final["memory_mb"] == 1024 and final["cpus"] == 1
    assert final["inventory_hostname"] == "w-2"
    assert final["group_names"] == ["workers"]
    assert final["ansible_host"] == inv.hosts["w-2"].address
    assert inv.extra_vars == {"color": "extra", "lab_provider": "libvirt"}
    # inventory_vars: what Ansible would merge, no defaults, no -e
    assert inv.inventory_vars("w-2") == {"lab_network": "10.50.0.0/24", "color": "host", "memory_mb": 1024}
    assert inv.inventory_vars("cp-1")["color"] == "cp"
    assert inv.inventory_vars("w-1")["color"] == "all"


def test_extra_vars_strings_become_numbers_for_resources(lab):
    inv = load_inventory(lab, {"cpus": "4", "memory_mb": "2048"})
    assert {(h.cpus, h.memory_mb) for h in inv.hosts.values()} == {(4, 2048)}
    assert inv.hosts["w-1"].vars["cpus"] == 4


def test_shipped_inventories(tmp_path):
    expected = {
        "default": ({"control_plane": 1, "etcd": 1, "workers": 2}, "stacked"),
        "ha-stacked": ({"control_plane": 3, "etcd": 3, "workers": 2}, "stacked"),
        "ha-external": ({"control_plane": 2, "etcd": 3, "workers": 2}, "external"),
    }
    networks = set()
    for name, (sizes, topology) in expected.items():
        inv = load_inventory(REPO / "inventory" / f"{name}.yml")
        assert inv.problems() == [], name
        assert inv.lab_name == name
        assert {g: len(inv.groups[g].hosts) for g in sizes} == sizes
        assert inv.etcd_topology == topology
        assert inv.provider == "nspawn"
        networks.add(inv.network)
        if topology == "external":
            assert not set(inv.group_hosts("etcd")) & set(inv.group_hosts("control_plane"))
    assert len(networks) == 3  # labs can run side by side


def test_children_of_children_and_depth_precedence(tmp_path):
    path = write(tmp_path / "deep.yml", """\
        all:
          vars: {level: all}
          children:
            k8s:
              vars: {level: k8s, from_k8s: 1}
              children:
                control_plane:
                  vars: {level: cp}
                  hosts:
                    cp-1:
                etcd:
                  hosts:
                    cp-1:
                workers:
                  children:
                    big_workers:
                      vars: {level: big}
                      hosts:
                        w-1:
    """)
    inv = load_inventory(path)
    assert inv.groups["k8s"].hosts == ["cp-1", "w-1"]
    assert inv.groups["workers"].hosts == ["w-1"]
    assert inv.groups["big_workers"].depth == 3
    assert inv.hosts["w-1"].groups == ("big_workers", "k8s", "workers")
    assert inv.inventory_vars("w-1") == {"level": "big", "from_k8s": 1}
    assert inv.inventory_vars("cp-1") == {"level": "cp", "from_k8s": 1}
    assert inv.hosts_matching("k8s") == ["cp-1", "w-1"]


def test_same_depth_groups_apply_by_name_then_priority(tmp_path):
    text = """\
        all:
          children:
            zeta: {hosts: {cp-1: }, vars: {v: zeta}}
            alpha: {hosts: {cp-1: }, vars: {v: alpha}}
            etcd: {hosts: {cp-1: }}
            control_plane: {hosts: {cp-1: }}
    """
    inv = load_inventory(write(tmp_path / "a.yml", text))
    assert inv.inventory_vars("cp-1")["v"] == "zeta"  # same depth: sorted by name, later wins
    prioritized = text.replace("vars: {v: alpha}", "vars: {v: alpha, ansible_group_priority: 10}")
    inv = load_inventory(write(tmp_path / "b.yml", prioritized))
    assert inv.inventory_vars("cp-1")["v"] == "alpha"


def test_repeated_host_merges_vars_in_written_order(tmp_path):
    path = write(tmp_path / "r.yml", """\
        all:
          hosts:
            cp-1: {a: from_all}
          children:
            control_plane:
              hosts:
                cp-1: {a: from_cp, b: 1}
            etcd:
              hosts:
                cp-1: {b: 2}
    """)
    inv = load_inventory(path)
    # all.hosts is written before children, so the children's values come later and win
    assert inv.inventory_vars("cp-1") == {"a": "from_cp", "b": 2}
    assert inv.problems() == []  # in all.hosts and in groups: not "in no group"


def test_host_ranges_and_ports(tmp_path):
    path = write(tmp_path / "ranges.yml", """\
        all:
          children:
            etcd:
              hosts:
                etcd-[1:3]:
            control_plane:
              hosts:
                cp-[01:03:2]:
                  role: cp
            workers:
              hosts:
                w-[a:b]:2222:
    """)
    inv = load_inventory(path)
    assert inv.group_hosts("etcd") == ["etcd-1", "etcd-2", "etcd-3"]
    assert inv.group_hosts("control_plane") == ["cp-01", "cp-03"]
    assert inv.inventory_vars("cp-03") == {"role": "cp"}
    assert inv.group_hosts("workers") == ["w-a", "w-b"]
    assert inv.inventory_vars("w-b") == {"ansible_port": 2222}


def test_string_section_and_null_sections(tmp_path):
    path = write(tmp_path / "s.yml", """\
        all:
          vars:
          children:
            etcd:
              hosts: cp-1
            control_plane:
              hosts:
                cp-1:
            workers:
    """)
    inv = load_inventory(path)
    assert inv.group_hosts("etcd") == ["cp-1"]
    assert inv.groups["workers"].hosts == []
    assert inv.problems() == []


def _dirs_lab(tmp_path: Path) -> Path:
    path = write(tmp_path / "lab.yml", LAB)
    write(tmp_path / "group_vars" / "all.yml", "color: gv_all\nfrom_gv_all: 1\n")
    write(tmp_path / "group_vars" / "workers.yaml", "tier: workers\n")
    # a directory of files: read in sorted order, later files win; odd files skipped
    write(tmp_path / "group_vars" / "control_plane" / "10-base.yml", "tier: cp\nport: 1\n")
    write(tmp_path / "group_vars" / "control_plane" / "20-more", "port: 2\n")
    write(tmp_path / "group_vars" / "control_plane" / "30-skip.txt", "port: 3\n")
    write(tmp_path / "group_vars" / "control_plane" / ".hidden.yml", "port: 4\n")
    write(tmp_path / "group_vars" / "control_plane" / "sub" / "40-nested.json", '{"nested": true}')
    write(tmp_path / "host_vars" / "w-1", "tier: host\n")
    write(tmp_path / "host_vars" / "w-2.yml", "")  # empty file: nothing
    return path


def test_group_vars_and_host_vars_directories(tmp_path):
    inv = load_inventory(_dirs_lab(tmp_path))
    # group_vars/all beats the file's group vars of every group (Ansible's order)
    assert inv.inventory_vars("cp-1") == {
        "lab_network": "10.50.0.0/24", "color": "gv_all", "from_gv_all": 1, "cpus": 2,
        "tier": "cp", "port": 2, "nested": True,
    }
    # ...but not the host's own vars from the file
    assert inv.inventory_vars("w-2")["color"] == "host"
    assert inv.inventory_vars("w-2")["tier"] == "workers"
    assert inv.inventory_vars("w-1")["tier"] == "host"
    assert inv.groups["control_plane"].vars == {"color": "cp", "tier": "cp", "port": 2, "nested": True}
    assert inv.problems() == []


def test_extensionless_file_shadows_yml(tmp_path):
    path = write(tmp_path / "lab.yml", LAB)
    write(tmp_path / "group_vars" / "workers", "pick: bare\n")
    write(tmp_path / "group_vars" / "workers.yml", "pick: yml\n")
    inv = load_inventory(path)
    assert inv.inventory_vars("w-1")["pick"] == "bare"


def test_vars_file_must_be_a_mapping(tmp_path):
    path = write(tmp_path / "lab.yml", LAB)
    write(tmp_path / "group_vars" / "workers.yml", "- a\n- b\n")
    with pytest.raises(InventoryError, match=r"group_vars/workers.yml: a vars file must be a mapping"):
        load_inventory(path)


def test_malformed_yaml_names_file_line_and_column(tmp_path):
    path = write(tmp_path / "bad.yml", "all:\n  vars:\n    a: 1\n   b: 2\n")
    with pytest.raises(InventoryError) as info:
        load_inventory(path)
    assert isinstance(info.value, LabError)
    assert str(info.value).startswith(f"{path}:4:4: malformed YAML")


def test_malformed_vars_file(tmp_path):
    path = write(tmp_path / "lab.yml", LAB)
    write(tmp_path / "host_vars" / "w-1.yml", "a: [1\n")
    with pytest.raises(InventoryError, match=r"host_vars/w-1.yml:2:1: malformed YAML"):
        load_inventory(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "the inventory is empty"), ("- all\n", "not a list"), ("just words\n", "not a str")],
)
def test_unusable_files(tmp_path, text, message):
    with pytest.raises(InventoryError, match=message):
        load_inventory(write(tmp_path / "x.yml", text))


def test_missing_file(tmp_path):
    with pytest.raises(InventoryError, match="no such inventory file"):
        load_inventory(tmp_path / "nope.yml")


def test_inventory_vars_is_a_copy(lab):
    inv = load_inventory(lab)
    inv.inventory_vars("w-1")["color"] = "changed"
    assert inv.inventory_vars("w-1")["color"] == "all"
