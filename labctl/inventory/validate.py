"""Rules a lab inventory must follow beyond being valid Ansible. Pure: returns problems.

Each message names the file (and line when known), the host or group, and the fix.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from labctl.inventory.defaults import PROVIDERS
from labctl.inventory.problems import Problem, error, warning
from labctl.inventory.varsdirs import entity_names

if TYPE_CHECKING:
    from labctl.inventory.model import Inventory

REQUIRED_GROUPS = ("etcd", "control_plane")
SAFE_LAB_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,19}$")
HOSTNAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
GROUP_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
STACKED_HINT = " (for stacked etcd: all.children.etcd.children.control_plane)"


def validate(inv: Inventory, base_dir: Path) -> list[Problem]:
    problems: list[Problem] = []
    for rule in (_lab_name, _provider, _required_groups, _etcd_size, _topology,
                 _hosts_without_group, _host_names, _group_names):
        problems += rule(inv)
    problems += _unmatched_group_vars(inv, base_dir)
    return problems


def _at(inv: Inventory, line: int | None = None) -> str:
    return f"{inv.path}:{line}" if line else str(inv.path)


def _lab_name(inv: Inventory) -> list[Problem]:
    if SAFE_LAB_NAME.match(inv.lab_name):
        return []
    origin = "" if "lab_name" in inv.groups["all"].vars or "lab_name" in inv.extra_vars else " (taken from the file name)"
    return [error(
        f'{_at(inv)}: lab_name "{inv.lab_name}"{origin} is not a safe name: it names the lab\'s '
        f"state directory, bridge and machines; use lowercase letters, digits and '-', at most "
        f"20 characters, e.g. set lab_name: mylab in all.vars"
    )]


def _provider(inv: Inventory) -> list[Problem]:
    if inv.provider in PROVIDERS:
        return []
    return [error(
        f"{_at(inv)}: lab_provider {inv.provider!r} is unknown; use one of: {', '.join(PROVIDERS)} "
        f"(in all.vars or -e lab_provider=...)"
    )]


def _required_groups(inv: Inventory) -> list[Problem]:
    problems = []
    for name in REQUIRED_GROUPS:
        if name not in inv.groups:
            problems.append(error(
                f'{_at(inv)}: no "{name}" group: a lab needs etcd and control_plane hosts; add '
                f"all.children.{name}.hosts{STACKED_HINT if name == 'etcd' else ''}"
            ))
        elif name != "etcd" and not inv.groups[name].hosts:
            problems.append(error(
                f'{_at(inv, inv.groups[name].line)}: group "{name}" has no hosts; a lab needs at '
                f"least one; add hosts under it"
            ))
    return problems


def _etcd_size(inv: Inventory) -> list[Problem]:
    group = inv.groups.get("etcd")
    if group is None:
        return []
    members = group.hosts
    where = _at(inv, group.line)
    if not members:
        return [error(
            f'{where}: group "etcd" has no hosts: the cluster needs an etcd member; add 1, 3 or 5 '
            f"hosts (control-plane hosts for stacked etcd)"
        )]
    if len(members) % 2 == 0:
        return [warning(
            f'{where}: group "etcd" has {len(members)} hosts ({", ".join(members)}): an even '
            f"member count tolerates no more failures than one fewer; use 1, 3 or 5"
        )]
    return []


def _topology(inv: Inventory) -> list[Problem]:
    etcd = inv.group_hosts("etcd")
    control_plane = set(inv.group_hosts("control_plane"))
    stacked = [h for h in etcd if h in control_plane]
    separate = [h for h in etcd if h not in control_plane]
    if stacked and separate:
        on_cp = "host {} is a control-plane host" if len(stacked) == 1 else "hosts {} are control-plane hosts"
        off_cp = "is not" if len(separate) == 1 else "are not"
        return [warning(
            f"{_at(inv)}: etcd {on_cp.format(', '.join(stacked))} but {', '.join(separate)} "
            f"{off_cp}: the lab is treated as external etcd; put all etcd "
            f"members on control-plane hosts (stacked) or none (external)"
        )]
    return []


def _hosts_without_group(inv: Inventory) -> list[Problem]:
    return [
        error(
            f'{_at(inv, inv.hosts[name].line)}: host "{name}" is in no group (it is only under '
            f"all.hosts); list it under a group's hosts, e.g. all.children.workers.hosts"
        )
        for name in inv.group_hosts("ungrouped")
        if name in inv.hosts
    ]


def _host_names(inv: Inventory) -> list[Problem]:
    return [
        error(
            f'{_at(inv, host.line)}: host name "{name}" cannot be a hostname: use lowercase '
            f"letters, digits and '-' (at most 63, not starting or ending with '-')"
        )
        for name, host in inv.hosts.items()
        if not HOSTNAME.match(name)
    ]


def _group_names(inv: Inventory) -> list[Problem]:
    return [
        warning(
            f'{_at(inv, group.line)}: group name "{name}" is not a valid Ansible variable name '
            f"(Ansible warns about it); use letters, digits and '_', e.g. "
            f'"{re.sub(r"[^A-Za-z0-9_]", "_", name)}"'
        )
        for name, group in inv.groups.items()
        if not GROUP_NAME.match(name)
    ]


def _unmatched_group_vars(inv: Inventory, base_dir: Path) -> list[Problem]:
    problems = []
    for name, entry in entity_names(base_dir / "group_vars").items():
        if name not in inv.groups:
            problems.append(warning(
                f"{entry}: matches no group of {inv.path} (groups: "
                f"{', '.join(g for g in inv.groups if g not in ('all', 'ungrouped'))}); rename or "
                f"remove it"
            ))
    return problems
