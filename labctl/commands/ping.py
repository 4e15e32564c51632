"""``labctl ping -i INV [--limit PATTERN]``: log in to every lab host and run ``true``.

Hosts are tried in parallel with the lab's key and pinned host keys; one line per
host, in inventory order; exit 1 if any host failed.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from labctl.commands._common import add_inventory_arguments, inventory_from_args
from labctl.connection import ConnectionPool, HostKeyChangedError
from labctl.errors import LabError
from labctl.state import LabState

MAX_PARALLEL = 32


@dataclass(frozen=True)
class PingResult:
    host: str
    ok: bool
    round_trip_ms: float = 0.0  # `true` on the logged-in connection
    login_ms: float = 0.0
    reason: str = ""


def ping_hosts(
    hosts: dict[str, tuple[str, int]], *, key_path: Path, known_hosts: Path, timeout: float
) -> list[PingResult]:
    """Log in to every host in parallel and time a ``true``; results in ``hosts`` order."""
    with ConnectionPool(
        hosts, key_path=key_path, known_hosts=known_hosts, connect_timeout=timeout
    ) as pool:

        def ping(name: str) -> PingResult:
            conn = pool.get(name)
            try:
                started = time.monotonic()
                conn.connect()
                logged_in = time.monotonic()
                conn.run("true", check=True, timeout=timeout)
                done = time.monotonic()
            except HostKeyChangedError as exc:
                return PingResult(name, False, reason=str(exc))
            except LabError as exc:
                return PingResult(name, False, reason=getattr(exc, "reason", None) or str(exc))
            return PingResult(name, True, (done - logged_in) * 1000, (logged_in - started) * 1000)

        with ThreadPoolExecutor(min(MAX_PARALLEL, max(1, len(hosts)))) as executor:
            return list(executor.map(ping, hosts))


def format_results(results: list[PingResult]) -> list[str]:
    width = max((len(r.host) for r in results), default=0)
    lines = []
    for r in results:
        if r.ok:
            lines.append(
                f"{r.host:<{width}}  ok  {r.round_trip_ms:.0f} ms  (login {r.login_ms:.0f} ms)"
            )
        else:
            lines.append(f"{r.host:<{width}}  UNREACHABLE  {r.reason}")
    return lines


def register(sub) -> None:
    parser = sub.add_parser("ping", help="check that every lab host answers over SSH")
    add_inventory_arguments(parser)
    parser.add_argument(
        "--limit", metavar="PATTERN", help="only these hosts (Ansible pattern: group, host, !x, &y)"
    )
    parser.add_argument(
        "--timeout", type=float, default=10.0, metavar="S", help="per-host time limit (10 s)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    inv = inventory_from_args(args)
    names = inv.hosts_matching(args.limit) if args.limit else list(inv.hosts)
    if not names:
        raise LabError(f"--limit {args.limit!r} matches no host of {inv.path}")
    state = LabState.for_lab(inv.lab_name)
    if not state.private_key.exists():
        raise LabError(
            f"lab {inv.lab_name} has no SSH key ({state.private_key}): its hosts were never "
            f"provisioned; run `labctl up -i {args.inventory}` first"
        )
    hosts = {
        name: (inv.hosts[name].address, int(inv.hosts[name].vars.get("ansible_port", 22)))
        for name in names
    }
    results = ping_hosts(
        hosts, key_path=state.private_key, known_hosts=state.known_hosts, timeout=args.timeout
    )
    for line in format_results(results):
        print(line, flush=True)
    return 0 if all(r.ok for r in results) else 1
