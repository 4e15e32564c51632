"""``labctl down -i INV [--keep-state]``: remove everything the lab created."""

from __future__ import annotations

import argparse

from labctl import lifecycle
from labctl.commands.status import add_lab_arguments, lab_from_args


def register(sub) -> None:
    parser = sub.add_parser("down", help="remove the lab's hosts, network and state")
    add_lab_arguments(parser)
    parser.add_argument(
        "--keep-state", action="store_true", help="keep the lab's SSH key pair and PKI"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    lab, inv = lab_from_args(args)
    result = lifecycle.down(lab, keep_state=args.keep_state, inv=inv)
    lifecycle.print_progress(
        f"lab {lab}: down in {result.seconds:.1f}s ({len(result.removed)} host(s) removed)"
    )
    return 0
