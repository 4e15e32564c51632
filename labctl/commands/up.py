"""``labctl up -i INV``: provision missing hosts, wait until ready, deploy the site, verify."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from labctl import lifecycle
from labctl.commands._common import add_inventory_arguments, inventory_from_args
from labctl.errors import LabError
from labctl.providers.readiness import StepTimeouts


def parse_step_timeouts(values: list[str]) -> StepTimeouts:
    overrides: dict[str, float] = {}
    for value in values:
        step, sep, seconds = value.partition("=")
        try:
            overrides[step.strip()] = float(seconds)
        except ValueError:
            sep = ""
        if not sep:
            raise LabError(f"--step-timeout {value!r}: expected STEP=SECONDS, e.g. ssh-banner=300")
    return StepTimeouts().with_overrides(overrides)


def register(sub) -> None:
    parser = sub.add_parser("up", help="create the lab's hosts (or converge), deploy and verify")
    add_inventory_arguments(parser)
    parser.add_argument("--no-deploy", action="store_true", help="hosts only: skip deploying the site")
    parser.add_argument("--no-verify", action="store_true", help="skip the roles' verify suites")
    parser.add_argument("--site", type=Path, help="the site file (default: site.yml near the inventory)")
    parser.add_argument(
        "--step-timeout", action="append", default=[], metavar="STEP=SECONDS",
        help="readiness timeout per step (running, ssh-banner, logged-in, booted); repeatable",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON summary with phase times")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    inv = inventory_from_args(args)
    options = lifecycle.UpOptions(
        deploy=not args.no_deploy,
        verify=not args.no_verify,
        site=args.site,
        timeouts=parse_step_timeouts(args.step_timeout),
    )
    result = lifecycle.up(inv, options)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        summary = result.to_dict()
        lifecycle.print_progress(
            f"lab {inv.lab_name}: up in {summary['phases'].get('total', 0):.1f}s — "
            f"{len(summary['created'])} created, {len(summary['started'])} started, "
            f"{len(summary['kept'])} kept, {len(summary['removed'])} removed"
        )
    return 0
