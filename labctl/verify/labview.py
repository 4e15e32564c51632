"""What verification checks know about the lab: the ``lab`` and ``hostvars`` fixtures.

``lab`` is the inventory at a glance (hosts, groups, addresses, each host's inventory
vars). ``hostvars`` is what a role saw on a host when it was deployed: role defaults,
inventory vars, play and role vars and -e, with the engine's precedence, templated on
first access (so ``hostvars["lab_venv"]`` is ``/opt/lab/venv``, not a template).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labctl.engine.model import Play, Task
from labctl.engine.templating import LazyVars
from labctl.engine.variables import HostState, HostVars, inventory_vars_of, magic_vars, task_vars


@dataclass(frozen=True)
class LabView:
    name: str
    hosts: list[str]  # inventory order
    groups: dict[str, list[str]]  # group -> its hosts (children's included)
    addresses: dict[str, str]  # host -> address on the lab network
    vars: dict[str, dict[str, Any]]  # host -> its inventory vars (defaults < inventory < -e)
    network: str = ""
    gateway: str = ""

    def group(self, name: str) -> list[str]:
        """The hosts of group ``name`` (empty if there is no such group)."""
        return list(self.groups.get(name, []))

    def address(self, host: str) -> str:
        return self.addresses[host]


def lab_view(inventory: Any) -> LabView:
    groups = {name: list(group.hosts) for name, group in inventory.groups.items()}
    groups.setdefault("all", list(inventory.hosts))
    return LabView(
        name=str(getattr(inventory, "lab_name", "") or ""),
        hosts=list(inventory.hosts),
        groups=groups,
        addresses={name: str(h.address) for name, h in inventory.hosts.items()},
        vars={name: dict(h.vars or {}) for name, h in inventory.hosts.items()},
        network=str(getattr(inventory, "network", "") or ""),
        gateway=str(getattr(inventory, "gateway", "") or ""),
    )


class ResolvedVars(Mapping):
    """A read-only mapping of variables, each templated when first read."""

    def __init__(self, lazy: LazyVars) -> None:
        self._lazy = lazy

    def __getitem__(self, key: str) -> Any:
        return self._lazy[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._lazy.raw)

    def __len__(self) -> int:
        return len(self._lazy.raw)

    def __contains__(self, key: object) -> bool:
        return key in self._lazy.raw

    def __repr__(self) -> str:
        return f"<hostvars: {len(self)} variables>"


class RoleVars:
    """The variables each role saw on each host, as the role engine computes them."""

    def __init__(self, inventory: Any, plays: list[Play], site_dir: Path) -> None:
        self._inventory = inventory
        self._plays = plays
        self._site_dir = site_dir
        self._extra = dict(getattr(inventory, "extra_vars", {}) or {})
        self._states = {
            name: HostState(name, inventory_vars_of(inventory, name)) for name in inventory.hosts
        }
        self._hostvars = HostVars(self._states, self._extra)

    def for_host(self, role: str, role_path: Path, play_index: int, host: str) -> ResolvedVars:
        play = self._plays[play_index]
        play_hosts = list(self._inventory.hosts_matching(play.hosts))
        magic = magic_vars(self._inventory, host, play_hosts, self._hostvars, False, False,
                           str(self._site_dir))
        # a stand-in task of the role, so the role's own defaults and vars take precedence
        # over other roles' in the same play, as they do for the role's tasks
        as_role = Task(name="verify", module="verify", args={}, source=f"{role} verify",
                       role=role, role_path=role_path)
        raw = task_vars(play, as_role, self._states[host], self._extra, magic)
        return ResolvedVars(LazyVars(raw))
