"""Lease clocks: when each lease expires, as seen by this member.

Every member updates the clock as it applies grants, renewals (keep-alives travel
through Raft) and revokes, so a new leader already knows roughly when leases end; on
promotion it still extends every lease by its full TTL, as etcd does, because the old
leader may have renewed leases it could not replicate. Only the leader acts on expiry:
it proposes a revoke, which deletes the lease's keys on every member.
"""

from __future__ import annotations

import time


class Lessor:
    def __init__(self, clock=time.monotonic) -> None:
        self.clock = clock
        self.deadline: dict[int, float] = {}
        self.ttl: dict[int, int] = {}
        self.revoking: dict[int, float] = {}  # lease -> when we proposed its revoke

    def on_apply(self, what: str, lease_id: int, ttl: int) -> None:
        if what == "revoke":
            self.deadline.pop(lease_id, None)
            self.ttl.pop(lease_id, None)
            self.revoking.pop(lease_id, None)
            return
        self.ttl[lease_id] = ttl
        self.deadline[lease_id] = self.clock() + ttl
        self.revoking.pop(lease_id, None)

    def promote(self) -> None:
        now = self.clock()
        for lease_id, ttl in self.ttl.items():
            self.deadline[lease_id] = now + ttl
        self.revoking.clear()

    def remaining(self, lease_id: int) -> int:
        """Seconds left (rounded up, as etcd reports), -1 if unknown."""
        d = self.deadline.get(lease_id)
        if d is None:
            return -1
        left = d - self.clock()
        return max(0, int(left + 0.999))

    def expired(self, retry_after: float = 2.0) -> list[int]:
        """Leases past their deadline whose revoke is not already in flight."""
        now = self.clock()
        out = []
        for lease_id, d in self.deadline.items():
            if d <= now:
                since = self.revoking.get(lease_id)
                if since is None or now - since > retry_after:
                    self.revoking[lease_id] = now
                    out.append(lease_id)
        return out
