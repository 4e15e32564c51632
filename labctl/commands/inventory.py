"""``labctl inventory validate|show|defaults``: check and inspect a lab inventory."""

from __future__ import annotations

import argparse
import json
import sys

from labctl.commands._common import add_inventory_arguments
from labctl.inventory import DEFAULTS, Inventory, load_inventory, parse_extra_vars
from labctl.inventory.export import ansible_list


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "inventory", help="validate and show a lab inventory",
        description="Validate and show an Ansible YAML lab inventory.",
    )
    sub = parser.add_subparsers(dest="inventory_command", metavar="ACTION", required=True)

    validate = sub.add_parser("validate", help="check the inventory; exit 1 on errors")
    add_inventory_arguments(validate)
    validate.set_defaults(func=run_validate)

    show = sub.add_parser("show", help="hosts with addresses, groups and resources")
    add_inventory_arguments(show)
    show.add_argument(
        "--json", action="store_true",
        help="print what `ansible-inventory --list` prints, plus a `labctl` object",
    )
    show.set_defaults(func=run_show)

    defaults = sub.add_parser("defaults", help="the inventory variables labctl knows, with defaults")
    defaults.set_defaults(func=run_defaults)


def _load(args: argparse.Namespace) -> Inventory:
    return load_inventory(args.inventory, parse_extra_vars(args.extra_vars))


def run_validate(args: argparse.Namespace) -> int:
    inv = _load(args)
    for problem in inv.warnings():
        print(problem, file=sys.stderr)
    errors = inv.errors()
    for problem in errors:
        print(problem, file=sys.stderr)
    if errors:
        print(f"{inv.path}: {len(errors)} error(s)", file=sys.stderr)
        return 1
    groups = ", ".join(
        f"{name} ({len(group.hosts)})"
        for name, group in inv.groups.items()
        if name not in ("all", "ungrouped")
    )
    print(
        f"ok: {inv.path}: {len(inv.hosts)} hosts, groups {groups}; lab {inv.lab_name}, "
        f"provider {inv.provider}, network {inv.network}, etcd {inv.etcd_topology}"
    )
    return 0


def run_show(args: argparse.Namespace) -> int:
    inv = _load(args)
    for problem in inv.problems():
        print(problem, file=sys.stderr)
    if args.json:
        print(json.dumps(ansible_list(inv), indent=4, sort_keys=True, default=str))
        return 1 if inv.errors() else 0
    print(
        f"lab {inv.lab_name}: provider {inv.provider}, network {inv.network} "
        f"(gateway {inv.gateway}), etcd {inv.etcd_topology}"
    )
    rows = [("HOST", "ADDRESS", "GROUPS", "CPUS", "MEMORY_MB")]
    rows += [
        (h.name, h.address, ",".join(h.groups) or "-", str(h.cpus), str(h.memory_mb))
        for h in inv.hosts.values()
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 1 if inv.errors() else 0


def run_defaults(args: argparse.Namespace) -> int:
    width = max(len(name) for name in DEFAULTS)
    for name, row in DEFAULTS.items():
        value = "(computed)" if row.value is None else json.dumps(row.value)
        print(f"{name.ljust(width)}  {value:<16}  [{row.scope}] {row.doc}")
    return 0
