"""The simulated kubelets of N nodes, in one process.

- Registration: create each Node (or adopt an existing one of that name) and write its
  status; create its Lease in kube-node-lease.
- Heartbeat: renew every Lease each `renew_interval` (a quarter of the lease
  duration, as the kubelet does), a bounded number of writes at a time.
- Pods: one informer over all pods, indexed by spec.nodeName; handlers enqueue only pods
  bound to our nodes; a few workers run `sync(key)`: a pod being deleted is deleted with
  grace 0 (its "containers" stopped at once); any other pod not yet Running gets a
  Running status with an address from its node's CIDR.
- Node status: a node informer notices when one of our nodes is reported anything but
  Ready (the node lifecycle controller marks a node Unknown when its Lease went stale,
  e.g. while this process was stopped) and posts a fresh Ready status, as a kubelet that
  is back does.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging

from agents.kube.controller import process_next
from agents.kube.errors import AlreadyExists, ApiError, Conflict, NotFound
from agents.kube.informer import Informer, pods_by_node
from agents.kube.resources import meta_namespace_key
from agents.kube.workqueue import ExponentialBackoff, WorkQueue

from . import objects

log = logging.getLogger(__name__)


class PodAddresses:
    """Which address slots of each node's pod CIDR are taken, by pod key."""

    def __init__(self):
        self._used: dict[str, set[int]] = {}
        self._by_pod: dict[str, tuple[str, int]] = {}

    def allocate(self, key: str, node: str) -> int:
        held = self._by_pod.get(key)
        if held and held[0] == node:
            return held[1]
        self.release(key)
        used = self._used.setdefault(node, set())
        slot = next((s for s in range(253) if s not in used), None)
        if slot is None:
            raise RuntimeError(f"node {node}: its /24 pod CIDR has no free address")
        used.add(slot)
        self._by_pod[key] = (node, slot)
        return slot

    def claim(self, key: str, node: str, slot: int) -> None:
        """Record an address a pod already has (after a restart of this process)."""
        self._used.setdefault(node, set()).add(slot)
        self._by_pod[key] = (node, slot)

    def release(self, key: str) -> None:
        held = self._by_pod.pop(key, None)
        if held:
            self._used.get(held[0], set()).discard(held[1])


class SimNodes:
    def __init__(self, api, count: int, *, prefix: str = "sim-", first_index: int = 0,
                 cpu: str = "32", memory: str = "256Gi", pods: str = "110",
                 lease_duration: int = 40, renew_interval: float = 10.0,
                 workers: int = 16, write_concurrency: int = 16):
        if count < 0:
            raise ValueError("the number of nodes must be 0 or more")
        self.api, self.cpu, self.memory, self.pods = api, cpu, memory, pods
        self.lease_duration, self.renew_interval = lease_duration, renew_interval
        self.workers = workers
        self.index = {f"{prefix}{i}": i for i in range(first_index, first_index + count)}
        self.addresses = PodAddresses()
        self.queue = WorkQueue("simnodes", backoff=ExponentialBackoff(base=0.05, cap=5.0))
        self.pod_informer = Informer(api, "pods", indexers={"node": pods_by_node})
        self.pod_informer.add_handler(self._pod_seen, lambda _old, new: self._pod_seen(new),
                                      self._pod_gone)
        self.node_informer = Informer(api, "nodes")
        self.node_queue = WorkQueue("simnodes-nodes",
                                    backoff=ExponentialBackoff(base=0.1, cap=10.0))
        self.node_informer.add_handler(self._node_seen, lambda _o, n: self._node_seen(n))
        self._leases: dict[str, dict] = {}
        self._slots = asyncio.Semaphore(write_concurrency)
        self._reported: dict[str, str] = {}   # pod key → uid we reported Running
        self.metrics = {"pods_started": 0, "pods_deleted": 0, "lease_renewals": 0,
                        "lease_errors": 0}

    # -- pods --------------------------------------------------------------------------

    def _ours(self, pod: dict) -> str | None:
        node = (pod.get("spec") or {}).get("nodeName")
        return node if node in self.index else None

    def _pod_seen(self, pod: dict) -> None:
        node = self._ours(pod)
        if node is None:
            return
        key = meta_namespace_key(pod)
        ip = (pod.get("status") or {}).get("podIP")
        if ip:
            slot = _slot_of(ip, self.index[node])
            if slot is not None:
                self.addresses.claim(key, node, slot)
        self.queue.add(key)

    def _pod_gone(self, pod: dict) -> None:
        key = meta_namespace_key(pod)
        self.addresses.release(key)
        self._reported.pop(key, None)

    async def sync(self, key: str) -> None:
        pod = self.pod_informer.store.get(key)
        if pod is None:
            return
        node = self._ours(pod)
        if node is None:
            return
        meta = pod["metadata"]
        if meta.get("deletionTimestamp"):
            await self._finish_deletion(pod)
            return
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return
        if objects.is_running_here(pod) or self._reported.get(key) == meta.get("uid"):
            return
        index = self.index[node]
        ip = objects.pod_ip(index, self.addresses.allocate(key, node))
        status = objects.running_status(pod, objects.node_ip(index), ip)
        try:
            await self.api.patch("pods", meta["name"], {"status": status}, meta["namespace"],
                                 subresource="status")
        except NotFound:
            return
        self._reported[key] = meta.get("uid")
        self.metrics["pods_started"] += 1

    async def _finish_deletion(self, pod: dict) -> None:
        meta = pod["metadata"]
        try:
            await self.api.delete("pods", meta["name"], meta["namespace"],
                                  grace_period_seconds=0,
                                  preconditions={"uid": meta.get("uid")})
        except (NotFound, Conflict):
            return  # already gone, or a new pod of the same name: not ours to delete
        self.metrics["pods_deleted"] += 1

    # -- nodes and leases --------------------------------------------------------------

    def _node_seen(self, node: dict) -> None:
        name = node["metadata"]["name"]
        if name in self.index and not _is_ready(node):
            self.node_queue.add(name)

    async def sync_node(self, name: str) -> None:
        node = self.node_informer.store.get(name)
        if node is None or _is_ready(node):
            return
        status = objects.node_status(name, self.index[name], cpu=self.cpu, memory=self.memory,
                                     pods=self.pods)
        await self._write_lease(name)  # fresh first, so it is not marked Unknown again
        await self.api.update_status("nodes", {**node, "status": status})
        log.info("node %s: reported Ready again", name)

    async def register(self) -> None:
        with contextlib.suppress(AlreadyExists):
            await self.api.create("namespaces", {"metadata": {
                "name": objects.NODE_LEASE_NAMESPACE}})
        await asyncio.gather(*(self._register_one(name) for name in self.index))
        log.info("registered %d simulated nodes", len(self.index))

    async def _register_one(self, name: str) -> None:
        index = self.index[name]
        desired = objects.node_object(name, index, cpu=self.cpu, memory=self.memory,
                                      pods=self.pods)
        async with self._slots:
            try:
                node = await self.api.create("nodes", desired)
            except AlreadyExists:
                node = await self.api.get("nodes", name)
            # Status is a subresource: write it explicitly whatever create kept.
            for _ in range(5):
                try:
                    node = await self.api.update_status(
                        "nodes", {**node, "status": desired["status"]})
                    break
                except Conflict:
                    node = await self.api.get("nodes", name)
            await self._write_lease(name, node["metadata"].get("uid"))

    async def _write_lease(self, name: str, node_uid: str | None = None) -> None:
        lease = self._leases.get(name)
        try:
            if lease is None:
                try:
                    lease = await self.api.create("leases", objects.lease_object(
                        name, self.lease_duration, node_uid), objects.NODE_LEASE_NAMESPACE)
                    self._leases[name] = lease
                    return
                except AlreadyExists:
                    lease = await self.api.get("leases", name, objects.NODE_LEASE_NAMESPACE)
            renewed = {**lease, "spec": {**(lease.get("spec") or {}),
                                         **objects.lease_spec(name, self.lease_duration)}}
            self._leases[name] = await self.api.update("leases", renewed)
        except (Conflict, NotFound):
            self._leases.pop(name, None)  # re-read (or re-create) it next time
            raise

    async def renew_leases(self) -> None:
        async def renew(name):
            async with self._slots:
                try:
                    await self._write_lease(name)
                    self.metrics["lease_renewals"] += 1
                except ApiError as exc:
                    self.metrics["lease_errors"] += 1
                    log.warning("lease of %s: %s", name, exc)
        await asyncio.gather(*(renew(name) for name in self.index))

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.renew_interval)
            await self.renew_leases()

    # -- running -----------------------------------------------------------------------

    async def _worker(self) -> None:
        while await process_next(self.queue, self.sync, max_retries=50, name="simnodes"):
            pass

    async def _node_worker(self) -> None:
        while await process_next(self.node_queue, self.sync_node, name="simnodes-nodes"):
            pass

    async def run(self) -> None:
        await self.register()
        tasks = [asyncio.create_task(self.pod_informer.run()),
                 asyncio.create_task(self.node_informer.run()),
                 asyncio.create_task(self._heartbeat())]
        try:
            await self.pod_informer.wait_for_sync()
            tasks += [asyncio.create_task(self._worker()) for _ in range(self.workers)]
            tasks.append(asyncio.create_task(self._node_worker()))
            await asyncio.gather(*tasks)
        finally:
            self.queue.shutdown()
            self.node_queue.shutdown()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def _is_ready(node: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (node.get("status") or {}).get("conditions") or [])


def _slot_of(ip: str, index: int) -> int | None:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    cidr = objects.pod_cidr(index)
    if address not in cidr:
        return None
    slot = int(address) - int(cidr.network_address) - 2
    return slot if 0 <= slot < 253 else None
