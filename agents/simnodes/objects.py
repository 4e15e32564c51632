"""The objects a simulated kubelet writes, as pure functions of (node index, pod, time).

Addresses (never routed anywhere; they only have to be unique and well-formed):
- node i (0-based) has InternalIP 172.16.0.0/12 + i + 1 and pod CIDR
  10.128.0.0/9 split into /24s: node i gets 10.(128 + i // 256).(i % 256).0/24,
  room for 32,768 nodes of 253 pods each.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import uuid
from datetime import UTC, datetime

from agents.kube.leaderelection import format_microtime

NODE_LEASE_NAMESPACE = "kube-node-lease"
KUBELET_VERSION = "v1.32.0-sim"
POD_CIDR_BASE = ipaddress.ip_network("10.128.0.0/9")
NODE_IP_BASE = ipaddress.ip_address("172.16.0.0")
MAX_NODES = 2 ** (24 - 9)


def now_rfc3339(t: datetime | None = None) -> str:
    return (t or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _check_index(index: int) -> None:
    if not 0 <= index < MAX_NODES:
        raise ValueError(f"node index {index} out of range: at most {MAX_NODES} "
                         "simulated nodes")


@functools.cache  # ipaddress is slow; every pod start asks
def pod_cidr(index: int) -> ipaddress.IPv4Network:
    _check_index(index)
    return ipaddress.ip_network((int(POD_CIDR_BASE.network_address) + index * 256, 24))


def node_ip(index: int) -> str:
    _check_index(index)
    return str(NODE_IP_BASE + index + 1)


def pod_ip(index: int, slot: int) -> str:
    """Address number `slot` (0-based) of node `index`'s pod CIDR (skipping .0 and .1)."""
    if not 0 <= slot < 253:
        raise ValueError(f"pod address slot {slot} out of range (0..252)")
    return str(pod_cidr(index).network_address + slot + 2)


def _stable_id(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:32]


def ready_condition(now: str, status: str = "True") -> dict:
    return {"type": "Ready", "status": status, "reason": "KubeletReady",
            "message": "kubelet is posting ready status (simulated)",
            "lastHeartbeatTime": now, "lastTransitionTime": now}


def node_object(name: str, index: int, *, cpu: str, memory: str, pods: str,
                labels: dict | None = None) -> dict:
    """A Node with spec and status filled in as a kubelet registers it."""
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {
                "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64", "type": "simulated", **(labels or {})},
                "annotations": {"node.alpha.kubernetes.io/ttl": "0"}},
            "spec": {"podCIDR": str(pod_cidr(index)), "podCIDRs": [str(pod_cidr(index))]},
            "status": node_status(name, index, cpu=cpu, memory=memory, pods=pods)}


def node_status(name: str, index: int, *, cpu: str, memory: str, pods: str,
                now: str | None = None) -> dict:
    now = now or now_rfc3339()
    resources = {"cpu": cpu, "memory": memory, "pods": pods, "ephemeral-storage": "100Gi"}
    pressure = [{"type": kind, "status": "False", "reason": reason,
                 "message": f"kubelet has {text}", "lastHeartbeatTime": now,
                 "lastTransitionTime": now}
                for kind, reason, text in (
                    ("MemoryPressure", "KubeletHasSufficientMemory", "sufficient memory"),
                    ("DiskPressure", "KubeletHasNoDiskPressure", "no disk pressure"),
                    ("PIDPressure", "KubeletHasSufficientPID", "sufficient PID"))]
    return {"capacity": dict(resources), "allocatable": dict(resources),
            "conditions": [*pressure, ready_condition(now)],
            "addresses": [{"type": "InternalIP", "address": node_ip(index)},
                          {"type": "Hostname", "address": name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {"machineID": _stable_id("machine", name),
                         "systemUUID": str(uuid.UUID(_stable_id("uuid", name))),
                         "bootID": _stable_id("boot", name),
                         "kernelVersion": "6.1.0-sim", "osImage": "Simulated Linux",
                         "containerRuntimeVersion": "sim://1.0.0",
                         "kubeletVersion": KUBELET_VERSION,
                         "kubeProxyVersion": KUBELET_VERSION,
                         "operatingSystem": "linux", "architecture": "amd64"},
            "phase": "Running"}


def lease_spec(holder: str, duration: int, now: datetime | None = None) -> dict:
    return {"holderIdentity": holder, "leaseDurationSeconds": duration,
            "renewTime": format_microtime(now or datetime.now(UTC))}


def lease_object(name: str, duration: int, node_uid: str | None = None,
                 now: datetime | None = None) -> dict:
    meta: dict = {"name": name, "namespace": NODE_LEASE_NAMESPACE}
    if node_uid:  # the Node owns its Lease: deleting the Node collects the Lease
        meta["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": name,
                                    "uid": node_uid}]
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta,
            "spec": lease_spec(name, duration, now)}


def is_running_here(pod: dict) -> bool:
    """Has this pod already been reported Running with an address?"""
    status = pod.get("status") or {}
    return status.get("phase") == "Running" and bool(status.get("podIP"))


def running_status(pod: dict, host_ip: str, ip: str, now: str | None = None) -> dict:
    """The status a kubelet reports once every container of the pod has started."""
    now = now or now_rfc3339()
    spec = pod.get("spec") or {}
    conditions = [{"type": kind, "status": "True", "lastProbeTime": None,
                   "lastTransitionTime": now}
                  for kind in ("PodReadyToStartContainers", "Initialized", "Ready",
                               "ContainersReady", "PodScheduled")]
    uid = (pod.get("metadata") or {}).get("uid") or ""
    containers = [{"name": c["name"], "image": c.get("image", ""),
                   "imageID": f"sim://{c.get('image', '')}",
                   "containerID": f"sim://{_stable_id(uid, c['name'])}",
                   "ready": True, "started": True, "restartCount": 0,
                   "state": {"running": {"startedAt": now}}}
                  for c in spec.get("containers") or []]
    status = {"phase": "Running", "conditions": conditions, "hostIP": host_ip,
              "hostIPs": [{"ip": host_ip}], "podIP": ip, "podIPs": [{"ip": ip}],
              "startTime": now, "containerStatuses": containers}
    qos = (pod.get("status") or {}).get("qosClass")
    if qos:
        status["qosClass"] = qos
    return status
