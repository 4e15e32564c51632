"""The loaded inventory: hosts, groups and lab-wide settings as every tool sees them."""

from __future__ import annotations

import copy
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labctl.inventory.patterns import match_hosts
from labctl.inventory.problems import Problem


@dataclass(frozen=True)
class Host:
    name: str
    groups: tuple[str, ...]  # every group the host is in (children included), sorted, without "all"
    address: str
    vars: dict[str, Any] = field(hash=False, compare=False)  # defaults < inventory < -e; + magic vars
    cpus: int = 1
    memory_mb: int = 512
    line: int | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Group:
    name: str
    hosts: list[str]  # every host of the group, its children's included, in group order
    children: list[str]
    vars: dict[str, Any] = field(hash=False, compare=False)  # the file's vars < group_vars/NAME
    direct_hosts: list[str] = field(default_factory=list)  # hosts listed in the group itself
    parents: list[str] = field(default_factory=list)
    depth: int = 0  # longest path from "all": Ansible applies deeper groups' vars later
    line: int | None = field(default=None, compare=False)


class Inventory:
    """Built by ``load_inventory``; read-only by convention."""

    def __init__(
        self,
        *,
        path: Path,
        lab_name: str,
        provider: str,
        network: ipaddress.IPv4Network,
        hosts: dict[str, Host],
        groups: dict[str, Group],
        extra_vars: dict[str, Any],
        inventory_vars: dict[str, dict[str, Any]],
        problems: list[Problem],
    ):
        self.path = path
        self.lab_name = lab_name
        self.provider = provider
        self.network = network
        self.hosts = hosts
        self.groups = groups
        self.extra_vars = extra_vars
        self._inventory_vars = inventory_vars
        self._problems = problems

    @property
    def gateway(self) -> str:
        """The lab machine's address on the lab bridge: lab_network's first host address."""
        return str(self.network.network_address + 1)

    @property
    def etcd_topology(self) -> str:
        etcd = set(self.group_hosts("etcd"))
        control_plane = set(self.group_hosts("control_plane"))
        return "stacked" if etcd and etcd <= control_plane else "external"

    def group_hosts(self, name: str) -> list[str]:
        group = self.groups.get(name)
        return list(group.hosts) if group else []

    def inventory_vars(self, host_name: str) -> dict[str, Any]:
        """The host's variables as Ansible merges the inventory (no defaults, no -e)."""
        return copy.deepcopy(self._inventory_vars[host_name])

    def problems(self) -> list[Problem]:
        return list(self._problems)

    def errors(self) -> list[Problem]:
        return [p for p in self._problems if p.level == "error"]

    def warnings(self) -> list[Problem]:
        return [p for p in self._problems if p.level == "warning"]

    def hosts_matching(self, pattern: str) -> list[str]:
        groups = {name: group.hosts for name, group in self.groups.items()}
        return match_hosts(pattern, list(self.hosts), groups)

    def __repr__(self) -> str:
        return f"<Inventory {self.path} lab={self.lab_name} hosts={len(self.hosts)}>"
