"""The Node and Lease objects the kubelet writes: pure functions of (host facts, config,
time). `read_host_facts()` is the only I/O here."""

from __future__ import annotations

import os
import platform
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from agents.kube.leaderelection import format_microtime

KUBELET_VERSION = "v1.32.0-lab"
NODE_LEASE_NAMESPACE = "kube-node-lease"
ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
        "s390x": "s390x"}


@dataclass(frozen=True)
class HostFacts:
    cpus: int
    memory_kib: int
    machine_id: str
    system_uuid: str
    boot_id: str
    kernel_version: str
    os_image: str
    architecture: str


def _read(path: str) -> str:
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return ""


def parse_meminfo(text: str) -> int:
    """MemTotal in KiB from /proc/meminfo."""
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1])
    raise ValueError("no MemTotal line in /proc/meminfo")


def parse_os_release(text: str) -> str:
    for line in text.splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.partition("=")[2].strip().strip('"')
    return "Linux"


def read_host_facts() -> HostFacts:
    machine_id = _read("/etc/machine-id") or uuid.uuid5(uuid.NAMESPACE_DNS,
                                                        platform.node()).hex
    # product_uuid is root-only and absent in containers: derive one from the machine id.
    system_uuid = _read("/sys/class/dmi/id/product_uuid").lower() or str(
        uuid.UUID(machine_id[:32].ljust(32, "0")))
    return HostFacts(
        cpus=os.cpu_count() or 1,
        memory_kib=parse_meminfo(_read("/proc/meminfo")),
        machine_id=machine_id,
        system_uuid=system_uuid,
        boot_id=_read("/proc/sys/kernel/random/boot_id") or machine_id,
        kernel_version=platform.release(),
        os_image=parse_os_release(_read("/etc/os-release")),
        architecture=ARCH.get(platform.machine(), platform.machine()),
    )


def now_rfc3339(t: datetime | None = None) -> str:
    return (t or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


def node_labels(name: str, facts: HostFacts, extra: dict | None = None) -> dict:
    return {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
            "kubernetes.io/arch": facts.architecture,
            "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": facts.architecture,
            **(extra or {})}


def conditions(now: str, ready: bool = True, ready_message: str = "",
               previous: list[dict] | None = None) -> list[dict]:
    """The four conditions; lastTransitionTime kept from `previous` when unchanged."""
    before = {c.get("type"): c for c in previous or []}
    wanted = [
        ("MemoryPressure", "False", "KubeletHasSufficientMemory",
         "kubelet has sufficient memory available"),
        ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        ("Ready", "True" if ready else "False", "KubeletReady" if ready else "KubeletNotReady",
         ready_message or ("kubelet is posting ready status" if ready
                           else "container runtime network not ready")),
    ]
    out = []
    for kind, status, reason, message in wanted:
        old = before.get(kind) or {}
        since = old.get("lastTransitionTime") if old.get("status") == status else None
        out.append({"type": kind, "status": status, "reason": reason, "message": message,
                    "lastHeartbeatTime": now, "lastTransitionTime": since or now})
    return out


def node_status(facts: HostFacts, *, node_ip: str, hostname: str, port: int,
                max_pods: int, runtime_version: str, now: str, ready: bool = True,
                ready_message: str = "", previous: dict | None = None,
                images: list[dict] | None = None) -> dict:
    resources = {"cpu": str(facts.cpus), "memory": f"{facts.memory_kib}Ki",
                 "pods": str(max_pods), "ephemeral-storage": "10Gi"}
    status = {
        "capacity": dict(resources), "allocatable": dict(resources),
        "conditions": conditions(now, ready, ready_message,
                                 (previous or {}).get("conditions")),
        "addresses": [{"type": "InternalIP", "address": node_ip},
                      {"type": "Hostname", "address": hostname}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
        "nodeInfo": {
            "machineID": facts.machine_id, "systemUUID": facts.system_uuid,
            "bootID": facts.boot_id, "kernelVersion": facts.kernel_version,
            "osImage": facts.os_image, "containerRuntimeVersion": runtime_version,
            "kubeletVersion": KUBELET_VERSION, "kubeProxyVersion": KUBELET_VERSION,
            "operatingSystem": "linux", "architecture": facts.architecture},
    }
    if images is not None:
        status["images"] = images
    return status


def node_object(name: str, facts: HostFacts, labels: dict | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": node_labels(name, facts, labels),
                         "annotations": {"node.alpha.kubernetes.io/ttl": "0"}},
            "spec": {}}


def lease_spec(holder: str, duration: int, now: datetime | None = None) -> dict:
    return {"holderIdentity": holder, "leaseDurationSeconds": duration,
            "renewTime": format_microtime(now or datetime.now(UTC))}


def lease_object(name: str, duration: int, node_uid: str | None = None) -> dict:
    meta: dict = {"name": name, "namespace": NODE_LEASE_NAMESPACE}
    if node_uid:  # the Node owns its Lease: deleting the Node collects it
        meta["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": name,
                                    "uid": node_uid}]
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta,
            "spec": lease_spec(name, duration)}
