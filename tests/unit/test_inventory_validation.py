"""Every validation rule: its level, and a message naming file, host/group and the fix."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from labctl.inventory import Problem, load_inventory

pytestmark = pytest.mark.unit

GOOD = """\
all:
  vars:
    lab_network: 10.60.0.0/24
  children:
    control_plane:
      hosts:
        cp-1:
    etcd:
      hosts:
        cp-1:
    workers:
      hosts:
        w-1:
"""


def load(tmp_path: Path, text: str, name: str = "lab.yml", extra=None):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return load_inventory(path, extra)


def only(inv, level: str) -> list[str]:
    return [p.message for p in inv.problems() if p.level == level]


def test_good_inventory_has_no_problems(tmp_path):
    assert load(tmp_path, GOOD).problems() == []


def test_problem_shape():
    problem = Problem(level="warning", message="x.yml: something")
    assert str(problem) == "warning: x.yml: something"


def test_missing_required_groups(tmp_path):
    inv = load(tmp_path, """\
        all:
          children:
            workers:
              hosts:
                w-1:
    """)
    errors = only(inv, "error")
    assert len(errors) == 2
    assert errors[0].startswith(f'{inv.path}: no "etcd" group: a lab needs etcd and control_plane hosts')
    assert 'no "control_plane" group' in errors[1] and "add all.children.control_plane.hosts" in errors[1]


def test_empty_control_plane(tmp_path):
    inv = load(tmp_path, GOOD.replace("    control_plane:\n      hosts:\n        cp-1:\n", "    control_plane:\n"))
    assert only(inv, "error") == [f'{inv.path}:5: group "control_plane" has no hosts; a lab needs at least one; add hosts under it']


def test_zero_etcd_members_is_an_error(tmp_path):
    inv = load(tmp_path, GOOD.replace("    etcd:\n      hosts:\n        cp-1:\n", "    etcd:\n"))
    [message] = only(inv, "error")
    assert message.startswith(f'{inv.path}:8: group "etcd" has no hosts')
    assert "add 1, 3 or 5 hosts" in message


def test_even_etcd_members_is_a_warning(tmp_path):
    inv = load(tmp_path, GOOD.replace("        cp-1:\n", "        cp-1:\n        cp-2:\n"), name="x.yml")
    assert only(inv, "error") == []
    [message] = only(inv, "warning")
    assert message == (
        f'{inv.path}:9: group "etcd" has 2 hosts (cp-1, cp-2): an even member count tolerates no '
        f"more failures than one fewer; use 1, 3 or 5"
    )


def test_host_in_no_group(tmp_path):
    inv = load(tmp_path, GOOD.replace("  children:\n", "  hosts:\n    lonely:\n  children:\n"))
    [message] = only(inv, "error")
    assert message == (
        f'{inv.path}:5: host "lonely" is in no group (it is only under all.hosts); list it '
        f"under a group's hosts, e.g. all.children.workers.hosts"
    )


def test_duplicate_explicit_addresses_name_both_hosts(tmp_path):
    text = GOOD.replace("        w-1:\n", "        w-1: {ansible_host: 10.60.0.9}\n        w-2: {ansible_host: 10.60.0.9}\n")
    inv = load(tmp_path, text)
    [message] = only(inv, "error")
    assert 'hosts "w-1" and "w-2" both have address 10.60.0.9' in message
    assert message.startswith(f"{inv.path}:14:")


def test_address_outside_network_gateway_and_non_ip(tmp_path):
    text = GOOD.replace(
        "        w-1:\n",
        "        w-1: {ansible_host: 10.61.0.5}\n        w-2: {ansible_host: 10.60.0.1}\n"
        "        w-3: {ansible_host: web.example}\n        w-4: {ansible_host: 10.60.0.255}\n",
    )
    errors = only(load(tmp_path, text), "error")
    assert len(errors) == 4
    assert 'host "w-1": ansible_host 10.61.0.5 is outside lab_network 10.60.0.0/24' in errors[0]
    assert "the lab machine's (gateway) address" in errors[1] and "use one from 10.60.0.2 to 10.60.0.254" in errors[1]
    assert "'web.example' is not an IPv4 address" in errors[2]
    assert 'host "w-4": ansible_host 10.60.0.255 is reserved address' in errors[3]


def test_unknown_provider_lists_known(tmp_path):
    inv = load(tmp_path, GOOD, extra={"lab_provider": "docker"})
    assert only(inv, "error") == [
        f"{inv.path}: lab_provider 'docker' is unknown; use one of: nspawn, libvirt (in all.vars or -e lab_provider=...)"
    ]


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("10.60.0.5/24", "did you mean 10.60.0.0/24?"),
        ("banana", "write it as a CIDR such as 10.123.1.0/24"),
        ("10.60.0.0/30", "is too small (a /30); use a /24"),
    ],
)
def test_bad_lab_network(tmp_path, value, fragment):
    inv = load(tmp_path, GOOD, extra={"lab_network": value})
    [message] = only(inv, "error")
    assert "lab_network" in message and fragment in message
    assert inv.network.prefixlen == 24  # falls back so the rest can still be checked


def test_public_network_is_a_warning(tmp_path):
    inv = load(tmp_path, GOOD, extra={"lab_network": "8.8.8.0/24"})
    [message] = only(inv, "warning")
    assert "8.8.8.0/24 is not a private range" in message


def test_network_too_small_for_hosts(tmp_path):
    text = GOOD.replace("        w-1:\n", "        w-[1:9]:\n")
    inv = load(tmp_path, text, extra={"lab_network": "10.60.0.0/29"})
    assert any("lab_network is full" in m and "5 free addresses for 10 hosts" in m for m in only(inv, "error"))


def test_unsafe_lab_name(tmp_path):
    inv = load(tmp_path, GOOD, name="My_Lab.yml")
    [message] = only(inv, "error")
    assert message.startswith(f'{inv.path}: lab_name "My_Lab" (taken from the file name) is not a safe name')
    assert "set lab_name: mylab in all.vars" in message
    assert load(tmp_path, GOOD, name="My_Lab.yml", extra={"lab_name": "ok-lab"}).problems() == []
    assert only(load(tmp_path, GOOD, extra={"lab_name": "a" * 21}), "error")


def test_unknown_top_level_and_group_keys(tmp_path):
    text = GOOD + "etcd2:\n  hosts:\n    cp-1:\nhosts:\n  x:\n"
    text = text.replace("    workers:\n", "    workers:\n      host:\n        w-9:\n")
    errors = only(load(tmp_path, text), "error")
    assert any('unknown key "host"' in m and "only hosts, children and vars" in m for m in errors)
    assert any(':16: unknown top-level key "etcd2"' in m and "put groups under all.children" in m for m in errors)
    assert any(':19: top-level key "hosts" belongs under "all:"' in m for m in errors)


def test_wrong_section_types(tmp_path):
    text = GOOD.replace("      hosts:\n        w-1:\n", "      hosts: [w-1]\n")
    errors = only(load(tmp_path, text), "error")
    assert any('group "workers": "hosts" must be a mapping' in m for m in errors)
    text = GOOD.replace("        w-1:\n", "        w-1: 3\n")
    errors = only(load(tmp_path, text), "error")
    assert any('host "w-1" in group "workers": its vars must be a mapping' in m for m in errors)


def test_children_loop(tmp_path):
    text = GOOD.replace("    workers:\n", "    workers:\n      children:\n        more:\n          children:\n            workers:\n")
    errors = only(load(tmp_path, text), "error")
    assert any('group "more" under "workers" makes a loop of children' in m for m in errors)


def test_bad_resources(tmp_path):
    inv = load(tmp_path, GOOD.replace("        w-1:\n", "        w-1: {cpus: 0, memory_mb: lots}\n"))
    errors = only(inv, "error")
    assert 'host "w-1": cpus must be a positive whole number, not 0' in errors[0]
    assert "memory_mb must be a positive whole number, not 'lots'" in errors[1]
    assert (inv.hosts["w-1"].cpus, inv.hosts["w-1"].memory_mb) == (1, 512)


def test_lab_wide_var_set_per_host(tmp_path):
    inv = load(tmp_path, GOOD.replace("        w-1:\n", "        w-1: {lab_provider: libvirt}\n"))
    [message] = only(inv, "error")
    assert "host \"w-1\" sees lab_provider='libvirt' but the lab's is 'nspawn'" in message
    assert "set it only in all.vars, group_vars/all or with -e" in message
    # -e overrides everywhere, so it resolves the conflict
    assert load(tmp_path, GOOD.replace("        w-1:\n", "        w-1: {lab_provider: libvirt}\n"),
                extra={"lab_provider": "libvirt"}).problems() == []


def test_bad_host_names_and_group_names(tmp_path):
    text = GOOD.replace("        w-1:\n", "        Web_1:\n").replace("    workers:\n", "    worker-nodes:\n")
    inv = load(tmp_path, text)
    assert any('host name "Web_1" cannot be a hostname' in m for m in only(inv, "error"))
    assert any('group name "worker-nodes" is not a valid Ansible variable name' in m and '"worker_nodes"' in m
               for m in only(inv, "warning"))


def test_mixed_topology_is_a_warning(tmp_path):
    text = GOOD.replace("    etcd:\n      hosts:\n        cp-1:\n", "    etcd:\n      hosts:\n        cp-1:\n        e-2:\n        e-3:\n")
    inv = load(tmp_path, text)
    assert inv.etcd_topology == "external"
    [message] = only(inv, "warning")
    assert "etcd host cp-1 is a control-plane host but e-2, e-3 are not" in message


def test_repeated_keys_and_unmatched_group_vars_warn(tmp_path):
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "wrokers.yml").write_text("a: 1\n")
    inv = load(tmp_path, GOOD.replace("        w-1:\n", "        w-1:\n        w-1:\n"))
    warnings = only(inv, "warning")
    assert any(':14: key "w-1" appears twice' in m for m in warnings)
    assert any("group_vars/wrokers.yml: matches no group" in m and "rename or remove it" in m for m in warnings)


def test_problems_never_raise_and_are_copies(tmp_path):
    inv = load(tmp_path, "all:\n  children:\n    etcd: [a]\n")
    first = inv.problems()
    first.clear()
    assert inv.problems()
