"""An admin kubeconfig for a lab (pure: bytes in, YAML text out).

    text = render_kubeconfig(
        lab_name="default", server="https://10.123.1.2:6443",
        ca_pem=..., client_cert_pem=..., client_key_pem=...,
    )

The CA and the admin client certificate/key are embedded (``*-data`` fields, base64 of
the PEM files), so the file works on its own, wherever it is copied. Names follow
kubeadm's admin.conf: cluster ``<lab>``, user ``<lab>-admin``, context
``<lab>-admin@<lab>``, which is also the current context.

``apiserver_endpoint`` picks the server: ``lab_apiserver_endpoint`` when the inventory
defines one (a load balancer in front of several API servers), else the first
control-plane host's address on the secure port.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import yaml

from labctl.errors import LabError

SECURE_PORT = 6443
ENDPOINT_VAR = "lab_apiserver_endpoint"
PORT_VAR = "apiserver_secure_port"
CONTROL_PLANE_GROUP = "control_plane"


def _b64(pem: bytes) -> str:
    return base64.b64encode(pem).decode("ascii")


def check_server_url(url: str, where: str) -> str:
    """``url`` if it is an https URL with a host; else a LabError saying what to give."""
    parts = urlsplit(url)
    try:
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        port_ok = False
    if parts.scheme != "https" or not parts.hostname or not port_ok:
        raise LabError(f"{where}: {url!r} is not an API server URL: give https://HOST[:PORT], "
                       f"e.g. https://10.0.0.2:{SECURE_PORT}")
    return url.rstrip("/")


def endpoint_url(value: str) -> str:
    """``lab_apiserver_endpoint`` as a URL: a full https URL, ``host:port`` or a bare host
    or address (port 6443)."""
    value = str(value).strip()
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(value).version == 6:
            value = f"[{value}]"
    url = value if "://" in value else f"https://{value}"
    parts = urlsplit(url)
    try:
        has_port = parts.port is not None
    except ValueError:
        has_port = True  # check_server_url reports the bad port
    if not has_port and parts.hostname:
        url = f"{parts.scheme}://{parts.netloc}:{SECURE_PORT}{parts.path}"
    return check_server_url(url, ENDPOINT_VAR)


def apiserver_endpoint(inventory: Any) -> str:
    """The URL clients use to reach the lab's API server (pure, from the inventory)."""
    control_plane = inventory.groups.get(CONTROL_PLANE_GROUP)
    hosts = list(control_plane.hosts) if control_plane else []
    if not hosts:
        raise LabError(f"inventory {inventory.path}: the lab has no control_plane group (or it "
                       "is empty): add the hosts that run the API server to group 'control_plane'")
    first = inventory.hosts[hosts[0]]
    variables: Mapping[str, Any] = first.vars or {}
    if variables.get(ENDPOINT_VAR):
        return endpoint_url(variables[ENDPOINT_VAR])
    port = int(variables.get(PORT_VAR, SECURE_PORT))
    address = str(first.address)
    host = f"[{address}]" if ":" in address else address
    return f"https://{host}:{port}"


def kubeconfig_document(*, lab_name: str, server: str, ca_pem: bytes, client_cert_pem: bytes,
                        client_key_pem: bytes) -> dict[str, Any]:
    """The kubeconfig as a mapping (``kind: Config``, one cluster, user and context)."""
    user = f"{lab_name}-admin"
    context = f"{user}@{lab_name}"
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": lab_name, "cluster": {
            "server": check_server_url(server, "server"),
            "certificate-authority-data": _b64(ca_pem),
        }}],
        "users": [{"name": user, "user": {
            "client-certificate-data": _b64(client_cert_pem),
            "client-key-data": _b64(client_key_pem),
        }}],
        "contexts": [{"name": context, "context": {"cluster": lab_name, "user": user}}],
        "current-context": context,
        "preferences": {},
    }


def render_kubeconfig(**kwargs: Any) -> str:
    """``kubeconfig_document(**kwargs)`` as YAML text."""
    return yaml.safe_dump(kubeconfig_document(**kwargs), sort_keys=False, default_flow_style=False)
