"""The `kube-system/kube-dns` Service and this server's address in its Endpoints, kept
the way the API server keeps the `kubernetes` Service: created if missing, our address
added on start (and again whenever it disappears), removed on stop. Several DNS servers
(one per node) share the object; every write is a compare-and-swap on resourceVersion,
retried on conflict.

The object edits are pure functions; `Registrar` does the API calls.
"""

from __future__ import annotations

import asyncio
import copy
import logging

from agents.kube.errors import AlreadyExists, Conflict, NotFound

log = logging.getLogger(__name__)

NAMESPACE, NAME = "kube-system", "kube-dns"
LABELS = {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true",
          "kubernetes.io/name": "KubeDNS"}


def desired_service(cluster_ip: str) -> dict:
    """A selector-less Service: its Endpoints are ours to write, not the controller's."""
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": dict(LABELS)},
            "spec": {"clusterIP": cluster_ip, "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53}]}}


def endpoint_ports(port: int) -> list[dict]:
    return [{"name": "dns", "port": port, "protocol": "UDP"},
            {"name": "dns-tcp", "port": port, "protocol": "TCP"}]


def _ports_key(ports) -> tuple:
    return tuple(sorted((p.get("name", ""), p.get("port"), p.get("protocol", "TCP"))
                        for p in ports or []))


def with_address(endpoints: dict, ip: str, port: int) -> dict | None:
    """Pure: `endpoints` with ip:port listed (None when it already is). A server on
    another port goes into its own subset (a subset's addresses share its ports)."""
    ports = endpoint_ports(port)
    subsets = copy.deepcopy(endpoints.get("subsets") or [])
    for subset in subsets:
        if _ports_key(subset.get("ports")) == _ports_key(ports):
            if any(a.get("ip") == ip for a in subset.get("addresses") or []):
                return None
            subset.setdefault("addresses", []).append({"ip": ip})
            subset["addresses"].sort(key=lambda a: a.get("ip", ""))
            break
    else:
        subsets.append({"addresses": [{"ip": ip}], "ports": ports})
    return {**endpoints, "subsets": subsets}


def without_address(endpoints: dict, ip: str, port: int) -> dict | None:
    """Pure: `endpoints` without ip:port (None when it was not listed)."""
    key, changed, subsets = _ports_key(endpoint_ports(port)), False, []
    for subset in copy.deepcopy(endpoints.get("subsets") or []):
        if _ports_key(subset.get("ports")) == key:
            kept = [a for a in subset.get("addresses") or [] if a.get("ip") != ip]
            changed |= len(kept) != len(subset.get("addresses") or [])
            subset["addresses"] = kept
        if subset.get("addresses") or subset.get("notReadyAddresses"):
            subsets.append(subset)
    return {**endpoints, "subsets": subsets} if changed else None


class Registrar:
    def __init__(self, api, cluster_ip: str, ip: str | None, port: int):
        self.api, self.cluster_ip, self.ip, self.port = api, cluster_ip, ip, port

    async def ensure_service(self) -> None:
        try:
            current = await self.api.get("services", NAME, NAMESPACE)
        except NotFound:
            try:
                await self.api.create("services", desired_service(self.cluster_ip),
                                      NAMESPACE)
                log.info("created Service %s/%s with ClusterIP %s", NAMESPACE, NAME,
                         self.cluster_ip)
            except AlreadyExists:
                pass  # another node's DNS server was quicker
            return
        have = (current.get("spec") or {}).get("clusterIP")
        if have != self.cluster_ip:
            # A ClusterIP cannot change in place; say so instead of fighting over it.
            log.warning("Service %s/%s has ClusterIP %s, not %s as configured: pods' "
                        "resolv.conf must point at %s", NAMESPACE, NAME, have,
                        self.cluster_ip, have)

    async def _edit_endpoints(self, edit) -> bool:
        """Apply edit(current) → new or None, with compare-and-swap retries."""
        for _ in range(20):
            try:
                current = await self.api.get("endpoints", NAME, NAMESPACE)
            except NotFound:
                base = {"apiVersion": "v1", "kind": "Endpoints",
                        "metadata": {"name": NAME, "namespace": NAMESPACE,
                                     "labels": dict(LABELS)}, "subsets": []}
                new = edit(base)
                if new is None:
                    return False
                try:
                    await self.api.create("endpoints", new, NAMESPACE)
                    return True
                except AlreadyExists:
                    continue
            new = edit(current)
            if new is None:
                return False
            try:
                await self.api.update("endpoints", new)
                return True
            except Conflict:
                await asyncio.sleep(0.05)
        raise RuntimeError(f"could not update endpoints {NAMESPACE}/{NAME}: it kept "
                           "changing under us (20 conflicts)")

    async def register(self) -> bool:
        """Service present and our address listed. True if anything was written."""
        await self.ensure_service()
        if not self.ip:
            return False
        wrote = await self._edit_endpoints(lambda e: with_address(e, self.ip, self.port))
        if wrote:
            log.info("listed %s:%d in endpoints %s/%s", self.ip, self.port, NAMESPACE, NAME)
        return wrote

    async def deregister(self) -> bool:
        if not self.ip:
            return False
        wrote = await self._edit_endpoints(
            lambda e: without_address(e, self.ip, self.port))
        if wrote:
            log.info("removed %s:%d from endpoints %s/%s", self.ip, self.port, NAMESPACE,
                     NAME)
        return wrote

    def listed_in(self, endpoints: dict | None) -> bool:
        return endpoints is not None and with_address(endpoints, self.ip, self.port) is None
