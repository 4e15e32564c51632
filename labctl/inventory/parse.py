"""The structure of a YAML inventory file, read as Ansible's ``yaml`` inventory plugin does.

Pure: takes the loaded YAML data, returns groups (with their own vars, direct hosts and
children), each host's file-level vars, and the structural problems found. Sections of
a group are handled in the order they are written (as Ansible does), so host order and
"later definition wins" for repeated host vars match Ansible. labctl is stricter than
Ansible in one respect: the only top-level key is ``all`` (groups go under
``all.children``), and keys Ansible would skip with a warning are errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from labctl.inventory.hostkeys import HostKeyError, expand_host_key
from labctl.inventory.problems import Problem, error, warning
from labctl.inventory.yamlfile import key_line, plain

SECTIONS = ("hosts", "children", "vars")


@dataclass
class ParsedGroup:
    name: str
    line: int | None = None
    vars: dict[str, Any] = field(default_factory=dict)
    children: list[str] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)  # hosts listed directly in this group
    parents: list[str] = field(default_factory=list)


@dataclass
class ParsedInventory:
    source: str
    groups: dict[str, ParsedGroup]  # "all" and "ungrouped" first, then in order of appearance
    host_vars: dict[str, dict[str, Any]]  # file-level host vars; key order = inventory order
    host_lines: dict[str, int | None]
    problems: list[Problem]


def parse_inventory(data: Mapping, source: str) -> ParsedInventory:
    """``data`` is the file's top-level mapping; ``source`` names the file in messages."""
    return _Parser(source).run(data)


class _Parser:
    def __init__(self, source: str):
        self.source = source
        self.groups: dict[str, ParsedGroup] = {"all": ParsedGroup("all"), "ungrouped": ParsedGroup("ungrouped")}
        self._link("all", "ungrouped")
        self.host_vars: dict[str, dict[str, Any]] = {}
        self.host_lines: dict[str, int | None] = {}
        self.problems: list[Problem] = []

    def where(self, line: int | None) -> str:
        return f"{self.source}:{line}" if line else self.source

    def error(self, line: int | None, message: str) -> None:
        self.problems.append(error(f"{self.where(line)}: {message}"))

    def run(self, data: Mapping) -> ParsedInventory:
        self._report_repeated_keys(data)
        for key in data:
            line = key_line(data, key)
            if key == "all":
                self._group("all", data[key], line)
            elif key in SECTIONS:
                self.error(line, f'top-level key "{key}" belongs under "all:" (write all: then {key}: indented below it)')
            else:
                self.error(
                    line,
                    f'unknown top-level key "{key}": an inventory has one top-level key, "all"; '
                    f"put groups under all.children",
                )
                if isinstance(key, str):
                    self._group(key, data[key], line)
        self._reconcile()
        return ParsedInventory(self.source, self.groups, self.host_vars, self.host_lines, self.problems)

    def _report_repeated_keys(self, node: Any) -> None:
        if isinstance(node, dict):
            for key, line in getattr(node, "repeated", ()):
                self.problems.append(
                    warning(f'{self.where(line)}: key "{key}" appears twice in the same mapping; the last one wins')
                )
            for value in node.values():
                self._report_repeated_keys(value)
        elif isinstance(node, list):
            for value in node:
                self._report_repeated_keys(value)

    def _group(self, name: str, body: Any, line: int | None) -> str | None:
        if body is not None and not isinstance(body, Mapping):
            self.error(
                line,
                f'group "{name}" must be a mapping of hosts, children and/or vars, '
                f"not a {type(body).__name__}",
            )
            return None
        group = self.groups.setdefault(name, ParsedGroup(name, line))
        if group.line is None:
            group.line = line
        for key, value in (body or {}).items():
            key_at = key_line(body, key)
            if key not in SECTIONS:
                self.error(key_at, f'group "{name}": unknown key "{key}" (a group takes only hosts, children and vars)')
                continue
            if isinstance(value, str):  # Ansible accepts "hosts: name" for one entry
                value = {value: None}
            if value is None:
                continue
            if not isinstance(value, Mapping):
                self.error(
                    key_at,
                    f'group "{name}": "{key}" must be a mapping (one "name:" per line), '
                    f"not a {type(value).__name__}",
                )
                continue
            getattr(self, f"_{key}")(group, value)
        return name

    def _vars(self, group: ParsedGroup, values: Mapping) -> None:
        for var, value in values.items():
            group.vars[var] = plain(value)

    def _children(self, group: ParsedGroup, children: Mapping) -> None:
        for child in children:
            line = key_line(children, child)
            if not isinstance(child, str):
                self.error(line, f'group "{group.name}": child group name {child!r} must be a string')
                continue
            if child in ("all", "ungrouped"):
                self.error(line, f'group "{group.name}": "{child}" is built in and cannot be a child group')
                continue
            if self._group(child, children[child], line) is None:
                continue
            if child == group.name or child in self._ancestors(group.name):
                self.error(line, f'group "{child}" under "{group.name}" makes a loop of children; remove one of the two')
                continue
            self._link(group.name, child)

    def _hosts(self, group: ParsedGroup, hosts: Mapping) -> None:
        for key in hosts:
            line = key_line(hosts, key)
            if not isinstance(key, str):
                self.error(line, f'group "{group.name}": host name {key!r} must be a string (quote it)')
                continue
            body = hosts[key]
            if body is not None and not isinstance(body, Mapping):
                self.error(
                    line,
                    f'host "{key}" in group "{group.name}": its vars must be a mapping '
                    f"(var: value lines), not a {type(body).__name__}",
                )
                continue
            try:
                names, port = expand_host_key(key)
            except HostKeyError as exc:
                self.error(line, f'group "{group.name}": {exc}')
                continue
            for name in names:
                self._add_host(group, name, line)
                if port is not None:
                    self.host_vars[name]["ansible_port"] = port
                for var, value in (body or {}).items():
                    self.host_vars[name][var] = plain(value)

    def _add_host(self, group: ParsedGroup, name: str, line: int | None) -> None:
        if name not in self.host_vars:
            self.host_vars[name] = {}
            self.host_lines[name] = line
        if name not in group.hosts:
            group.hosts.append(name)

    def _link(self, parent: str, child: str) -> None:
        if child not in self.groups[parent].children:
            self.groups[parent].children.append(child)
            self.groups[child].parents.append(parent)

    def _ancestors(self, name: str) -> set[str]:
        seen: set[str] = set()
        todo = list(self.groups[name].parents)
        while todo:
            parent = todo.pop()
            if parent not in seen:
                seen.add(parent)
                todo.extend(self.groups[parent].parents)
        return seen

    def _reconcile(self) -> None:
        """Ansible's final step: parentless groups go under all; groupless hosts into ungrouped."""
        for group in self.groups.values():
            if group.name != "all" and not group.parents:
                self._link("all", group.name)
        in_a_group = {h for g in self.groups.values() if g.name != "all" for h in g.hosts}
        for host in self.host_vars:
            if host not in in_a_group:
                self.groups["ungrouped"].hosts.append(host)
