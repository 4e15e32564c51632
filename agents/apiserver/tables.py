"""Server-side printing: `meta.k8s.io/v1` Tables with the printer columns kubectl shows
(priority 1 columns appear with `-o wide`). Pure, given `now`."""

from __future__ import annotations

from datetime import UTC, datetime


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def human_duration(seconds: float) -> str:
    """Kubernetes' HumanDuration."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    h = m // 60
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    d = h // 24
    if h < 24 * 8:
        return f"{d}d{h % 24}h" if h % 24 else f"{d}d"
    if h < 24 * 365 * 2:
        return f"{d}d"
    y = d // 365
    if h < 24 * 365 * 8:
        return f"{y}y{d % 365}d" if d % 365 else f"{y}y"
    return f"{y}y"


def age(obj: dict, now: datetime, field: str = "creationTimestamp") -> str:
    t = parse_time((obj.get("metadata") or {}).get(field))
    return human_duration((now - t).total_seconds()) if t else "<unknown>"


def _col(name: str, type_: str = "string", priority: int = 0, fmt: str = "",
         description: str = "") -> dict:
    return {"name": name, "type": type_, "format": fmt, "description": description or name,
            "priority": priority}


NAME = _col("Name", fmt="name", description="Name must be unique within a namespace.")
AGE = _col("Age", description="CreationTimestamp is a timestamp representing the server "
                              "time when this object was created.")


def _pod_status(pod: dict) -> str:
    status = pod.get("status") or {}
    reason = status.get("reason") or status.get("phase") or "Pending"
    for cs in status.get("initContainerStatuses") or []:
        state = cs.get("state") or {}
        if (state.get("terminated") or {}).get("exitCode", 0) == 0 and "terminated" in state:
            continue
        if "waiting" in state and state["waiting"].get("reason") not in (None, "PodInitializing"):
            reason = "Init:" + state["waiting"]["reason"]
            break
    for cs in reversed(status.get("containerStatuses") or []):
        state = cs.get("state") or {}
        if (state.get("waiting") or {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif (state.get("terminated") or {}).get("reason"):
            reason = state["terminated"]["reason"]
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        reason = "Unknown" if status.get("reason") == "NodeLost" else "Terminating"
    return reason


def _pod(pod: dict, now: datetime) -> list:
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    statuses = status.get("containerStatuses") or []
    ready = sum(1 for c in statuses if c.get("ready"))
    restarts = sum(int(c.get("restartCount", 0)) for c in statuses)
    gates = spec.get("readinessGates") or []
    return [pod["metadata"]["name"], f"{ready}/{len(spec.get('containers') or [])}",
            _pod_status(pod), restarts, age(pod, now), status.get("podIP") or "<none>",
            spec.get("nodeName") or "<none>", status.get("nominatedNodeName") or "<none>",
            f"{len(gates)}/{len(gates)}" if gates else "<none>"]


def _node(node: dict, now: datetime) -> list:
    status, spec = node.get("status") or {}, node.get("spec") or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    state = "Ready" if ready and ready.get("status") == "True" else (
        "NotReady" if ready else "Unknown")
    if spec.get("unschedulable"):
        state += ",SchedulingDisabled"
    labels = (node.get("metadata") or {}).get("labels") or {}
    roles = sorted(k.split("/", 1)[1] for k in labels
                   if k.startswith("node-role.kubernetes.io/") and "/" in k)
    info = status.get("nodeInfo") or {}
    addrs = status.get("addresses") or []

    def addr(kind):
        return next((a["address"] for a in addrs if a.get("type") == kind), "<none>")
    return [node["metadata"]["name"], state, ",".join(roles) or "<none>", age(node, now),
            info.get("kubeletVersion", ""), addr("InternalIP"), addr("ExternalIP"),
            info.get("osImage", "<unknown>"), info.get("kernelVersion", "<unknown>"),
            info.get("containerRuntimeVersion", "<unknown>")]


def _ports(svc_spec: dict) -> str:
    parts = []
    for p in svc_spec.get("ports") or []:
        text = str(p.get("port"))
        if p.get("nodePort"):
            text += f":{p['nodePort']}"
        parts.append(f"{text}/{p.get('protocol', 'TCP')}")
    return ",".join(parts) or "<none>"


def _selector(sel: dict | None) -> str:
    if not sel:
        return "<none>"
    if "matchLabels" in sel or "matchExpressions" in sel:
        parts = [f"{k}={v}" for k, v in (sel.get("matchLabels") or {}).items()]
        for e in sel.get("matchExpressions") or []:
            parts.append(f"{e['key']} {e['operator'].lower()} ({','.join(e.get('values') or [])})")
        return ",".join(parts) or "<none>"
    return ",".join(f"{k}={v}" for k, v in sel.items())


def _service(svc: dict, now: datetime) -> list:
    spec = svc.get("spec") or {}
    ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    external = spec.get("externalIPs") or [i.get("ip") for i in ingress if i.get("ip")]
    ext = ",".join(external) or ("<pending>" if spec.get("type") == "LoadBalancer" else "<none>")
    if spec.get("type") == "ExternalName":
        ext = spec.get("externalName", "<none>")
    return [svc["metadata"]["name"], spec.get("type", "ClusterIP"),
            spec.get("clusterIP") or "<none>", ext, _ports(spec), age(svc, now),
            _selector(spec.get("selector"))]


def _endpoints(ep: dict, now: datetime) -> list:
    items = []
    for subset in ep.get("subsets") or []:
        for a in subset.get("addresses") or []:
            for p in subset.get("ports") or [{}]:
                items.append(f"{a.get('ip')}:{p['port']}" if "port" in p else a.get("ip"))
    text = ",".join(items[:3]) + (f" + {len(items) - 3} more..." if len(items) > 3 else "")
    return [ep["metadata"]["name"], text or "<none>", age(ep, now)]


def _containers_images(template_spec: dict) -> tuple[str, str]:
    cs = template_spec.get("containers") or []
    return ",".join(c.get("name", "") for c in cs), ",".join(c.get("image", "") for c in cs)


def _deployment(d: dict, now: datetime) -> list:
    spec, status = d.get("spec") or {}, d.get("status") or {}
    names, images = _containers_images((spec.get("template") or {}).get("spec") or {})
    return [d["metadata"]["name"],
            f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 1)}",
            status.get("updatedReplicas", 0), status.get("availableReplicas", 0), age(d, now),
            names, images, _selector(spec.get("selector"))]


def _replicaset(rs: dict, now: datetime) -> list:
    spec, status = rs.get("spec") or {}, rs.get("status") or {}
    names, images = _containers_images((spec.get("template") or {}).get("spec") or {})
    return [rs["metadata"]["name"], spec.get("replicas", 1), status.get("replicas", 0),
            status.get("readyReplicas", 0), age(rs, now), names, images,
            _selector(spec.get("selector"))]


def _daemonset(ds: dict, now: datetime) -> list:
    spec, status = ds.get("spec") or {}, ds.get("status") or {}
    tspec = (spec.get("template") or {}).get("spec") or {}
    names, images = _containers_images(tspec)
    return [ds["metadata"]["name"], status.get("desiredNumberScheduled", 0),
            status.get("currentNumberScheduled", 0), status.get("numberReady", 0),
            status.get("updatedNumberScheduled", 0), status.get("numberAvailable", 0),
            _selector(tspec.get("nodeSelector")), age(ds, now), names, images,
            _selector(spec.get("selector"))]


def _event(ev: dict, now: datetime) -> list:
    last = parse_time(ev.get("lastTimestamp") or ev.get("eventTime")
                      or (ev.get("metadata") or {}).get("creationTimestamp"))
    first = parse_time(ev.get("firstTimestamp") or ev.get("eventTime"))
    obj = ev.get("involvedObject") or {}
    src = ev.get("source") or {}
    source = src.get("component", ev.get("reportingComponent", ""))
    if src.get("host"):
        source += f", {src['host']}"
    return [human_duration((now - last).total_seconds()) if last else "<unknown>",
            ev.get("type", ""), ev.get("reason", ""),
            f"{obj.get('kind', '').lower()}/{obj.get('name', '')}", ev.get("message", ""),
            obj.get("fieldPath", ""), source,
            human_duration((now - first).total_seconds()) if first else "<unknown>",
            ev.get("count", 1), ev["metadata"]["name"]]


COLUMNS: dict[str, tuple[list[dict], object]] = {
    "Pod": ([NAME, _col("Ready"), _col("Status"), _col("Restarts", "integer"), AGE,
             _col("IP", priority=1), _col("Node", priority=1),
             _col("Nominated Node", priority=1), _col("Readiness Gates", priority=1)], _pod),
    "Namespace": ([NAME, _col("Status"), AGE], lambda o, now: [
        o["metadata"]["name"], (o.get("status") or {}).get("phase", ""), age(o, now)]),
    "Node": ([NAME, _col("Status"), _col("Roles"), AGE, _col("Version"),
              _col("Internal-IP", priority=1), _col("External-IP", priority=1),
              _col("OS-Image", priority=1), _col("Kernel-Version", priority=1),
              _col("Container-Runtime", priority=1)], _node),
    "Service": ([NAME, _col("Type"), _col("Cluster-IP"), _col("External-IP"),
                 _col("Port(s)"), AGE, _col("Selector", priority=1)], _service),
    "Endpoints": ([NAME, _col("Endpoints"), AGE], _endpoints),
    "ConfigMap": ([NAME, _col("Data", "integer"), AGE], lambda o, now: [
        o["metadata"]["name"], len(o.get("data") or {}) + len(o.get("binaryData") or {}),
        age(o, now)]),
    "Secret": ([NAME, _col("Type"), _col("Data", "integer"), AGE], lambda o, now: [
        o["metadata"]["name"], o.get("type", ""), len(o.get("data") or {}), age(o, now)]),
    "ServiceAccount": ([NAME, _col("Secrets", "integer"), AGE], lambda o, now: [
        o["metadata"]["name"], len(o.get("secrets") or []), age(o, now)]),
    "Deployment": ([NAME, _col("Ready"), _col("Up-to-date", "integer"),
                    _col("Available", "integer"), AGE, _col("Containers", priority=1),
                    _col("Images", priority=1), _col("Selector", priority=1)], _deployment),
    "ReplicaSet": ([NAME, _col("Desired", "integer"), _col("Current", "integer"),
                    _col("Ready", "integer"), AGE, _col("Containers", priority=1),
                    _col("Images", priority=1), _col("Selector", priority=1)], _replicaset),
    "DaemonSet": ([NAME, _col("Desired", "integer"), _col("Current", "integer"),
                   _col("Ready", "integer"), _col("Up-to-date", "integer"),
                   _col("Available", "integer"), _col("Node Selector"), AGE,
                   _col("Containers", priority=1), _col("Images", priority=1),
                   _col("Selector", priority=1)], _daemonset),
    "Event": ([_col("Last Seen"), _col("Type"), _col("Reason"), _col("Object"),
               _col("Message"), _col("Subobject", priority=1), _col("Source", priority=1),
               _col("First Seen", priority=1), _col("Count", "integer", priority=1),
               _col("Name", priority=1)], _event),
    "Lease": ([NAME, _col("Holder"), AGE], lambda o, now: [
        o["metadata"]["name"], (o.get("spec") or {}).get("holderIdentity", ""), age(o, now)]),
}


def _row_object(obj: dict, include: str) -> dict | None:
    if include == "None":
        return None
    if include == "Object":
        return obj
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata", {})}


def table(kind: str, objects: list[dict], now: datetime, resource_version: str = "",
          include: str = "Metadata", continue_token: str = "") -> dict:
    columns, cells = COLUMNS.get(kind, ([NAME, AGE], lambda o, n: [o["metadata"]["name"],
                                                                    age(o, n)]))
    rows = []
    for obj in objects:
        row = {"cells": cells(obj, now)}
        ro = _row_object(obj, include)
        if ro is not None:
            row["object"] = ro
        rows.append(row)
    meta = {"resourceVersion": resource_version}
    if continue_token:
        meta["continue"] = continue_token
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta,
            "columnDefinitions": columns, "rows": rows}
