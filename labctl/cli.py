"""The ``labctl`` command line.

Each subcommand lives in its own module under ``labctl/commands`` and exposes
``register(subparsers)``; modules are discovered, so adding a command touches no
other file. A command's handler returns an exit code; a ``LabError`` becomes one
clear line on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from labctl import __version__, commands
from labctl.errors import LabError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="labctl", description="Build and break a Kubernetes-style lab of real hosts."
    )
    parser.add_argument("--version", action="version", version=f"labctl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except LabError as exc:
        print(f"labctl: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("labctl: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
