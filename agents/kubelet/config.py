"""The kubelet's configuration file (YAML, rendered by roles/kubelet).

    kubeconfig: /etc/lab/kubelet/kubeconfig     # how to reach the API server (node cert)
    node_name: w1
    node_ip: 10.88.0.11                         # InternalIP; the address we serve on
    port: 10250
    tls_cert_file: /etc/lab/pki/kubelet.crt     # serving cert (the node's kubelet cert)
    tls_key_file: /etc/lab/pki/kubelet.key
    client_ca_file: /etc/lab/pki/ca.crt         # callers must present a cert from this CA
    cluster_dns: [10.96.0.10]
    cluster_domain: cluster.local
    kubernetes_service: 10.96.0.1:443           # KUBERNETES_SERVICE_* env of every pod
    service_cidr: 10.96.0.0/12                  # alternative: its first address, port 443
    pod_cidr: ""                                # "" = wait for node.spec.podCIDR
    pod_bridge: lab-pods
    runtime_root: /var/lib/lab/runtime
    image_store: /var/lib/lab/images
    pod_log_dir: /var/log/pods
    state_dir: /var/lib/lab/kubelet             # pod volumes under pods/<uid>/volumes
    podnet_state_dir: /var/lib/lab/podnet
    lab_network: 10.200.1.0/24                  # its first address (the lab machine) is
                                                # unreachable from pods: no route back
    max_pods: 110
    lease_duration_seconds: 40
    lease_renew_seconds: 10
    node_status_seconds: 60
    backoff_initial_seconds: 10
    backoff_max_seconds: 300
    resync_seconds: 10                          # every pod is synced at least this often
    relist_seconds: 1                           # the runtime is listed for changes
    sync_workers: 16                            # pods synced at once
    labels: {}                                  # extra Node labels
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass, field

import yaml


class ConfigError(ValueError):
    pass


@dataclass
class KubeletConfig:
    kubeconfig: str
    node_name: str
    node_ip: str
    port: int = 10250
    bind_address: str = ""              # "" = node_ip
    tls_cert_file: str = ""
    tls_key_file: str = ""
    client_ca_file: str = ""
    cluster_dns: list[str] = field(default_factory=lambda: ["10.96.0.10"])
    cluster_domain: str = "cluster.local"
    kubernetes_service: str = ""        # host:port; "" = first address of service_cidr
    service_cidr: str = "10.96.0.0/12"
    pod_cidr: str = ""
    pod_bridge: str = "lab-pods"
    runtime_root: str = "/var/lib/lab/runtime"
    image_store: str = "/var/lib/lab/images"
    pod_log_dir: str = "/var/log/pods"
    state_dir: str = "/var/lib/lab/kubelet"
    podnet_state_dir: str = "/var/lib/lab/podnet"
    lab_network: str = ""
    max_pods: int = 110
    lease_duration_seconds: int = 40
    lease_renew_seconds: float = 10.0
    node_status_seconds: float = 60.0
    backoff_initial_seconds: float = 10.0
    backoff_max_seconds: float = 300.0
    resync_seconds: float = 10.0        # every pod is synced at least this often
    relist_seconds: float = 1.0         # how often the runtime is listed for changes
    sync_workers: int = 16              # pods synced at once (runtime calls run in threads)
    labels: dict = field(default_factory=dict)

    def __post_init__(self):
        if not self.kubernetes_service:
            try:
                first = ipaddress.ip_network(self.service_cidr)[1]
            except ValueError as exc:
                raise ValueError(f"service_cidr {self.service_cidr!r}: {exc}") from None
            self.kubernetes_service = f"{first}:443"
        if self.lab_network:
            try:
                ipaddress.ip_network(self.lab_network, strict=False)
            except ValueError as exc:
                raise ValueError(f"lab_network {self.lab_network!r}: {exc}") from None

    @property
    def pod_unreachable(self) -> list[str]:
        """CIDRs pods must not reach: the lab machine's address (first of lab_network)."""
        if not self.lab_network:
            return []
        return [f"{ipaddress.ip_network(self.lab_network, strict=False)[1]}/32"]

    @property
    def serve_address(self) -> str:
        return self.bind_address or self.node_ip


def parse_config(doc: dict, where: str = "config") -> KubeletConfig:
    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: expected a mapping of settings at the top level")
    known = {f.name for f in dataclasses.fields(KubeletConfig)}
    unknown = sorted(set(doc) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {', '.join(unknown)} "
                          f"(known: {', '.join(sorted(known))})")
    missing = [k for k in ("kubeconfig", "node_name", "node_ip") if not doc.get(k)]
    if missing:
        raise ConfigError(f"{where}: missing required setting(s) {', '.join(missing)}")
    if isinstance(doc.get("cluster_dns"), str):
        doc = {**doc, "cluster_dns": [doc["cluster_dns"]]}
    try:
        cfg = KubeletConfig(**doc)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if cfg.backoff_initial_seconds <= 0 or cfg.backoff_max_seconds < cfg.backoff_initial_seconds:
        raise ConfigError(f"{where}: need 0 < backoff_initial_seconds <= backoff_max_seconds")
    if cfg.sync_workers < 1:
        raise ConfigError(f"{where}: sync_workers must be 1 or more")
    if bool(cfg.tls_cert_file) != bool(cfg.tls_key_file):
        raise ConfigError(f"{where}: tls_cert_file and tls_key_file go together")
    return cfg


def load_config(path: str) -> KubeletConfig:
    try:
        with open(path) as fh:
            doc = yaml.safe_load(fh) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read kubelet config {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"kubelet config {path} is not valid YAML: {exc}") from None
    return parse_config(doc, path)
