"""``labctl console HOST [-n LINES] [-f]``: show a host's console log."""

from __future__ import annotations

import argparse
import os
import sys
import time

from labctl import lifecycle
from labctl.commands.status import add_lab_arguments, lab_from_args
from labctl.errors import LabError
from labctl.providers import get_provider
from labctl.state import LabState


def register(sub) -> None:
    parser = sub.add_parser("console", help="show a host's console log")
    add_lab_arguments(parser)
    parser.add_argument("host")
    parser.add_argument("-n", "--lines", type=int, default=0, help="only the last N lines")
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing new output")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    lab, _inv = lab_from_args(args)
    record = lifecycle.find_record(lab, args.host)
    path = get_provider(record.provider, LabState.for_lab(lab).root).console_log(record)
    try:
        f = open(path, "rb")  # noqa: SIM115 - kept open while following
    except FileNotFoundError as exc:
        raise LabError(f"host {args.host}: no console log at {path} yet") from exc
    with f:
        data = f.read()
        if args.lines > 0:
            data = b"\n".join(data.splitlines()[-args.lines :]) + b"\n"
        out = sys.stdout.buffer
        out.write(data)
        out.flush()
        while args.follow:
            chunk = f.read()
            if chunk:
                out.write(chunk)
                out.flush()
            else:
                time.sleep(0.2)  # following a file: there is nothing to wait on but time
            if not os.path.exists(path):
                break
    return 0
