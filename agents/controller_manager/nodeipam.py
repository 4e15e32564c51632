"""The Node IPAM controller (kube-controller-manager's `--allocate-node-cidrs`).

Every Node without `spec.podCIDR` gets a free subnet of `--node-cidr-mask-size` bits
carved from `--cluster-cidr` (`spec.podCIDR` and `spec.podCIDRs`, as the range allocator
writes them); no two nodes get the same one.

Level-triggered: which subnets are taken is read from the informer's cache of Nodes on
every sync (plus the allocations written but not seen back yet), so a new leader
recovers every allocation from the Nodes themselves and a deleted Node's subnet is free
as soon as it leaves the cache. When the range is full the Node gets a
`CIDRNotAvailable` event (once) and waits: deleting any Node retries the waiting ones.

The allocation itself is `CidrPlan`/`first_free`, pure and tested without an API.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass

from .base import QueueController

log = logging.getLogger(__name__)

# More subnets than this is a typo, not a lab (kube-controller-manager caps the same).
MAX_SUBNET_BITS = 16


@dataclass(frozen=True)
class CidrPlan:
    """The subnets of `mask_size` bits inside `cluster`, numbered from 0."""

    cluster: ipaddress.IPv4Network | ipaddress.IPv6Network
    mask_size: int

    @classmethod
    def parse(cls, cluster_cidr: str, mask_size: int) -> CidrPlan:
        """Raises ValueError saying what is wrong with the flags."""
        try:
            cluster = ipaddress.ip_network(cluster_cidr, strict=True)
        except ValueError as exc:
            raise ValueError(f"--cluster-cidr {cluster_cidr!r} is not a network address "
                             f"with a prefix length ({exc})") from None
        if not cluster.prefixlen <= mask_size <= cluster.max_prefixlen:
            raise ValueError(f"--node-cidr-mask-size {mask_size} must lie between the "
                             f"cluster CIDR's prefix length {cluster.prefixlen} and "
                             f"{cluster.max_prefixlen}")
        if mask_size - cluster.prefixlen > MAX_SUBNET_BITS:
            raise ValueError(f"--node-cidr-mask-size {mask_size} cuts {cluster_cidr} into "
                             f"2^{mask_size - cluster.prefixlen} subnets; at most "
                             f"2^{MAX_SUBNET_BITS}: use bigger node subnets (a smaller mask size)")
        return cls(cluster, mask_size)

    @property
    def size(self) -> int:
        return 1 << (self.mask_size - self.cluster.prefixlen)

    def subnet(self, index: int) -> str:
        step = 1 << (self.cluster.max_prefixlen - self.mask_size)
        base = int(self.cluster.network_address) + index * step
        return str(ipaddress.ip_network((base, self.mask_size)))

    def index_of(self, cidr: str) -> int | None:
        """The subnet's number, or None if `cidr` is not one of this plan's subnets."""
        try:
            net = ipaddress.ip_network(cidr, strict=True)
        except ValueError:
            return None
        if net.version != self.cluster.version or net.prefixlen != self.mask_size \
                or not net.subnet_of(self.cluster):
            return None
        step = 1 << (self.cluster.max_prefixlen - self.mask_size)
        return (int(net.network_address) - int(self.cluster.network_address)) // step


def first_free(plan: CidrPlan, taken: set[str]) -> str | None:
    """The lowest-numbered subnet of the plan not in `taken` (None: the range is full).
    CIDRs in `taken` that are not subnets of the plan take nothing from it."""
    used = {i for i in (plan.index_of(c) for c in taken) if i is not None}
    for index in range(plan.size):
        if index not in used:
            return plan.subnet(index)
    return None


def pod_cidr(node: dict) -> str | None:
    spec = node.get("spec") or {}
    return spec.get("podCIDR") or next(iter(spec.get("podCIDRs") or []), None)


class NodeIpamController(QueueController):
    name = "node-ipam-controller"

    def __init__(self, api, nodes, plan: CidrPlan, events=None):
        super().__init__(api, events)
        self.nodes, self.plan = nodes, plan
        # Written but maybe not yet seen back through the informer: node → CIDR.
        self.pending: dict[str, str] = {}
        self.reported_full: set[str] = set()
        nodes.add_handler(self._enqueue, lambda _old, new: self._enqueue(new),
                          self._deleted)

    def _enqueue(self, node: dict) -> None:
        self.queue.add(node["metadata"]["name"])

    def _deleted(self, node: dict) -> None:
        # A subnet may have come free: the nodes still waiting for one try again.
        self.queue.add(node["metadata"]["name"])
        for waiting in self.nodes.store.list():
            if not pod_cidr(waiting):
                self._enqueue(waiting)

    def taken(self) -> set[str]:
        cache = {c for c in (pod_cidr(n) for n in self.nodes.store.list()) if c}
        return cache | set(self.pending.values())

    async def sync(self, name: str) -> None:
        node = self.nodes.store.get(name)
        if node is None:
            self.pending.pop(name, None)
            self.reported_full.discard(name)
            return
        if pod_cidr(node):
            self.pending.pop(name, None)  # the informer has caught up with our write
            self.reported_full.discard(name)
            return
        cidr = self.pending.get(name)
        if cidr is None:
            # No await between choosing and reserving: concurrent syncs never pick the
            # same subnet.
            cidr = first_free(self.plan, self.taken())
            if cidr is None:
                if name not in self.reported_full:
                    self.reported_full.add(name)
                    log.warning("node %s: no free /%d left in %s", name, self.plan.mask_size,
                                self.plan.cluster)
                    self.events.record(node, "CIDRNotAvailable",
                                       f"Node {name} status is now: CIDRNotAvailable",
                                       "Warning")
                return
            self.pending[name] = cidr
        # A failure keeps the reservation: the retry writes the same subnet.
        await self.api.patch("nodes", name, {"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}})
        log.info("node %s: allocated pod CIDR %s", name, cidr)
