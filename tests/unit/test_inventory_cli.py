"""`labctl inventory ...`, the shared -i/-e arguments, and Ansible's -e forms."""

from __future__ import annotations

import argparse
import json
import textwrap

import pytest

from labctl.cli import main
from labctl.commands._common import add_inventory_arguments, inventory_from_args
from labctl.errors import LabError
from labctl.inventory import InventoryError, parse_extra_vars
from tests.unit.test_inventory import REPO

pytestmark = pytest.mark.unit

DEFAULT = str(REPO / "inventory" / "default.yml")


# -- -e forms ------------------------------------------------------------------------


def test_key_value_pairs_are_strings():
    assert parse_extra_vars(["a=1 b=two", "c='x y' d="]) == {"a": "1", "b": "two", "c": "x y", "d": ""}


def test_json_and_yaml_mappings_keep_types():
    assert parse_extra_vars(['{"n": 1, "l": [1, 2]}', "{flag: true}"]) == {"n": 1, "l": [1, 2], "flag": True}


def test_file_form_and_later_options_win(tmp_path):
    (tmp_path / "v.yml").write_text("cpus: 2\nname: file\n")
    assert parse_extra_vars([f"@{tmp_path}/v.yml", "name=cli"]) == {"cpus": 2, "name": "cli"}


def test_empty_options_and_empty_file(tmp_path):
    (tmp_path / "e.yml").write_text("")
    assert parse_extra_vars(["", f"@{tmp_path}/e.yml"]) == {}
    assert parse_extra_vars(None) == {}


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("novalue", "'novalue' is not key=value"),
        ("[1, 2]", "extra vars must be a mapping"),
        ('{"a": ', "malformed YAML"),
        ("@/nonexistent/x.yml", "no such inventory file"),
        ("a='open", "No closing quotation"),
    ],
)
def test_bad_extra_vars(option, message):
    with pytest.raises(InventoryError, match=message):
        parse_extra_vars([option])


# -- shared arguments ------------------------------------------------------------------


def _parse(argv):
    parser = argparse.ArgumentParser()
    add_inventory_arguments(parser)
    return parser.parse_args(argv)


def test_common_arguments_load_with_extra_vars(capsys):
    args = _parse(["-i", DEFAULT, "-e", "lab_provider=libvirt", "--extra-vars", '{"cpus": 3}'])
    inv = inventory_from_args(args)
    assert inv.provider == "libvirt"
    assert {h.cpus for h in inv.hosts.values()} == {3}
    assert capsys.readouterr().err == ""


def test_inventory_is_required():
    with pytest.raises(SystemExit):
        _parse([])


def test_common_refuses_errors_and_prints_warnings(tmp_path, capsys):
    path = tmp_path / "x.yml"
    path.write_text(textwrap.dedent("""\
        all:
          children:
            etcd: {hosts: {e-1: , e-2: }}
            workers: {hosts: {w-1: }}
    """))
    with pytest.raises(LabError) as info:
        inventory_from_args(_parse(["-i", str(path), "-e", "lab_provider=qemu"]))
    message = str(info.value)
    assert message.startswith("the inventory has 2 error(s):")
    assert 'no "control_plane" group' in message and "lab_provider 'qemu' is unknown" in message
    assert 'group "etcd" has 2 hosts' in capsys.readouterr().err


# -- labctl inventory ...  ----------------------------------------------------------------


def test_validate_ok(capsys):
    assert main(["inventory", "validate", "-i", DEFAULT]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"ok: {DEFAULT}: 3 hosts, groups control_plane (1), etcd (1), workers (2)")
    assert "provider nspawn" in out and "etcd stacked" in out


def test_validate_errors_exit_1(tmp_path, capsys):
    path = tmp_path / "x.yml"
    path.write_text("all:\n  children:\n    workers:\n      hosts:\n        w-1:\n")
    assert main(["inventory", "validate", "-i", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f'error: {path}: no "etcd" group' in captured.err
    assert f"{path}: 2 error(s)" in captured.err


def test_malformed_file_is_one_clear_line(tmp_path, capsys):
    path = tmp_path / "x.yml"
    path.write_text("all:\n\tchildren:\n")
    assert main(["inventory", "validate", "-i", str(path)]) == 1
    assert capsys.readouterr().err == (
        f"labctl: error: {path}:2:1: malformed YAML: while scanning for the next token found "
        f"character '\\t' that cannot start any token\n"
    )


def test_show_table(capsys):
    assert main(["inventory", "show", "-i", DEFAULT, "-e", "memory_mb=1024"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "lab default: provider nspawn, network 10.123.1.0/24 (gateway 10.123.1.1), etcd stacked"
    assert lines[1].split() == ["HOST", "ADDRESS", "GROUPS", "CPUS", "MEMORY_MB"]
    cp = lines[2].split()
    assert cp[0] == "cp-1" and cp[1].startswith("10.123.1.") and cp[2:] == ["control_plane,etcd", "1", "1024"]
    assert [line.split()[0] for line in lines[3:]] == ["worker-1", "worker-2"]


def test_show_json_has_ansible_shape_and_labctl_view(capsys):
    assert main(["inventory", "show", "-i", DEFAULT, "--json", "-e", "x=1"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["all"] == {"children": ["ungrouped", "control_plane", "etcd", "workers"]}
    assert data["etcd"] == {"children": ["control_plane"]}
    assert data["workers"] == {"hosts": ["worker-1", "worker-2"]}
    assert data["_meta"]["hostvars"]["cp-1"] == {
        "lab_provider": "nspawn", "lab_network": "10.123.1.0/24", "memory_mb": 1024, "x": "1",
    }
    view = data["labctl"]
    assert (view["lab_name"], view["provider"], view["network"], view["topology"]) == (
        "default", "nspawn", "10.123.1.0/24", "stacked",
    )
    assert set(view["addresses"]) == {"cp-1", "worker-1", "worker-2"}
    assert view["resources"]["worker-1"] == {"cpus": 1, "memory_mb": 768}  # the workers group's vars


def test_defaults_lists_every_documented_var(capsys):
    assert main(["inventory", "defaults"]) == 0
    out = capsys.readouterr().out
    for name in ("lab_name", "lab_provider", "lab_network", "cpus", "memory_mb", "libvirt_uri"):
        assert any(line.startswith(name + " ") for line in out.splitlines()), name
    assert '"qemu:///system"' in out and '"nspawn"' in out
