"""``load_inventory``: the file, group_vars/ and host_vars/ beside it, and -e, merged.

Variable precedence is Ansible's (lowest first): the file's ``all`` vars; the file's
vars of the host's other groups, shallow groups before deeper ones (then by
``ansible_group_priority``, then name); ``group_vars/all``; ``group_vars/<group>`` in the
same order; the file's host vars; ``host_vars/<host>``. labctl's documented defaults sit
below all of that and extra vars (-e) above it.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

from labctl.inventory import addresses
from labctl.inventory.defaults import DEFAULTS, LAB_WIDE, default_network, resolved_defaults
from labctl.inventory.model import Group, Host, Inventory
from labctl.inventory.parse import ParsedInventory, parse_inventory
from labctl.inventory.problems import InventoryError, Problem, error, warning
from labctl.inventory.validate import validate
from labctl.inventory.varsdirs import load_vars
from labctl.inventory.yamlfile import read_yaml

MAGIC_VARS = ("inventory_hostname", "group_names")


def load_inventory(path: str | Path, extra_vars: dict[str, Any] | None = None) -> Inventory:
    path = Path(path)
    data = read_yaml(path)
    if data is None:
        raise InventoryError(f"{path}: the inventory is empty; start from inventory/default.yml")
    if not isinstance(data, dict):
        raise InventoryError(
            f"{path}: an inventory is a mapping whose top-level key is all:, not a {type(data).__name__}"
        )
    return _Builder(path, parse_inventory(data, str(path)), dict(extra_vars or {})).build()


class _Builder:
    def __init__(self, path: Path, parsed: ParsedInventory, extra: dict[str, Any]):
        self.path, self.parsed, self.extra = path, parsed, extra
        self.problems: list[Problem] = list(parsed.problems)
        base = path.parent
        self.group_files = {g: load_vars(base / "group_vars", g) for g in parsed.groups}
        self.host_files = {h: load_vars(base / "host_vars", h) for h in parsed.host_vars}
        self.depth = self._depths()

    def fail(self, message: str, line: int | None = None) -> None:
        where = f"{self.path}:{line}" if line else str(self.path)
        self.problems.append(error(f"{where}: {message}"))

    def build(self) -> Inventory:
        memberships = self._memberships()
        inventory_vars = {h: self._merge(h, memberships[h]) for h in self.parsed.host_vars}
        lab = self._lab_settings()
        self._check_lab_wide(inventory_vars, lab)
        finals = {h: self._final_vars(h, inventory_vars[h], lab, memberships[h]) for h in inventory_vars}
        hosts_addresses = self._addresses(finals, lab["network"])
        hosts = {}
        for name, final in finals.items():
            final.setdefault("ansible_host", hosts_addresses[name])
            hosts[name] = Host(
                name=name,
                groups=tuple(final["group_names"]),
                address=hosts_addresses[name],
                vars=final,
                cpus=self._positive_int(name, final, "cpus"),
                memory_mb=self._positive_int(name, final, "memory_mb"),
                line=self.parsed.host_lines.get(name),
            )
        inventory = Inventory(
            path=self.path,
            lab_name=lab["lab_name"],
            provider=lab["lab_provider"],
            network=lab["network"],
            hosts=hosts,
            groups=self._groups(),
            extra_vars=self.extra,
            inventory_vars=inventory_vars,
            problems=self.problems,
        )
        self.problems.extend(validate(inventory, self.path.parent))
        return inventory

    # -- groups ---------------------------------------------------------------------

    def _depths(self) -> dict[str, int]:
        depth: dict[str, int] = {}

        def visit(name: str, level: int) -> None:
            if depth.get(name, -1) < level:
                depth[name] = level
                for child in self.parsed.groups[name].children:
                    visit(child, level + 1)

        visit("all", 0)
        return depth

    def _descendants(self, name: str) -> list[str]:
        """The group and its descendants, breadth first in written order (Ansible's order)."""
        order, queue = [name], [name]
        while queue:
            for child in self.parsed.groups[queue.pop(0)].children:
                if child not in order:
                    order.append(child)
                    queue.append(child)
        return order

    def _memberships(self) -> dict[str, list[str]]:
        """Each host's groups (with ancestors, without all) in Ansible's precedence order."""
        member: dict[str, set[str]] = {h: set() for h in self.parsed.host_vars}
        for group in self.parsed.groups.values():
            if group.name == "all":
                continue
            for name in self._descendants(group.name):
                for host in self.parsed.groups[name].hosts:
                    member[host].add(group.name)
        return {h: sorted(groups, key=self._precedence_key) for h, groups in member.items()}

    def _precedence_key(self, name: str) -> tuple[int, int, str]:
        priority = self.parsed.groups[name].vars.get("ansible_group_priority", 1)
        try:
            priority = int(priority)
        except (TypeError, ValueError):
            priority = 1
        return self.depth.get(name, 0), priority, name

    def _groups(self) -> dict[str, Group]:
        groups = {}
        for name, parsed in self.parsed.groups.items():
            members: list[str] = []
            for each in self._descendants(name):
                members += [h for h in self.parsed.groups[each].hosts if h not in members]
            groups[name] = Group(
                name=name,
                hosts=members,
                children=list(parsed.children),
                vars={**parsed.vars, **self.group_files[name]},
                direct_hosts=list(parsed.hosts),
                parents=list(parsed.parents),
                depth=self.depth.get(name, 0),
                line=parsed.line,
            )
        return groups

    # -- variables ------------------------------------------------------------------

    def _merge(self, host: str, groups: list[str]) -> dict[str, Any]:
        merged: dict[str, Any] = dict(self.parsed.groups["all"].vars)
        for group in groups:
            merged.update(self.parsed.groups[group].vars)
        merged.update(self.group_files["all"])
        for group in groups:
            merged.update(self.group_files[group])
        merged.update(self.parsed.host_vars[host])
        merged.update(self.host_files[host])
        return merged

    def _lab_settings(self) -> dict[str, Any]:
        """lab_name, lab_provider and lab_network: defaults < all's vars < -e."""
        lab_vars = {**self.parsed.groups["all"].vars, **self.group_files["all"], **self.extra}
        name = lab_vars.get("lab_name", self.path.stem)
        if not isinstance(name, str):
            self.fail(f"lab_name must be a string, not {name!r}")
            name = str(name)
        defaults = resolved_defaults(name)
        provider = lab_vars.get("lab_provider", defaults["lab_provider"])
        network = self._network(lab_vars.get("lab_network", defaults["lab_network"]), name)
        return {
            "lab_name": name,
            "lab_provider": provider,
            "lab_network": str(network),
            "network": network,
            "as_written": {**defaults, **lab_vars},
        }

    def _network(self, value: Any, lab_name: str) -> ipaddress.IPv4Network:
        fallback = default_network(lab_name)
        try:
            network = ipaddress.IPv4Network(str(value))
        except ValueError as exc:
            fix = ""
            try:
                fix = f"; did you mean {ipaddress.IPv4Network(str(value), strict=False)}?"
            except ValueError:
                fix = "; write it as a CIDR such as 10.123.1.0/24"
            self.fail(f"lab_network {value!r} is not an IPv4 network ({exc}){fix}")
            return fallback
        if network.prefixlen > 29:
            self.fail(f"lab_network {network} is too small (a /{network.prefixlen}); use a /24")
            return fallback
        if not network.is_private:
            self.problems.append(
                warning(
                    f"{self.path}: lab_network {network} is not a private range; a lab network "
                    f"can hide real addresses from the lab machine; use one in 10.0.0.0/8"
                )
            )
        return network

    def _check_lab_wide(self, inventory_vars: dict[str, dict[str, Any]], lab: dict[str, Any]) -> None:
        for host, values in inventory_vars.items():
            for var in LAB_WIDE:
                written = lab["as_written"][var]
                if var in values and var not in self.extra and values[var] != written:
                    self.fail(
                        f'host "{host}" sees {var}={values[var]!r} but the lab\'s is {written!r}: '
                        f"{var} is lab-wide; set it only in all.vars, group_vars/all or with -e",
                        self.parsed.host_lines.get(host),
                    )

    def _final_vars(self, host: str, inventory_vars: dict, lab: dict, groups: list[str]) -> dict:
        final = resolved_defaults(lab["lab_name"])
        final.update(inventory_vars)
        final.update(self.extra)
        final.update({var: lab[var] if var in lab else lab["as_written"][var] for var in LAB_WIDE})
        final["inventory_hostname"] = host
        final["group_names"] = sorted(groups)
        return final

    def _positive_int(self, host: str, final: dict[str, Any], var: str) -> int:
        value = final[var]
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            self.fail(
                f'host "{host}": {var} must be a positive whole number, not {final[var]!r}',
                self.parsed.host_lines.get(host),
            )
            return DEFAULTS[var].value
        final[var] = value
        return value

    # -- addresses ------------------------------------------------------------------

    def _addresses(self, finals: dict[str, dict], network: ipaddress.IPv4Network) -> dict[str, str]:
        result: dict[str, str] = {}
        owner: dict[str, str] = {}
        for host, final in finals.items():
            if "ansible_host" not in final:
                continue
            given = str(final["ansible_host"])
            result[host] = given
            if self._valid_explicit(host, given, network):
                if given in owner:
                    self.fail(
                        f'hosts "{owner[given]}" and "{host}" both have address {given}: '
                        f"give one of them another ansible_host, or remove it to get a free one",
                        self.parsed.host_lines.get(host),
                    )
                else:
                    owner[given] = host
        wanting = [h for h in finals if "ansible_host" not in finals[h]]
        try:
            result.update(addresses.allocate(network, wanting, set(owner)))
        except ValueError as exc:
            self.fail(f"lab_network is full: {exc}; use a larger lab_network (a /24 has 253 addresses)")
            result.update({h: "" for h in wanting})
        return result

    def _valid_explicit(self, host: str, given: str, network: ipaddress.IPv4Network) -> bool:
        line = self.parsed.host_lines.get(host)
        try:
            address = ipaddress.IPv4Address(given)
        except ValueError:
            self.fail(
                f'host "{host}": ansible_host {given!r} is not an IPv4 address; labctl creates '
                f"this host on lab_network {network}: use an address there or remove ansible_host",
                line,
            )
            return False
        first, last = addresses.usable_range(network)
        if address not in network:
            self.fail(
                f'host "{host}": ansible_host {given} is outside lab_network {network}; use an '
                f"address in it or remove ansible_host to get one",
                line,
            )
            return False
        if not first <= int(address) <= last:
            role = "the lab machine's (gateway)" if int(address) == first - 1 else "reserved"
            self.fail(
                f'host "{host}": ansible_host {given} is {role} address of {network}; use one '
                f"from {ipaddress.IPv4Address(first)} to {ipaddress.IPv4Address(last)}",
                line,
            )
            return False
        return True
