"""Builders of the Kubernetes JSON objects (nodes, pods) that scheduler tests and
benchmarks use; shipped with the package like agents.kube.testing."""


def node(name, cpu="4", memory="8Gi", pods="110", labels=None, taints=None, ready="True",
         unschedulable=False):
    conditions = [] if ready is None else [{"type": "Ready", "status": ready}]
    spec = {}
    if taints:
        spec["taints"] = taints
    if unschedulable:
        spec["unschedulable"] = True
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                                  **(labels or {})}},
            "spec": spec,
            "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": pods},
                       "capacity": {"cpu": cpu, "memory": memory, "pods": pods},
                       "conditions": conditions}}


def pod(name, cpu=None, memory=None, node_name=None, owner=None, namespace="default",
        tolerations=None, node_selector=None, affinity=None, ports=None, phase="Pending",
        extra=None):
    requests = {}
    if cpu is not None:
        requests["cpu"] = cpu
    if memory is not None:
        requests["memory"] = memory
    container = {"name": "c", "image": "busybox", "resources": {"requests": requests}}
    if ports:
        container["ports"] = ports
    spec = {"containers": [container]}
    if node_name:
        spec["nodeName"] = node_name
    if tolerations:
        spec["tolerations"] = tolerations
    if node_selector:
        spec["nodeSelector"] = node_selector
    if affinity is not None:
        spec["affinity"] = {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": affinity}}}
    spec.update(extra or {})
    meta = {"name": name, "namespace": namespace, "uid": f"uid-{namespace}-{name}"}
    if owner:
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                    "name": owner, "uid": f"rs-{owner}", "controller": True}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec,
            "status": {"phase": phase}}


CONTROL_PLANE_TAINT = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}
