"""Arguments and loading shared by every command that works on an inventory."""

from __future__ import annotations

import argparse
import sys

from labctl.errors import LabError
from labctl.inventory import Inventory, load_inventory, parse_extra_vars


def add_inventory_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-i", "--inventory", required=True, metavar="INV",
        help="the lab's Ansible YAML inventory, e.g. inventory/default.yml",
    )
    parser.add_argument(
        "-e", "--extra-vars", dest="extra_vars", action="append", default=[], metavar="VARS",
        help="extra variables, highest precedence (repeatable): key=value ..., a JSON/YAML "
        "mapping, or @file.yml",
    )


def inventory_from_args(args: argparse.Namespace, *, stderr=None) -> Inventory:
    """Load the inventory named by -i with the -e values; print its warnings; refuse it
    (LabError listing every error) if it has errors."""
    stderr = stderr or sys.stderr
    inv = load_inventory(args.inventory, parse_extra_vars(getattr(args, "extra_vars", None)))
    for problem in inv.warnings():
        print(f"labctl: {problem}", file=stderr)
    errors = inv.errors()
    if errors:
        lines = "\n".join(f"  {p.message}" for p in errors)
        raise LabError(f"the inventory has {len(errors)} error(s):\n{lines}")
    return inv
