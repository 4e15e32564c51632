"""The documented defaults of labctl's inventory variables: one row per variable.

Every tool and test reads these names. A value of ``None`` means the default is
computed (the doc says how); ``scope`` "lab" means one value for the whole lab (set it
in ``all.vars``, ``group_vars/all`` or with ``-e``), "host" means each host may differ.
Later issues add rows here; nothing else needs to change to document them.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Default:
    value: Any
    scope: str  # "lab" | "host"
    doc: str


DEFAULTS: dict[str, Default] = {
    "lab_name": Default(
        None, "lab", "name of the lab (state dir, bridge, machine names): [a-z0-9-], at most "
        "20 characters; default: the inventory file's stem (default.yml -> default)"),
    "lab_provider": Default(
        "nspawn", "lab", "what a host is: nspawn (systemd-nspawn container) or libvirt (VM)"),
    "lab_network": Default(
        None, "lab", "the lab's isolated IPv4 network (CIDR); its first address is the lab "
        "machine's; default: a /24 in 10.200.0.0-10.249.255.255 derived from lab_name"),
    "lab_cluster_cidr": Default(
        "10.244.0.0/16", "lab", "pod addresses: each node gets a slice of it (Node IPAM)"),
    "lab_node_cidr_mask": Default(24, "lab", "prefix length of each node's pod CIDR"),
    "lab_service_cidr": Default(
        "10.96.0.0/12", "lab", "Service ClusterIPs; its first address is the `kubernetes` Service"),
    "lab_cluster_dns_ip": Default(
        "10.96.0.10", "lab", "ClusterIP of the cluster DNS Service (pods' resolv.conf)"),
    "lab_cluster_domain": Default("cluster.local", "lab", "DNS domain of Services and pods"),
    "cpus": Default(1, "host", "virtual CPUs of the host"),
    "memory_mb": Default(512, "host", "memory of the host in MiB (VMs; nspawn ignores it)"),
    "libvirt_uri": Default(
        "qemu:///system", "host", "libvirt connection of the host (qemu+ssh://... for a remote "
        "hypervisor)"),
}

LAB_WIDE = tuple(name for name, row in DEFAULTS.items() if row.scope == "lab")
PROVIDERS = ("nspawn", "libvirt")


def default_network(lab_name: str) -> ipaddress.IPv4Network:
    """A /24 that depends only on the lab's name, so differently named labs rarely clash."""
    digest = hashlib.sha256(lab_name.encode()).digest()
    return ipaddress.IPv4Network(f"10.{200 + digest[0] % 50}.{digest[1]}.0/24")


def resolved_defaults(lab_name: str) -> dict[str, Any]:
    """The defaults with the computed ones filled in for a lab called ``lab_name``."""
    values = {name: row.value for name, row in DEFAULTS.items()}
    values["lab_name"] = lab_name
    values["lab_network"] = str(default_network(lab_name))
    return values
