"""Controller expectations (client-go's ControllerExpectations).

A controller that creates pods with generated names cannot tell from its cache whether
its last creates have landed: syncing again too early would create them twice. So it
records how many creates / which deletes it expects, the pod informer's handlers count
them off as they are observed, and `sync` manages pods only once they all were (or after
`ttl` seconds, in case a watch event was lost). Pure: the clock is injected."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class _Expected:
    adds: int = 0
    deletes: set[str] = field(default_factory=set)
    at: float = 0.0


class Expectations:
    def __init__(self, ttl: float = 300.0, clock: Callable[[], float] = time.monotonic):
        self.ttl, self.clock = ttl, clock
        self._by_key: dict[str, _Expected] = {}

    def expect(self, key: str, adds: int = 0, deletes: set[str] | None = None) -> None:
        self._by_key[key] = _Expected(adds, set(deletes or ()), self.clock())

    def creation_observed(self, key: str) -> None:
        exp = self._by_key.get(key)
        if exp and exp.adds > 0:
            exp.adds -= 1

    def deletion_observed(self, key: str, pod_key: str) -> None:
        exp = self._by_key.get(key)
        if exp:
            exp.deletes.discard(pod_key)

    def lower(self, key: str, adds: int = 0, pod_keys: set[str] = frozenset()) -> None:
        """Writes that failed will never be observed: stop waiting for them."""
        exp = self._by_key.get(key)
        if exp:
            exp.adds = max(0, exp.adds - adds)
            exp.deletes -= set(pod_keys)

    def satisfied(self, key: str) -> bool:
        exp = self._by_key.get(key)
        if exp is None:
            return True
        return (exp.adds <= 0 and not exp.deletes) or self.clock() - exp.at > self.ttl

    def forget(self, key: str) -> None:
        self._by_key.pop(key, None)
