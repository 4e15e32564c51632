"""Turning a pod and one of its containers into the runtime's configs (pure)."""

from __future__ import annotations

from .config import KubeletConfig
from .cri import (
    CONTAINER_NAME,
    INIT_CONTAINER,
    POD_NAME,
    POD_NAMESPACE,
    POD_UID,
    ContainerConfig,
    DnsConfig,
    PodSandboxConfig,
)
from .envvars import expand
from .quantity import cpu_millis, memory_bytes


def pod_labels(pod: dict) -> dict:
    meta = pod["metadata"]
    return {POD_UID: meta["uid"], POD_NAME: meta["name"], POD_NAMESPACE: meta["namespace"]}


def dns_config(pod: dict, cfg: KubeletConfig, host_resolv: str = "") -> DnsConfig:
    """dnsPolicy ClusterFirst (the default) → the cluster DNS with the pod's search path;
    Default → the host's resolv.conf; None → only spec.dnsConfig."""
    spec = pod.get("spec") or {}
    ns = pod["metadata"]["namespace"]
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    host_network = bool(spec.get("hostNetwork"))
    servers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    cluster = policy == "ClusterFirstWithHostNet" or (policy == "ClusterFirst"
                                                      and not host_network)
    if cluster and cfg.cluster_dns:
        domain = cfg.cluster_domain
        servers = list(cfg.cluster_dns)
        searches = [f"{ns}.svc.{domain}", f"svc.{domain}", domain]
        options = ["ndots:5"]
    elif policy != "None":
        for line in host_resolv.splitlines():
            fields = line.split()
            if len(fields) >= 2 and fields[0] == "nameserver":
                servers.append(fields[1])
            elif fields and fields[0] in ("search", "domain"):
                searches.extend(fields[1:])
    extra = spec.get("dnsConfig") or {}
    servers += [s for s in extra.get("nameservers") or [] if s not in servers]
    searches += [s for s in extra.get("searches") or [] if s not in searches]
    for opt in extra.get("options") or []:
        text = opt["name"] + (f":{opt['value']}" if opt.get("value") else "")
        options = [o for o in options if o.split(":")[0] != opt["name"]] + [text]
    return DnsConfig(servers=servers, searches=searches, options=options)


def sandbox_config(pod: dict, cfg: KubeletConfig, host_resolv: str = "") -> PodSandboxConfig:
    meta, spec = pod["metadata"], pod.get("spec") or {}
    hostname = spec.get("hostname") or meta["name"]
    if spec.get("hostNetwork"):
        hostname = cfg.node_name
    return PodSandboxConfig(uid=meta["uid"], namespace=meta["namespace"], name=meta["name"],
                            hostname=hostname[:63], labels=pod_labels(pod),
                            dns=dns_config(pod, cfg, host_resolv),
                            host_network=bool(spec.get("hostNetwork")))


def find_container(pod: dict, name: str, init: bool) -> dict:
    key = "initContainers" if init else "containers"
    for c in (pod.get("spec") or {}).get(key) or []:
        if c["name"] == name:
            return c
    raise KeyError(f"pod has no {'init ' if init else ''}container {name}")


def container_config(pod: dict, container: dict, *, attempt: int, init: bool,
                     env: list[tuple[str, str]], mounts: list) -> ContainerConfig:
    limits = (container.get("resources") or {}).get("limits") or {}
    env_map = dict(env)
    return ContainerConfig(
        name=container["name"], image=container.get("image", ""),
        command=[expand(a, env_map) for a in container.get("command") or []],
        args=[expand(a, env_map) for a in container.get("args") or []],
        env=list(env), working_dir=container.get("workingDir") or "",
        mounts=list(mounts),
        cpu_millis=cpu_millis(limits["cpu"]) if limits.get("cpu") else 0,
        memory_limit_bytes=memory_bytes(limits["memory"]) if limits.get("memory") else 0,
        attempt=attempt,
        labels={**pod_labels(pod), CONTAINER_NAME: container["name"],
                INIT_CONTAINER: "true" if init else "false"},
        tty=bool(container.get("tty")), stdin=bool(container.get("stdin")))


def referenced_objects(pod: dict) -> tuple[set[str], set[str]]:
    """Names of the ConfigMaps and Secrets the pod's env and volumes use."""
    cms: set[str] = set()
    secrets: set[str] = set()
    spec = pod.get("spec") or {}
    for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        for src in c.get("envFrom") or []:
            if src.get("configMapRef"):
                cms.add(src["configMapRef"].get("name", ""))
            if src.get("secretRef"):
                secrets.add(src["secretRef"].get("name", ""))
        for var in c.get("env") or []:
            ref = var.get("valueFrom") or {}
            if ref.get("configMapKeyRef"):
                cms.add(ref["configMapKeyRef"].get("name", ""))
            if ref.get("secretKeyRef"):
                secrets.add(ref["secretKeyRef"].get("name", ""))
    for vol in spec.get("volumes") or []:
        if vol.get("configMap"):
            cms.add(vol["configMap"].get("name", ""))
        if vol.get("secret"):
            secrets.add(vol["secret"].get("secretName", ""))
        for src in (vol.get("projected") or {}).get("sources") or []:
            if src.get("configMap"):
                cms.add(src["configMap"].get("name", ""))
            if src.get("secret"):
                secrets.add(src["secret"].get("name", ""))
    return cms - {""}, secrets - {""}


def termination_grace(pod: dict) -> int:
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    grace = meta.get("deletionGracePeriodSeconds")
    if grace is None:
        grace = spec.get("terminationGracePeriodSeconds")
    return 30 if grace is None else max(0, int(grace))


_BOOKKEEPING = ("resourceVersion", "managedFields")


def needs_sync(old: dict, new: dict) -> bool:
    """Whether an update of a pod can change what the kubelet should do: anything but
    its status and bookkeeping. Most updates are the kubelet's own status writes coming
    back; a sync for each would cost CPU and, like the real kubelet, the times of its
    syncs (e.g. ImagePullBackOff) must not depend on when they echo back."""
    def what_runs(pod: dict) -> dict:
        meta = {k: v for k, v in (pod.get("metadata") or {}).items() if k not in _BOOKKEEPING}
        return {**{k: v for k, v in pod.items() if k != "status"}, "metadata": meta}
    return what_runs(old) != what_runs(new)
