"""Command-line configuration with etcd's own flag names, and etcd's member/cluster IDs."""

from __future__ import annotations

import argparse
import hashlib
import struct
from dataclasses import dataclass, field
from urllib.parse import urlsplit


class ConfigError(Exception):
    pass


@dataclass
class Config:
    name: str = "default"
    data_dir: str = ""
    listen_client_urls: list[str] = field(default_factory=lambda: ["http://localhost:2379"])
    advertise_client_urls: list[str] = field(default_factory=lambda: ["http://localhost:2379"])
    listen_peer_urls: list[str] = field(default_factory=lambda: ["http://localhost:2380"])
    initial_advertise_peer_urls: list[str] = field(default_factory=lambda: ["http://localhost:2380"])
    initial_cluster: str = ""
    initial_cluster_state: str = "new"
    initial_cluster_token: str = "etcd-cluster"
    listen_metrics_urls: list[str] = field(default_factory=list)
    heartbeat_interval: int = 100  # ms
    election_timeout: int = 1000  # ms
    snapshot_count: int = 100000
    cert_file: str = ""
    key_file: str = ""
    trusted_ca_file: str = ""
    client_cert_auth: bool = False
    peer_cert_file: str = ""
    peer_key_file: str = ""
    peer_trusted_ca_file: str = ""
    peer_client_cert_auth: bool = False
    log_level: str = "info"

    def initial_members(self) -> dict[str, list[str]]:
        """name -> peer URLs from --initial-cluster (name=url,name=url,...)."""
        spec = self.initial_cluster or f"{self.name}={','.join(self.initial_advertise_peer_urls)}"
        out: dict[str, list[str]] = {}
        for part in spec.split(","):
            part = part.strip()
            if not part:
                continue
            if "=" not in part:
                raise ConfigError(
                    f"--initial-cluster: {part!r} is not name=peer-url (example: n1=http://10.0.0.1:2380)"
                )
            name, url = part.split("=", 1)
            _check_url(url, "--initial-cluster")
            out.setdefault(name, []).append(url)
        if self.name not in out:
            raise ConfigError(
                f"--initial-cluster has no entry for this member's --name {self.name!r} "
                f"(it lists {', '.join(out) or 'nothing'})"
            )
        return out


def _check_url(url: str, flag: str) -> tuple[str, int, bool]:
    u = urlsplit(url)
    if u.scheme not in ("http", "https") or not u.hostname or not u.port:
        raise ConfigError(f"{flag}: {url!r} must look like http(s)://HOST:PORT")
    return u.hostname, u.port, u.scheme == "https"


def host_port(url: str, flag: str = "url") -> tuple[str, int, bool]:
    """(host, port, is_tls) of an http(s)://host:port URL."""
    return _check_url(url, flag)


def member_id(peer_urls: list[str], token: str) -> int:
    """etcd's member ID: sha1 of the sorted peer URLs joined, then the cluster token."""
    b = "".join(sorted(peer_urls)).encode() + token.encode()
    return struct.unpack(">Q", hashlib.sha1(b).digest()[:8])[0]


def cluster_id(member_ids: list[int]) -> int:
    """etcd's cluster ID: sha1 of the sorted member IDs as big-endian u64s."""
    b = b"".join(struct.pack(">Q", m) for m in sorted(member_ids))
    return struct.unpack(">Q", hashlib.sha1(b).digest()[:8])[0]


def _urls(value: str) -> list[str]:
    return [u.strip() for u in value.split(",") if u.strip()]


def _bool(value: str) -> bool:
    return str(value).lower() in ("1", "true", "yes", "on")


FLAGS = {
    # flag -> (attribute, converter)
    "name": ("name", str),
    "data-dir": ("data_dir", str),
    "listen-client-urls": ("listen_client_urls", _urls),
    "advertise-client-urls": ("advertise_client_urls", _urls),
    "listen-peer-urls": ("listen_peer_urls", _urls),
    "initial-advertise-peer-urls": ("initial_advertise_peer_urls", _urls),
    "initial-cluster": ("initial_cluster", str),
    "initial-cluster-state": ("initial_cluster_state", str),
    "initial-cluster-token": ("initial_cluster_token", str),
    "listen-metrics-urls": ("listen_metrics_urls", _urls),
    "heartbeat-interval": ("heartbeat_interval", int),
    "election-timeout": ("election_timeout", int),
    "snapshot-count": ("snapshot_count", int),
    "cert-file": ("cert_file", str),
    "key-file": ("key_file", str),
    "trusted-ca-file": ("trusted_ca_file", str),
    "client-cert-auth": ("client_cert_auth", _bool),
    "peer-cert-file": ("peer_cert_file", str),
    "peer-key-file": ("peer_key_file", str),
    "peer-trusted-ca-file": ("peer_trusted_ca_file", str),
    "peer-client-cert-auth": ("peer_client_cert_auth", _bool),
    "log-level": ("log_level", str),
}
BOOL_FLAGS = {"client-cert-auth", "peer-client-cert-auth"}
# etcd flags accepted so a command line written for etcd still starts this member, but
# with no effect here (logging has one format; no v2 API, quotas or auto-compaction).
IGNORED_FLAGS = (
    "logger", "log-outputs", "enable-v2", "auto-compaction-retention", "auto-compaction-mode",
    "quota-backend-bytes", "max-request-bytes", "strict-reconfig-check", "enable-pprof",
    "metrics", "experimental-initial-corrupt-check", "max-snapshots", "max-wals",
    "grpc-keepalive-min-time", "grpc-keepalive-interval", "grpc-keepalive-timeout",
    "cipher-suites", "auto-tls", "peer-auto-tls", "debug",
)  # fmt: skip


def parse_args(argv: list[str]) -> Config:
    p = argparse.ArgumentParser(
        prog="python -m agents.etcd",
        description="etcd v3 peer (flags are etcd's own; `snapshot restore` is a subcommand)",
    )
    p.add_argument("--config-file", "--config", dest="config_file", help="YAML file with etcd's config-file keys")
    for flag in FLAGS:
        if flag in BOOL_FLAGS:
            p.add_argument(f"--{flag}", nargs="?", const="true", default=None)
        else:
            p.add_argument(f"--{flag}", default=None)
    for flag in IGNORED_FLAGS:
        p.add_argument(f"--{flag}", nargs="?", const="true", default=None, help=argparse.SUPPRESS)
    ns = p.parse_args(argv)
    cfg = Config()
    if ns.config_file:
        import yaml

        with open(ns.config_file) as f:
            doc = yaml.safe_load(f) or {}
        for key, value in doc.items():
            if key not in FLAGS:
                continue  # etcd keys we have no use for are accepted and ignored
            attr, conv = FLAGS[key]
            setattr(cfg, attr, conv(value) if not isinstance(value, list) else value)
    for flag, (attr, conv) in FLAGS.items():
        value = getattr(ns, flag.replace("-", "_"))
        if value is not None:
            setattr(cfg, attr, conv(value))
    if not cfg.data_dir:
        cfg.data_dir = f"{cfg.name}.etcd"
    if cfg.initial_cluster_state not in ("new", "existing"):
        raise ConfigError("--initial-cluster-state must be 'new' or 'existing'")
    if cfg.heartbeat_interval <= 0 or cfg.election_timeout < 5 * cfg.heartbeat_interval:
        raise ConfigError(
            "--election-timeout must be at least 5 times --heartbeat-interval "
            f"(got {cfg.election_timeout} ms and {cfg.heartbeat_interval} ms)"
        )
    for url in cfg.listen_client_urls + cfg.listen_peer_urls + cfg.listen_metrics_urls:
        _check_url(url, "listen URL")
    cfg.initial_members()
    return cfg
