"""The runtime's request types (from agents.runtime, the interface the kubelet calls) and
the labels the kubelet puts on what it asks the runtime to run."""

from __future__ import annotations

from agents.runtime import ContainerConfig, DnsConfig, Mount, PodSandboxConfig

# Labels the kubelet puts on sandboxes and containers so that, after a restart, it can
# tell which pod (and which container of it) each one belongs to.
POD_UID = "io.kubernetes.pod.uid"
POD_NAME = "io.kubernetes.pod.name"
POD_NAMESPACE = "io.kubernetes.pod.namespace"
CONTAINER_NAME = "io.kubernetes.container.name"
INIT_CONTAINER = "io.lab.container.init"


def labels_of(obj) -> dict:
    """Labels of a runtime sandbox/container status (whatever shape the runtime gives)."""
    labels = getattr(obj, "labels", None)
    if labels is None:
        meta = getattr(obj, "metadata", None)
        labels = getattr(meta, "labels", None) if meta is not None else None
        if labels is None and isinstance(meta, dict):
            labels = meta.get("labels")
    return dict(labels or {})


__all__ = ["ContainerConfig", "DnsConfig", "Mount", "PodSandboxConfig", "POD_UID",
           "POD_NAME", "POD_NAMESPACE", "CONTAINER_NAME", "INIT_CONTAINER", "labels_of"]
