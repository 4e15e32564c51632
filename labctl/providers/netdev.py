"""Linux bridge helpers shared by providers that attach hosts to a bridge themselves
(nspawn; libvirt makes its own bridge). Commands are built by pure functions and run
with ``ip``; each helper is idempotent so a half-done ``up`` or ``down`` can be rerun.
"""

from __future__ import annotations

import ipaddress
import re
import subprocess
from pathlib import Path

from labctl.errors import LabError

SYS_NET = Path("/sys/class/net")
IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")


def check_ifname(name: str) -> str:
    if not IFNAME.match(name):
        raise LabError(
            f"invalid network interface name {name!r}: use 1-15 letters, digits, '-', '_' or '.'"
        )
    return name


def link_exists(name: str) -> bool:
    return (SYS_NET / name).exists()


def is_bridge(name: str) -> bool:
    return (SYS_NET / name / "bridge").is_dir()


def bridge_ports(name: str) -> list[str]:
    brif = SYS_NET / name / "brif"
    return sorted(p.name for p in brif.iterdir()) if brif.is_dir() else []


def create_bridge_command(name: str) -> list[str]:
    # STP off and no forward delay: ports forward as soon as a host's veth appears.
    return [
        "ip", "link", "add", "name", check_ifname(name), "type", "bridge",
        "stp_state", "0", "forward_delay", "0",
    ]  # fmt: skip


def address_command(name: str, interface: ipaddress.IPv4Interface) -> list[str]:
    return ["ip", "address", "replace", str(interface), "dev", check_ifname(name)]


def up_command(name: str) -> list[str]:
    return ["ip", "link", "set", "dev", check_ifname(name), "up"]


def delete_link_command(name: str) -> list[str]:
    return ["ip", "link", "delete", "dev", check_ifname(name)]


def run_ip(cmd: list[str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    except FileNotFoundError as exc:
        raise LabError("the `ip` program is missing: install the Debian package iproute2") from exc


def _check(result: subprocess.CompletedProcess, what: str) -> None:
    if result.returncode != 0:
        raise LabError(f"{what} failed: {' '.join(result.args)}: {result.stderr.strip()}")


def ensure_bridge(name: str, gateway: str, network: ipaddress.IPv4Network) -> None:
    """A bridge ``name`` that is up and holds ``gateway`` (the lab machine's address)."""
    if link_exists(name) and not is_bridge(name):
        raise LabError(
            f"network interface {name} exists and is not a bridge: pick another lab "
            "bridge name or remove that interface"
        )
    if not link_exists(name):
        result = run_ip(create_bridge_command(name))
        if result.returncode != 0 and not is_bridge(name):  # lost a race: fine if it's there
            _check(result, f"creating bridge {name}")
    interface = ipaddress.IPv4Interface(f"{gateway}/{network.prefixlen}")
    _check(run_ip(address_command(name, interface)), f"setting address on {name}")
    _check(run_ip(up_command(name)), f"bringing {name} up")


def delete_link(name: str) -> None:
    """Remove an interface if it exists (a bridge, a veth end...)."""
    if not link_exists(name):
        return
    result = run_ip(delete_link_command(name))
    if result.returncode != 0 and link_exists(name):
        _check(result, f"deleting interface {name}")
