"""Per-host, per-task variables with Ansible's precedence (pure).

Lowest to highest::

    role defaults (every role of the play, then the task's own role)
    inventory vars (group_vars all < parent groups < child groups < host_vars)
    gathered facts (ansible_facts and the ansible_* names)
    play vars
    role vars (every role of the play, then the task's own role)
    task vars (incl. import_tasks vars)
    set_fact / register results
    role parameters (``- role: x`` with ``var: value``)
    extra vars (-e)

plus the magic variables (inventory_hostname, groups, hostvars, ...), which the user
cannot override.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from labctl.engine.model import Play, Task
from labctl.engine.templating import OMIT, LazyVars


def inventory_vars_of(inventory: Any, host: str) -> dict[str, Any]:
    """The inventory's merged vars of ``host`` (without extra vars).

    labctl gives hosts without an ``ansible_host`` a stable address; roles see it as
    ``ansible_host``, exactly as if the inventory had written it.
    """
    values = dict(inventory.inventory_vars(host))
    address = getattr(inventory.hosts[host], "address", None)
    if address and "ansible_host" not in values:
        values["ansible_host"] = str(address)
    return values


def fact_vars(facts: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"ansible_facts": dict(facts)}
    for key, value in facts.items():
        out[f"ansible_{key}"] = value
    return out


@dataclass
class HostState:
    """What a run learns about a host: facts, and set_fact/register results."""

    name: str
    inventory_vars: dict[str, Any]
    facts: dict[str, Any] = field(default_factory=dict)
    runtime_vars: dict[str, Any] = field(default_factory=dict)


class HostVars(Mapping):
    """``hostvars[name]``: another host's inventory vars, facts and set_facts."""

    def __init__(self, states: Mapping[str, HostState], extra_vars: Mapping[str, Any]) -> None:
        self._states = states
        self._extra = extra_vars

    def __getitem__(self, name: str) -> LazyVars:
        state = self._states[name]
        raw = {**state.inventory_vars, **fact_vars(state.facts), **state.runtime_vars,
               **self._extra, "inventory_hostname": name}
        return LazyVars(raw)

    def __iter__(self):
        return iter(self._states)

    def __len__(self) -> int:
        return len(self._states)


def _role_layer(layers: list[tuple[str, dict[str, Any]]], own: str | None) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    mine: dict[str, Any] = {}
    for role, values in layers:
        merged.update(values)
        if role == own:
            mine.update(values)
    merged.update(mine)
    return merged


def task_vars(
    play: Play,
    task: Task | None,
    state: HostState,
    extra_vars: Mapping[str, Any],
    magic: Mapping[str, Any],
    base: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The raw (untemplated) variables a task sees on a host; ``base`` is the run's own
    defaults, below everything."""
    own = task.role if task else None
    raw: dict[str, Any] = dict(base or {})
    raw.update(_role_layer(play.role_defaults, own))
    raw.update(state.inventory_vars)
    raw.update(fact_vars(state.facts))
    raw.update(play.vars)
    raw.update(_role_layer(play.role_vars, own))
    if task:
        raw.update(task.vars)
    raw.update(state.runtime_vars)
    if task:
        raw.update(task.role_params)
    raw.update(extra_vars)
    raw.update(magic)
    if task and task.role:
        raw["role_name"] = task.role
        raw["role_path"] = str(task.role_path)
    raw["omit"] = OMIT
    return raw


def magic_vars(inventory: Any, host: str, play_hosts: list[str], hostvars: HostVars,
               check: bool, diff: bool, playbook_dir: str) -> dict[str, Any]:
    groups = {name: _names(getattr(g, "hosts", g)) for name, g in inventory.groups.items()}
    groups.setdefault("all", list(inventory.hosts))
    host_obj = inventory.hosts[host]
    group_names = sorted(n for n in _names(getattr(host_obj, "groups", []))
                         if n not in ("all", "ungrouped"))
    return {
        "inventory_hostname": host,
        "inventory_hostname_short": host.split(".")[0],
        "groups": groups,
        "group_names": group_names,
        "hostvars": hostvars,
        "play_hosts": play_hosts,
        "ansible_play_hosts": play_hosts,
        "ansible_play_hosts_all": play_hosts,
        "ansible_check_mode": check,
        "ansible_diff_mode": diff,
        "playbook_dir": playbook_dir,
        "lab_name": getattr(inventory, "lab_name", None),
    }


def _names(items: Any) -> list[str]:
    """Names of hosts/groups whether given as names or as objects with ``.name``."""
    return [getattr(i, "name", i) for i in items]
