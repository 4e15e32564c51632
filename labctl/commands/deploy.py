"""``labctl deploy -i INV``: apply the site's plays and roles to the lab's hosts."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from labctl.errors import LabError


def register(sub) -> None:
    parser = sub.add_parser("deploy", help="apply site.yml's roles to the lab's hosts (Ansible-style)")
    from labctl.commands._common import add_inventory_arguments

    add_inventory_arguments(parser)
    parser.add_argument("--site", type=Path, help="the site file (default: site.yml near the "
                        "inventory, else in the current directory)")
    parser.add_argument("--limit", "-l", help="only these hosts (an Ansible host pattern)")
    parser.add_argument("--tags", "-t", action="append", default=[],
                        help="only tasks with these tags (comma-separated, repeatable)")
    parser.add_argument("--skip-tags", action="append", default=[],
                        help="skip tasks with these tags (comma-separated, repeatable)")
    parser.add_argument("--check", "-C", action="store_true",
                        help="report what would change; change nothing")
    parser.add_argument("--diff", "-D", action="store_true", help="show before/after of changed files")
    parser.add_argument("--forks", "-f", type=int, default=10, help="hosts in parallel (default 10)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    parser.add_argument("--roles-path", action="append", default=[], type=Path,
                        help="more directories to look for roles in (after roles/ next to the site)")
    parser.set_defaults(func=run)


def split_tags(values: list[str]) -> tuple[str, ...]:
    return tuple(t.strip() for v in values for t in v.split(",") if t.strip())


def find_site(args: argparse.Namespace) -> Path:
    if args.site:
        if not args.site.is_file():
            raise LabError(f"--site {args.site}: no such file")
        return args.site
    inventory_dir = Path(args.inventory).resolve().parent
    for candidate in (inventory_dir / "site.yml", inventory_dir.parent / "site.yml",
                      Path.cwd() / "site.yml"):
        if candidate.is_file():
            return candidate
    raise LabError("no site.yml next to the inventory, above it, or here: give --site FILE")


def run(args: argparse.Namespace) -> int:
    from labctl.commands._common import inventory_from_args
    from labctl.connection import ConnectionPool
    from labctl.engine import DeployOptions, deploy
    from labctl.state import LabState

    if args.forks < 1:
        raise LabError(f"--forks {args.forks}: must be at least 1")
    inv = inventory_from_args(args)
    site = find_site(args)
    state = LabState.for_lab(inv.lab_name)
    if not state.private_key.exists():
        raise LabError(f"lab {inv.lab_name!r} has no SSH key at {state.private_key}: "
                       "create the lab first (`labctl up -i ...`)")
    hosts = {}
    for name, host in inv.hosts.items():
        port = inv.inventory_vars(name).get("ansible_port", 22)
        hosts[name] = (str(host.address), int(port))
    options = DeployOptions(
        limit=args.limit, tags=split_tags(args.tags), skip_tags=split_tags(args.skip_tags),
        check=args.check, diff=args.diff, forks=args.forks, as_json=args.json,
        roles_path=tuple(args.roles_path), out=sys.stdout,
    )
    with ConnectionPool(hosts, key_path=state.private_key, known_hosts=state.known_hosts) as pool:
        result = deploy(inv, pool, site, options)
    if not result.ok:
        for f in result.failures:
            print(f"labctl: deploy failed on host {f.host}, task '{f.task}': {f.msg}", file=sys.stderr)
    return result.exit_code
