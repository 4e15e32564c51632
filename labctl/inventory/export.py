"""The inventory as ``ansible-inventory --list`` prints it, plus labctl's computed view.

The Ansible part (groups with their direct ``hosts`` and ``children``, ``_meta.hostvars``
with inventory variables and -e values) has exactly the shape and content Ansible gives,
so the two can be compared directly; what only labctl computes (addresses, defaults)
lives under the ``labctl`` key.
"""

from __future__ import annotations

from typing import Any

from labctl.inventory.model import Inventory


def ansible_list(inv: Inventory) -> dict[str, Any]:
    result: dict[str, Any] = {}
    seen: set[str] = set()

    def add(name: str) -> None:
        group = inv.groups[name]
        entry: dict[str, Any] = {}
        if name != "all" and group.direct_hosts:
            entry["hosts"] = list(group.direct_hosts)
        if group.children:
            entry["children"] = list(group.children)
        if entry:
            result[name] = entry
        for child in group.children:
            if child not in seen:
                seen.add(child)
                add(child)

    add("all")
    hostvars = {}
    for name in inv.hosts:
        values = {**inv.inventory_vars(name), **inv.extra_vars}
        if values:
            hostvars[name] = values
    result["_meta"] = {"hostvars": hostvars}
    result["labctl"] = labctl_view(inv)
    return result


def labctl_view(inv: Inventory) -> dict[str, Any]:
    return {
        "lab_name": inv.lab_name,
        "provider": inv.provider,
        "network": str(inv.network),
        "gateway": inv.gateway,
        "topology": inv.etcd_topology,
        "addresses": {name: host.address for name, host in inv.hosts.items()},
        "resources": {
            name: {"cpus": host.cpus, "memory_mb": host.memory_mb} for name, host in inv.hosts.items()
        },
    }
