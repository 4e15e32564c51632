"""Service ClusterIP and NodePort allocation, safe across several API servers: each
allocated value is an etcd key created with a ModRevision==0 transaction, so two
servers can never hand out the same value."""

from __future__ import annotations

import ipaddress
import random

from .errors import ApiError


class Allocator:
    """Hands out values[0..size) where value(i) is computed (a /12 has a million addresses:
    they are never materialised)."""

    def __init__(self, storage, name: str, size: int, value, contains):
        self.storage = storage
        self.name = name
        self.size = size
        self.value = value
        self.contains = contains

    @classmethod
    def for_cidr(cls, storage, cidr: str) -> Allocator:
        net = ipaddress.ip_network(cidr, strict=False)
        first = int(net.network_address) + 1  # skip the network address
        size = max(net.num_addresses - 2, 1)  # and the broadcast address

        def contains(text: str) -> bool:
            try:
                return first <= int(ipaddress.ip_address(text)) < first + size
            except ValueError:
                return False
        return cls(storage, "serviceips", size,
                   lambda i: str(ipaddress.ip_address(first + i)), contains)

    @classmethod
    def for_range(cls, storage, low: int, high: int) -> Allocator:
        return cls(storage, "servicenodeports", high - low + 1, lambda i: str(low + i),
                   lambda text: text.isdigit() and low <= int(text) <= high)

    def key(self, value: str) -> str:
        return f"/registry/ranges/{self.name}/{value}"

    def first(self) -> str:
        return self.value(0)

    async def claim(self, value: str) -> str | None:
        """Take a specific value; its key, or None if taken or out of range."""
        if not self.contains(value):
            return None
        key = self.key(value)
        rev = await self.storage.create(key, b"1")
        return key if rev is not None else None

    async def allocate(self) -> tuple[str, str]:
        """Take a free value: (value, key). Probes from a random start; for service IPs
        the first address is left to the `kubernetes` service."""
        reserved = 1 if self.name == "serviceips" and self.size > 1 else 0
        span = self.size - reserved
        start = random.randrange(span)
        for n in range(span):
            value = self.value(reserved + (start + n) % span)
            key = self.key(value)
            if await self.storage.create(key, b"1") is not None:
                return value, key
        raise ApiError(500, f"no {self.name} left to allocate", "InternalError")
