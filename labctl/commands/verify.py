"""``labctl verify -i INV``: run the roles' testinfra verify suites on the lab's hosts.

Then, on labs with kubelets, the cluster smoke test (labctl/verify/smoke.py): an app
Deployment and Service, reached by ClusterIP from every worker and by DNS name from a pod;
a deleted pod replaced; a stopped worker's pods recreated elsewhere (``--no-disrupt``
skips stopping hosts).

Every role the site applies (meta dependencies included) that has
``roles/<role>/verify/test_*.py`` is checked on the hosts its plays target. One block
per role (a line per host, each failing check with its assertion), then a summary;
exit 0 if every check passed, 1 if one failed, 2 if a host was unreachable.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from labctl.errors import LabError


def register(sub) -> None:
    from labctl.commands._common import add_inventory_arguments

    parser = sub.add_parser("verify", help="run the roles' testinfra verify suites on the lab's hosts")
    add_inventory_arguments(parser)
    parser.add_argument("--site", type=Path, help="the site file (default: site.yml near the "
                        "inventory, else in the current directory)")
    parser.add_argument("--limit", "-l", metavar="PATTERN",
                        help="only these hosts (an Ansible host pattern)")
    parser.add_argument("--roles", action="append", default=[], metavar="R1,R2",
                        help="only these roles' suites (comma-separated, repeatable)")
    parser.add_argument("-k", dest="keyword", metavar="EXPR",
                        help="only checks whose names match this pytest -k expression")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    parser.add_argument("--roles-path", action="append", default=[], type=Path,
                        help="more directories to look for roles in (after roles/ next to the site)")
    parser.add_argument("--timeout", type=float, default=60.0, metavar="S",
                        help="time limit of each command a check runs (60 s; 0: none, which "
                        "saves a wrapper process per command)")
    smoke = parser.add_mutually_exclusive_group()
    smoke.add_argument("--smoke", dest="smoke", action="store_true", default=None,
                       help="run the cluster smoke test even with filters (default: run it "
                       "after the suites when the site has kubelets and no filter is given)")
    smoke.add_argument("--no-smoke", dest="smoke", action="store_false",
                       help="only the roles' suites")
    parser.add_argument("--no-disrupt", action="store_true",
                        help="the smoke test does not stop and restart a worker / control plane")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from labctl.commands._common import inventory_from_args
    from labctl.commands.deploy import find_site
    from labctl.connection import ConnectionPool
    from labctl.state import LabState
    from labctl.verify import VerifyOptions, verify
    from labctl.verify.discovery import split_roles

    inv = inventory_from_args(args)
    site = find_site(args)
    state = LabState.for_lab(inv.lab_name)
    if not state.private_key.exists():
        raise LabError(f"lab {inv.lab_name!r} has no SSH key at {state.private_key}: its hosts "
                       f"were never provisioned; run `labctl up -i {args.inventory}` first")
    hosts = {
        name: (str(host.address), int(inv.inventory_vars(name).get("ansible_port", 22)))
        for name, host in inv.hosts.items()
    }
    options = VerifyOptions(
        limit=args.limit, roles=split_roles(args.roles), keyword=args.keyword,
        as_json=args.json, roles_path=tuple(args.roles_path), out=sys.stdout,
        command_timeout=args.timeout if args.timeout > 0 else None,
        smoke=args.smoke, disrupt=not args.no_disrupt,
    )
    with ConnectionPool(hosts, key_path=state.private_key, known_hosts=state.known_hosts) as pool:
        result = verify(inv, pool, site, options)
    return result.exit_code
