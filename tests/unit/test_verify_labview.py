"""The data behind the ``lab`` and ``hostvars`` fixtures, from a real inventory and site."""

from __future__ import annotations

from pathlib import Path

import pytest

from labctl.inventory import load_inventory
from labctl.verify.discovery import discover, plan_runs
from labctl.verify.labview import RoleVars, lab_view

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "verify_roles"

INVENTORY = """\
all:
  vars:
    lab_name: viewtest
    lab_network: 10.77.0.0/24
  children:
    etcd: {hosts: {a: {ansible_host: 10.77.0.11}}}
    control_plane: {hosts: {a: {}}}
    web:
      hosts:
        b: {ansible_host: 10.77.0.12, web_index: "custom index of {{ inventory_hostname }}"}
        c: {ansible_host: 10.77.0.13}
"""


def inventory(tmp_path: Path, extra: dict | None = None):
    path = tmp_path / "inv.yml"
    path.write_text(INVENTORY)
    return load_inventory(path, extra or {})


def role_vars(inv, site: Path = FIXTURES / "site.yml"):
    found = discover(site)
    runs = {r.role: r for r in plan_runs(found, inv.hosts_matching, list(inv.hosts))}
    resolver = RoleVars(inv, found.plays, site.parent)

    def of(role: str, host: str):
        run = runs[role]
        return resolver.for_host(role, run.suite.path, run.play_of[host], host)

    return of


def test_lab_view_lists_hosts_groups_addresses_and_vars(tmp_path):
    view = lab_view(inventory(tmp_path))
    assert view.name == "viewtest" and view.hosts == ["a", "b", "c"]
    assert view.group("web") == ["b", "c"] and view.group("all") == ["a", "b", "c"]
    assert view.group("nope") == []
    assert view.address("c") == "10.77.0.13"
    assert view.vars["b"]["web_index"] == "custom index of {{ inventory_hostname }}"
    assert view.network == "10.77.0.0/24"


def test_hostvars_are_role_defaults_templated_for_the_host(tmp_path):
    of = role_vars(inventory(tmp_path))
    assert of("toy", "a")["toy_greeting"] == "hello from a"
    assert of("webbase", "c")["web_index"] == "index of c"
    assert of("webbase", "b")["web_index"] == "custom index of b"  # inventory beats defaults
    assert of("webbase", "b")["web_tier_name"] == "front"  # the play's other roles' defaults
    assert of("toy", "a")["role_name"] == "toy" and "toy_dir" in of("toy", "a")
    assert of("toy", "a").get("no_such_var", "dflt") == "dflt"


def test_extra_vars_win_and_play_vars_count(tmp_path):
    of = role_vars(inventory(tmp_path, {"toy_dir": "/srv/other"}))
    assert of("toy", "b")["toy_dir"] == "/srv/other"
    site = tmp_path / "site.yml"
    site.write_text("- hosts: all\n  vars: {toy_greeting: 'hi {{ toy_dir }}'}\n  roles: [toy]\n")
    (tmp_path / "roles").symlink_to(FIXTURES / "roles")
    of = role_vars(inventory(tmp_path), site)
    assert of("toy", "c")["toy_greeting"] == "hi /srv/toy"
