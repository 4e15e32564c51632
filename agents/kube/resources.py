"""Where each resource lives in the REST API: group, version, namespaced or not.

A small fixed table (no discovery): the framework's users only touch these kinds."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote


@dataclass(frozen=True)
class Resource:
    name: str          # plural, as in the URL: "pods"
    kind: str
    group: str         # "" for the core group
    version: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def prefix(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"


def _r(name, kind, group, version, namespaced=True):
    return Resource(name, kind, group, version, namespaced)


RESOURCES: dict[str, Resource] = {r.name: r for r in [
    _r("pods", "Pod", "", "v1"),
    _r("services", "Service", "", "v1"),
    _r("endpoints", "Endpoints", "", "v1"),
    _r("events", "Event", "", "v1"),
    _r("configmaps", "ConfigMap", "", "v1"),
    _r("secrets", "Secret", "", "v1"),
    _r("serviceaccounts", "ServiceAccount", "", "v1"),
    _r("replicationcontrollers", "ReplicationController", "", "v1"),
    _r("persistentvolumeclaims", "PersistentVolumeClaim", "", "v1"),
    _r("nodes", "Node", "", "v1", namespaced=False),
    _r("namespaces", "Namespace", "", "v1", namespaced=False),
    _r("persistentvolumes", "PersistentVolume", "", "v1", namespaced=False),
    _r("deployments", "Deployment", "apps", "v1"),
    _r("replicasets", "ReplicaSet", "apps", "v1"),
    _r("statefulsets", "StatefulSet", "apps", "v1"),
    _r("daemonsets", "DaemonSet", "apps", "v1"),
    _r("controllerrevisions", "ControllerRevision", "apps", "v1"),
    _r("jobs", "Job", "batch", "v1"),
    _r("cronjobs", "CronJob", "batch", "v1"),
    _r("leases", "Lease", "coordination.k8s.io", "v1"),
    _r("endpointslices", "EndpointSlice", "discovery.k8s.io", "v1"),
    _r("poddisruptionbudgets", "PodDisruptionBudget", "policy", "v1"),
]}

_BY_KIND = {r.kind.lower(): r for r in RESOURCES.values()}


def resource(name: str) -> Resource:
    """Look a resource up by plural ("pods"), kind ("Pod") or singular ("pod")."""
    found = RESOURCES.get(name) or _BY_KIND.get(name.lower())
    if found is None:
        raise KeyError(f"unknown resource {name!r}: known are {', '.join(sorted(RESOURCES))}"
                       " (add it to agents/kube/resources.py)")
    return found


def path(res: Resource | str, namespace: str | None = None, name: str | None = None,
         subresource: str | None = None) -> str:
    """The URL path of a collection (name None) or an object, optionally a subresource.

    A namespaced resource listed with namespace None is listed across all namespaces."""
    res = resource(res) if isinstance(res, str) else res
    parts = [res.prefix]
    if res.namespaced and namespace:
        parts.append(f"namespaces/{quote(namespace, safe='')}")
    elif not res.namespaced and namespace:
        raise ValueError(f"{res.name} are cluster-scoped: pass no namespace")
    if res.namespaced and name is not None and not namespace:
        raise ValueError(f"{res.name} are namespaced: pass the namespace of {name!r}")
    parts.append(res.name)
    if name is not None:
        parts.append(quote(name, safe=""))
        if subresource:
            parts.append(subresource)
    elif subresource:
        raise ValueError("a subresource needs an object name")
    return "/".join(parts)


def meta_namespace_key(obj: dict) -> str:
    """The cache key client-go uses: `namespace/name`, or `name` for cluster objects."""
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{meta.get('name', '')}" if ns else meta.get("name", "")


def split_key(key: str) -> tuple[str | None, str]:
    """Inverse of meta_namespace_key: (namespace or None, name)."""
    ns, sep, name = key.partition("/")
    return (ns, name) if sep else (None, ns)
