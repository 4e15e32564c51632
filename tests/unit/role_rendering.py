"""Render a role's tasks as the engine would, without hosts: shared by the role tests."""

from __future__ import annotations

import shlex
import textwrap
from pathlib import Path

from labctl.engine.loader import load_site
from labctl.engine.templating import LazyVars, render_text
from labctl.engine.variables import HostState, HostVars, inventory_vars_of, magic_vars, task_vars
from labctl.inventory import load_inventory

ROLES = Path(__file__).resolve().parents[2] / "roles"


def load_play(tmp_path: Path, inventory_text: str, hosts: str, role: str):
    """(inventory, the one play ``- hosts: HOSTS / roles: [ROLE]``) from ``inventory_text``."""
    inv_path = tmp_path / "inventory.yml"
    inv_path.write_text(textwrap.dedent(inventory_text))
    inventory = load_inventory(inv_path)
    assert not inventory.errors(), inventory.errors()
    site = tmp_path / "site.yml"
    site.write_text(f"- hosts: {hosts}\n  roles: [{role}]\n")
    return inventory, load_site(site, [ROLES]).plays[0]


def task_variables(tmp_path: Path, inventory_text: str, hosts: str, role: str, host: str,
                   module: str = "template"):
    """(play, the first ``module`` task, the variables that task sees on ``host``)."""
    inventory, play = load_play(tmp_path, inventory_text, hosts, role)
    task = next(t for t in play.tasks if t.module == module)
    states = {h: HostState(h, inventory_vars_of(inventory, h)) for h in inventory.hosts}
    hostvars = HostVars(states, inventory.extra_vars)
    play_hosts = inventory.hosts_matching(play.hosts)
    magic = magic_vars(inventory, host, play_hosts, hostvars, False, False, str(tmp_path))
    return play, task, LazyVars(task_vars(play, task, states[host], inventory.extra_vars, magic))


def render_template_task(role: str, task, variables) -> str:
    source = ROLES / role / "templates" / task.args["src"]
    return render_text(source.read_text(), variables, str(source))


def exec_start(unit: str) -> list[str]:
    """ExecStart's argv (continuation lines joined)."""
    joined = unit.replace("\\\n", " ")
    line = next(x for x in joined.splitlines() if x.startswith("ExecStart="))
    return shlex.split(line.removeprefix("ExecStart="))
