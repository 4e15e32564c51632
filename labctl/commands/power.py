"""``labctl stop|start -i INV HOST...``: power single hosts off and on (experiments,
failover drills). A stopped host keeps its disk; `start` waits until it answers SSH."""

from __future__ import annotations

import argparse

from labctl.commands.status import add_lab_arguments, lab_from_args


def register(sub) -> None:
    for verb, text in (("stop", "stop hosts of the lab (they keep their disks)"),
                       ("start", "start stopped hosts and wait until they answer SSH")):
        parser = sub.add_parser(verb, help=text, description=__doc__)
        add_lab_arguments(parser)
        parser.add_argument("hosts", nargs="+", metavar="HOST", help="inventory host name")
        parser.set_defaults(func=run, power_verb=verb)


def run(args: argparse.Namespace) -> int:
    from labctl import hostpower

    lab, _inv = lab_from_args(args)
    if args.power_verb == "stop":
        hostpower.stop_hosts(lab, list(args.hosts))
    else:
        hostpower.start_hosts(lab, list(args.hosts))
    return 0
