"""``labctl kubeconfig -i INV [-e VARS] [--server URL]``: an admin kubeconfig on stdout.

The server is ``lab_apiserver_endpoint`` when the inventory defines it, else the first
control-plane host on port 6443; the lab CA and the admin client certificate
(CN=kubernetes-admin, O=system:masters) come from the lab's PKI, embedded.

    labctl kubeconfig -i inventory/default.yml > lab.kubeconfig
    kubectl --kubeconfig lab.kubeconfig get ns
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from labctl.errors import LabError

ADMIN = "admin"


def register(sub) -> None:
    parser = sub.add_parser(
        "kubeconfig", help="print an admin kubeconfig for the lab's API server",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from labctl.commands._common import add_inventory_arguments

    add_inventory_arguments(parser)
    parser.add_argument("--server", metavar="URL",
                        help="the API server URL to put in the file (default: "
                             "lab_apiserver_endpoint, else https://<first control plane>:6443)")
    parser.set_defaults(func=run)


def read_pki(pki_dir: Path, lab_name: str, inventory_path: object) -> dict[str, bytes]:
    """The CA and admin credentials from the lab's PKI directory, or a LabError naming
    what is missing and how to make it."""
    files = {"ca_pem": "ca.crt", "client_cert_pem": f"{ADMIN}.crt",
             "client_key_pem": f"{ADMIN}.key"}
    missing = [name for name in files.values() if not (pki_dir / name).is_file()]
    if missing:
        raise LabError(
            f"lab {lab_name!r} has no admin credentials yet ({', '.join(missing)} missing in "
            f"{pki_dir}): deploy the lab first (`labctl up -i {inventory_path}`)")
    try:
        return {arg: (pki_dir / name).read_bytes() for arg, name in files.items()}
    except OSError as exc:
        raise LabError(f"cannot read the lab's PKI in {pki_dir}: {exc}") from exc


def run(args: argparse.Namespace) -> int:
    from labctl.commands._common import inventory_from_args
    from labctl.kubeconfig import apiserver_endpoint, check_server_url, render_kubeconfig
    from labctl.state import LabState

    inv = inventory_from_args(args)
    server = check_server_url(args.server, "--server") if args.server else apiserver_endpoint(inv)
    credentials = read_pki(LabState.for_lab(inv.lab_name).pki_dir, inv.lab_name, args.inventory)
    sys.stdout.write(render_kubeconfig(lab_name=inv.lab_name, server=server, **credentials))
    return 0
