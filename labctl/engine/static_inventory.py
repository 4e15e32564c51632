"""A small in-memory inventory with the interface the engine uses.

``labctl.inventory`` loads real Ansible inventories; this one is built from Python
data, for tests, benchmarks and programmatic runs (``deploy()`` takes either).
Host vars here are already merged (group vars are applied in group order, then the
host's own).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any


@dataclass
class StaticHost:
    name: str
    address: str
    groups: list[str] = field(default_factory=list)
    port: int = 22


@dataclass
class StaticGroup:
    name: str
    hosts: list[str]
    vars: dict[str, Any] = field(default_factory=dict)


class StaticInventory:
    def __init__(self, hosts: dict[str, dict[str, Any]], groups: dict[str, list[str]] | None = None,
                 group_vars: dict[str, dict[str, Any]] | None = None,
                 extra_vars: dict[str, Any] | None = None, lab_name: str = "test") -> None:
        groups = dict(groups or {})
        group_vars = group_vars or {}
        self.lab_name = lab_name
        self.extra_vars = dict(extra_vars or {})
        self._host_vars = {name: dict(v or {}) for name, v in hosts.items()}
        self.groups = {"all": StaticGroup("all", list(hosts), group_vars.get("all", {}))}
        for gname, members in groups.items():
            self.groups[gname] = StaticGroup(gname, list(members), group_vars.get(gname, {}))
        self.hosts = {}
        for name, hv in self._host_vars.items():
            member_of = ["all"] + [g for g, members in groups.items() if name in members]
            self.hosts[name] = StaticHost(name, str(hv.get("ansible_host", name)), member_of,
                                          int(hv.get("ansible_port", 22)))

    def inventory_vars(self, host: str) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for g in self.hosts[host].groups:
            merged.update(self.groups[g].vars)
        merged.update(self._host_vars[host])
        return merged

    def hosts_matching(self, pattern: str) -> list[StaticHost]:
        """Ansible host patterns: names, groups, globs, ``a:b``, ``a:&b``, ``a:!b``."""
        selected: list[str] = []
        for raw in pattern.replace(",", ":").split(":"):
            part = raw.strip()
            if not part:
                continue
            if part.startswith("!"):
                drop = set(self._names(part[1:]))
                selected = [h for h in selected if h not in drop]
            elif part.startswith("&"):
                keep = set(self._names(part[1:]))
                selected = [h for h in selected if h in keep]
            else:
                selected += [h for h in self._names(part) if h not in selected]
        return [self.hosts[h] for h in selected]

    def _names(self, part: str) -> list[str]:
        if part in self.groups:
            return list(self.groups[part].hosts)
        if part in self.hosts:
            return [part]
        out: list[str] = []
        for g in fnmatch.filter(self.groups, part):
            out += [h for h in self.groups[g].hosts if h not in out]
        out += [h for h in fnmatch.filter(self.hosts, part) if h not in out]
        return out
