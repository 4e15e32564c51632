"""The Endpoints controller: for each Service with a selector, an Endpoints object of the
same name listing the matching pods' addresses — ready ones under `addresses`, the others
under `notReadyAddresses` (all under `addresses` with publishNotReadyAddresses) — and the
Service's ports with each targetPort resolved (a number, or a container port's name
looked up in each pod). Pods without an IP, finished or being deleted are left out.
Services without a selector are left alone (their Endpoints are the user's)."""

from __future__ import annotations

import contextlib

from agents.kube.errors import AlreadyExists, NotFound
from agents.kube.resources import meta_namespace_key

from .base import QueueController
from .objects import is_active_pod, is_pod_ready


def _selector_matches(selector: dict, labels: dict | None) -> bool:
    labels = labels or {}
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _target_port(service_port: dict, pod: dict) -> int | None:
    target = service_port.get("targetPort", service_port.get("port"))
    if isinstance(target, int) or (isinstance(target, str) and target.isdigit()):
        return int(target)
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == target and \
                    port.get("protocol", "TCP") == service_port.get("protocol", "TCP"):
                return int(port["containerPort"])
    return None


def endpoint_subsets(service: dict, pods: list[dict]) -> list[dict]:
    """Subsets grouped by identical resolved ports, addresses sorted by IP (stable, so an
    unchanged set of pods gives an equal object and no write)."""
    spec = service.get("spec") or {}
    publish_not_ready = bool(spec.get("publishNotReadyAddresses"))
    groups: dict[tuple, dict] = {}
    for pod in pods:
        ip = (pod.get("status") or {}).get("podIP")
        if not ip or not is_active_pod(pod):
            continue
        ports = []
        for sp in spec.get("ports") or []:
            number = _target_port(sp, pod)
            if number is None:
                continue
            port = {"port": number, "protocol": sp.get("protocol", "TCP")}
            if sp.get("name"):
                port["name"] = sp["name"]
            ports.append(port)
        if spec.get("ports") and not ports:
            continue
        meta = pod["metadata"]
        address = {"ip": ip, "targetRef": {"kind": "Pod", "namespace": meta["namespace"],
                                           "name": meta["name"], "uid": meta.get("uid")}}
        if (pod.get("spec") or {}).get("nodeName"):
            address["nodeName"] = pod["spec"]["nodeName"]
        key = tuple(sorted((p.get("name", ""), p["port"], p["protocol"]) for p in ports))
        group = groups.setdefault(key, {"ports": ports, "addresses": [],
                                        "notReadyAddresses": []})
        ready = publish_not_ready or is_pod_ready(pod)
        group["addresses" if ready else "notReadyAddresses"].append(address)
    subsets = []
    for key in sorted(groups):
        group = groups[key]
        subset = {}
        for field in ("addresses", "notReadyAddresses"):
            if group[field]:
                subset[field] = sorted(group[field], key=lambda a: (a["ip"],
                                                                    a["targetRef"]["name"]))
        if group["ports"]:
            subset["ports"] = sorted(group["ports"], key=lambda p: (p.get("name", ""),
                                                                    p["port"]))
        subsets.append(subset)
    return subsets


class EndpointsController(QueueController):
    name = "endpoints-controller"

    def __init__(self, api, services, endpoints, pods, events=None):
        super().__init__(api, events)
        self.services, self.endpoints, self.pods = services, endpoints, pods
        services.add_handler(self._enqueue, lambda _o, n: self._enqueue(n), self._enqueue)
        pods.add_handler(self._pod_changed, self._pod_updated, self._pod_changed)

    def _enqueue(self, obj: dict) -> None:
        self.queue.add(meta_namespace_key(obj))

    def _pod_changed(self, pod: dict) -> None:
        for svc in self.services.store.by_index("namespace", pod["metadata"]["namespace"]):
            if _selector_matches((svc.get("spec") or {}).get("selector") or {},
                                 pod["metadata"].get("labels")):
                self._enqueue(svc)

    def _pod_updated(self, old: dict, new: dict) -> None:
        self._pod_changed(new)
        if old["metadata"].get("labels") != new["metadata"].get("labels"):
            self._pod_changed(old)

    async def sync(self, key: str) -> None:
        ns, _, name = key.partition("/")
        service = self.services.store.get(key)
        current = self.endpoints.store.get(key)
        if service is None:
            if current is not None:
                with contextlib.suppress(NotFound):
                    await self.api.delete("endpoints", name, ns)
            return
        selector = (service.get("spec") or {}).get("selector")
        if not selector:
            return
        pods = [p for p in self.pods.store.by_index("namespace", ns)
                if _selector_matches(selector, p["metadata"].get("labels"))]
        subsets = endpoint_subsets(service, pods)
        labels = dict(service["metadata"].get("labels") or {})
        if (service.get("spec") or {}).get("clusterIP") == "None":
            labels["service.kubernetes.io/headless"] = ""
        if current is not None and (current.get("subsets") or []) == subsets and \
                (current["metadata"].get("labels") or {}) == labels:
            return
        body = {"apiVersion": "v1", "kind": "Endpoints",
                "metadata": {"name": name, "namespace": ns, "labels": labels},
                "subsets": subsets}
        if current is None:
            try:
                await self.api.create("endpoints", body, ns)
                return
            except AlreadyExists:
                current = await self.api.get("endpoints", name, ns)
        await self.api.update("endpoints", {**current, "metadata": {
            **current["metadata"], "labels": labels}, "subsets": subsets})
