"""``labctl etcdctl -i INV [-e VARS] -- ARGS…``: the lab machine's etcdctl against a lab.

Runs ``etcdctl ARGS…`` (Debian's etcd-client, API v3) with the lab's etcd cluster
already filled in: the client endpoints of every host of the ``etcd`` group and the
lab CA plus the health-check client certificate from the lab's PKI directory. They
travel as ETCDCTL_* environment variables, so a flag given in ARGS (``--endpoints
https://10.0.0.5:2379`` to talk to one member) takes their place.

    labctl etcdctl -i inventory/default.yml -- endpoint health
    labctl etcdctl -i inventory/ha-stacked.yml -- member list -w table
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from labctl.errors import LabError

DEFAULT_CLIENT_PORT = 2379
CLIENT_CERT = "etcd/healthcheck-client"

# etcdctl flag -> the environment variable that gives its value (etcdctl refuses both)
FLAG_ENV = {
    "--endpoints": "ETCDCTL_ENDPOINTS",
    "--cacert": "ETCDCTL_CACERT",
    "--cert": "ETCDCTL_CERT",
    "--key": "ETCDCTL_KEY",
}


def register(sub) -> None:
    parser = sub.add_parser(
        "etcdctl", help="run etcdctl against the lab's etcd cluster (endpoints and certificates set)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from labctl.commands._common import add_inventory_arguments

    add_inventory_arguments(parser)
    parser.add_argument("args", nargs=argparse.REMAINDER, metavar="-- ARGS",
                        help="etcdctl's arguments, after --")
    parser.set_defaults(func=run)


def client_endpoints(inventory: Any) -> list[str]:
    """``https://<address>:<port>`` of every etcd host, in inventory order (pure)."""
    group = inventory.groups.get("etcd")
    hosts = list(group.hosts) if group else []
    if not hosts:
        raise LabError(f"inventory {inventory.path}: the lab has no etcd group (or it is empty): "
                       "add the hosts that run etcd members to group 'etcd'")
    endpoints = []
    for name in hosts:
        host = inventory.hosts[name]
        port = (host.vars or {}).get("etcd_client_port", DEFAULT_CLIENT_PORT)
        endpoints.append(f"https://{host.address}:{port}")
    return endpoints


def given_flags(args: Sequence[str]) -> set[str]:
    """Which of FLAG_ENV's flags ``args`` sets (``--flag value`` or ``--flag=value``)."""
    return {a.split("=", 1)[0] for a in args if a.split("=", 1)[0] in FLAG_ENV}


def etcdctl_environment(endpoints: list[str], pki_dir: Path, args: Sequence[str],
                        base: Mapping[str, str]) -> dict[str, str]:
    """``base`` plus ETCDCTL_API=3 and the lab's endpoints and certificates, except for
    what ``args`` gives as flags (pure)."""
    values = {
        "--endpoints": ",".join(endpoints),
        "--cacert": str(pki_dir / "ca.crt"),
        "--cert": str(pki_dir / f"{CLIENT_CERT}.crt"),
        "--key": str(pki_dir / f"{CLIENT_CERT}.key"),
    }
    env = {k: v for k, v in base.items() if k not in FLAG_ENV.values()}
    env["ETCDCTL_API"] = "3"
    given = given_flags(args)
    for flag, var in FLAG_ENV.items():
        if flag not in given:
            env[var] = values[flag]
    return env


def check_pki(pki_dir: Path, lab_name: str, inventory_path: Any) -> None:
    missing = [p for p in ("ca.crt", f"{CLIENT_CERT}.crt", f"{CLIENT_CERT}.key")
               if not (pki_dir / p).is_file()]
    if missing:
        raise LabError(
            f"lab {lab_name!r} has no PKI yet ({', '.join(missing)} missing in {pki_dir}): "
            f"bring the lab up first (`labctl up -i {inventory_path}`)")


def find_etcdctl() -> str:
    path = shutil.which("etcdctl")
    if path is None:
        raise LabError("etcdctl is not installed on this machine: install Debian's etcd-client "
                       "package (`apt-get install etcd-client`)")
    return path


def etcdctl_args(args: Sequence[str]) -> list[str]:
    """The arguments after ``--`` (argparse keeps the separator in REMAINDER)."""
    args = list(args)
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        raise LabError("no etcdctl command given: e.g. `labctl etcdctl -i INV -- endpoint health`")
    return args


def run(args: argparse.Namespace) -> int:
    from labctl.commands._common import inventory_from_args
    from labctl.state import LabState

    command = etcdctl_args(args.args)
    inv = inventory_from_args(args)
    endpoints = client_endpoints(inv)
    pki_dir = LabState.for_lab(inv.lab_name).pki_dir
    check_pki(pki_dir, inv.lab_name, args.inventory)
    etcdctl = find_etcdctl()
    env = etcdctl_environment(endpoints, pki_dir, command, os.environ)
    return subprocess.call([etcdctl, *command], env=env)
