"""``labctl status [-i INV | --lab NAME] [--json]``: each host's provider, state, address, groups.

Also home of the lab selection shared by status, down, ssh and console: a lab is named
by its inventory (``-i``), by ``--lab NAME``, or is the only lab there is.
"""

from __future__ import annotations

import argparse
import json

from labctl import lifecycle
from labctl.errors import LabError


def add_lab_arguments(parser: argparse.ArgumentParser) -> None:
    which = parser.add_argument_group("which lab")
    which.add_argument("-i", "--inventory", help="the lab's inventory file")
    which.add_argument(
        "-e", "--extra-vars", action="append", default=[], metavar="VARS",
        help="extra variables for the inventory (key=value, JSON/YAML, @file)",
    )
    which.add_argument("--lab", help="lab name (when the inventory is not at hand)")


def lab_from_args(args: argparse.Namespace):
    """(lab name, inventory or None) from ``-i``/``--lab``, or the only lab there is."""
    inv = None
    if getattr(args, "inventory", None):
        from labctl.commands._common import inventory_from_args

        inv = inventory_from_args(args)
        if args.lab and args.lab != inv.lab_name:
            raise LabError(f"--lab {args.lab} does not match the inventory's lab {inv.lab_name}")
        return inv.lab_name, inv
    if getattr(args, "lab", None):
        return args.lab, None
    labs = lifecycle.lab_names()
    if len(labs) == 1:
        return labs[0], None
    if not labs:
        raise LabError("no lab exists yet: run `labctl up -i INVENTORY`")
    raise LabError(f"several labs exist ({', '.join(labs)}): pick one with -i INVENTORY or --lab NAME")


def register(sub) -> None:
    parser = sub.add_parser("status", help="show the lab's hosts and their state")
    add_lab_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    lab, inv = lab_from_args(args)
    rows = lifecycle.status(lab, inv)
    if args.json:
        print(json.dumps({"lab": lab, "hosts": rows}, indent=2))
    elif rows:
        print(lifecycle.format_status_table(rows))
    else:
        print(f"lab {lab}: no hosts")
    return 0
