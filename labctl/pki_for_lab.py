"""The lab's PKI as its inventory asks for it: inventory groups -> ``ensure_pki``.

    pki = ensure_lab_pki(inventory)            # state: LabState.for_lab(inventory.lab_name)
    pki.cert("etcd/cp-1-server")               # <labctl home>/labs/<lab>/pki/etcd/cp-1-server.crt

Which host gets which certificate (the inventory decides):

- ``etcd`` group: peer and server certificates (stacked or external alike);
- ``control_plane`` group: the API server's serving certificate names them;
- ``workers`` group: one kubelet certificate each (the hosts that run a kubelet).

Roles read the files through the ``lab_pki_dir`` variable (the lab's PKI directory on
the lab machine); with plain ansible-playbook pass
``-e lab_pki_dir=$(python -m labctl.pki_for_lab -i INVENTORY)``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from labctl.pki import Pki, ensure_pki
from labctl.state import LabState

ETCD_GROUP = "etcd"
CONTROL_PLANE_GROUP = "control_plane"
NODE_GROUPS = ("workers",)


def _addresses(inventory: Any, hosts: list[str]) -> dict[str, str]:
    return {name: str(inventory.hosts[name].address) for name in hosts}


def _group(inventory: Any, name: str) -> list[str]:
    group = inventory.groups.get(name)
    return list(group.hosts) if group else []


def pki_hosts(inventory: Any) -> dict[str, dict[str, str]]:
    """``ensure_pki``'s host arguments for ``inventory`` (pure): name -> address maps."""
    nodes: list[str] = []
    for group in NODE_GROUPS:
        nodes += [h for h in _group(inventory, group) if h not in nodes]
    return {
        "etcd_hosts": _addresses(inventory, _group(inventory, ETCD_GROUP)),
        "control_plane_hosts": _addresses(inventory, _group(inventory, CONTROL_PLANE_GROUP)),
        "nodes": _addresses(inventory, nodes),
    }


def ensure_lab_pki(inventory: Any, state: LabState | None = None) -> Pki:
    """Create or refresh the lab's CA and certificates in ``state.pki_dir`` (idempotent)."""
    state = state or LabState.for_lab(inventory.lab_name)
    state.pki_dir.mkdir(parents=True, exist_ok=True)
    state.pki_dir.chmod(0o700)
    return ensure_pki(state.pki_dir, lab_name=inventory.lab_name, **pki_hosts(inventory))


def main(argv: list[str] | None = None) -> int:
    """``python -m labctl.pki_for_lab -i INV``: ensure the PKI, print its directory."""
    from labctl.commands._common import add_inventory_arguments, inventory_from_args
    from labctl.errors import LabError

    parser = argparse.ArgumentParser(prog="python -m labctl.pki_for_lab", description=main.__doc__)
    add_inventory_arguments(parser)
    args = parser.parse_args(argv)
    try:
        print(ensure_lab_pki(inventory_from_args(args)).dir)
    except LabError as exc:
        print(f"labctl: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
