"""Reading a kubeconfig file (the YAML kubectl uses) into connection settings.

Supports: current-context or a named context, the cluster's server, certificate-authority
(file or -data), insecure-skip-tls-verify, tls-server-name; the user's client-certificate /
client-key (file or -data), token and tokenFile; the context's namespace. Relative file
paths are relative to the kubeconfig's directory, as kubectl does."""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from dataclasses import dataclass

import yaml


class KubeconfigError(ValueError):
    pass


@dataclass
class KubeConfig:
    server: str
    ca_file: str | None = None
    ca_data: bytes | None = None
    cert_file: str | None = None
    key_file: str | None = None
    cert_data: bytes | None = None
    key_data: bytes | None = None
    token: str | None = None
    insecure: bool = False
    tls_server_name: str | None = None
    namespace: str = "default"

    def ssl_context(self) -> ssl.SSLContext | None:
        """TLS settings for an https server (None for plain http)."""
        if not self.server.startswith("https://"):
            return None
        ctx = ssl.create_default_context()
        if self.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif self.ca_file or self.ca_data:
            ctx.load_verify_locations(cafile=self.ca_file,
                                      cadata=self.ca_data.decode() if self.ca_data else None)
        if self.cert_file:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        elif self.cert_data:
            _load_cert_chain_from_memory(ctx, self.cert_data, self.key_data)
        return ctx


def _load_cert_chain_from_memory(ctx: ssl.SSLContext, cert: bytes, key: bytes | None) -> None:
    # ssl only loads client certificates from files: write them to a private temporary
    # directory just long enough to load them.
    if key is None:
        raise KubeconfigError("client-certificate-data given without client-key-data")
    with tempfile.TemporaryDirectory(prefix="kubecfg-") as tmp:
        cert_path, key_path = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        for path, data in ((cert_path, cert), (key_path, key)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
        ctx.load_cert_chain(cert_path, key_path)


def _named(items: list | None, name: str, what: str, where: str) -> dict:
    for item in items or []:
        if item.get("name") == name:
            return item.get(what) or {}
    raise KubeconfigError(f"{where}: no {what} named {name!r} (check the {what}s list)")


def _file(value: str | None, base: str) -> str | None:
    if not value:
        return None
    return value if os.path.isabs(value) else os.path.join(base, value)


def _data(value: str | None, where: str, field: str) -> bytes | None:
    if not value:
        return None
    try:
        return base64.b64decode(value, validate=True)
    except ValueError as exc:
        raise KubeconfigError(f"{where}: {field} is not valid base64: {exc}") from None


def parse_kubeconfig(doc: dict, base_dir: str = ".", context: str | None = None,
                     where: str = "kubeconfig") -> KubeConfig:
    """Pure: a parsed kubeconfig document → KubeConfig."""
    if not isinstance(doc, dict):
        raise KubeconfigError(f"{where}: not a kubeconfig (expected a mapping at the top)")
    ctx_name = context or doc.get("current-context")
    if not ctx_name:
        raise KubeconfigError(f"{where}: no current-context set and no context requested")
    ctx = _named(doc.get("contexts"), ctx_name, "context", where)
    cluster = _named(doc.get("clusters"), ctx.get("cluster", ""), "cluster", where)
    user = _named(doc.get("users"), ctx["user"], "user", where) if ctx.get("user") else {}
    server = cluster.get("server")
    if not server:
        raise KubeconfigError(f"{where}: cluster {ctx.get('cluster')!r} has no server")
    token = user.get("token")
    token_file = _file(user.get("tokenFile"), base_dir)
    if not token and token_file:
        with open(token_file) as fh:
            token = fh.read().strip()
    return KubeConfig(
        server=server.rstrip("/"),
        ca_file=_file(cluster.get("certificate-authority"), base_dir),
        ca_data=_data(cluster.get("certificate-authority-data"), where,
                      "certificate-authority-data"),
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        tls_server_name=cluster.get("tls-server-name"),
        cert_file=_file(user.get("client-certificate"), base_dir),
        key_file=_file(user.get("client-key"), base_dir),
        cert_data=_data(user.get("client-certificate-data"), where, "client-certificate-data"),
        key_data=_data(user.get("client-key-data"), where, "client-key-data"),
        token=token,
        namespace=ctx.get("namespace") or "default",
    )


def load_kubeconfig(path: str, context: str | None = None) -> KubeConfig:
    try:
        with open(path) as fh:
            doc = yaml.safe_load(fh)
    except OSError as exc:
        raise KubeconfigError(f"cannot read kubeconfig {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise KubeconfigError(f"kubeconfig {path} is not valid YAML: {exc}") from None
    return parse_kubeconfig(doc, os.path.dirname(os.path.abspath(path)), context, where=path)
