"""Pod address management: which sandbox holds which IP of the node's pod CIDR.

Rules:
1. A sandbox holds at most one address; asking again returns the same one.
2. New addresses go round-robin after the last one handed out (like CNI's host-local),
   so a freed address is not reused at once (stale ARP / conntrack entries elsewhere).
3. Releasing an address nobody holds is a no-op.
4. The table is persisted (one JSON file, written atomically under a lock): a restarted
   kubelet or runtime keeps every pod's address, and two processes never hand out the
   same one.

`allocate`/`release` are pure functions over an `IpamState`; `IpamStore` is the file.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import threading
from dataclasses import dataclass, field

from .addresses import pod_addresses
from .errors import PodNetError

STATE_FILE = "ipam.json"
LOCK_FILE = "ipam.lock"


@dataclass
class IpamState:
    allocations: dict[str, str] = field(default_factory=dict)  # sandbox id → IP
    last: str | None = None  # the last address handed out

    def to_json(self) -> dict:
        return {"version": 1, "last": self.last, "allocations": dict(sorted(
            self.allocations.items()))}

    @classmethod
    def from_json(cls, doc: dict, where: str) -> IpamState:
        if not isinstance(doc, dict) or not isinstance(doc.get("allocations", {}), dict):
            raise PodNetError(f"{where}: not an IPAM state file (expected "
                              '{"allocations": {...}}); move it away to start afresh')
        return cls(dict(doc.get("allocations") or {}), doc.get("last"))


def allocate(state: IpamState, net: ipaddress.IPv4Network, sandbox_id: str) -> str:
    """The sandbox's address (rule 1), or the next free one (rule 2); updates `state`."""
    held = state.allocations.get(sandbox_id)
    if held is not None:
        return held
    first, last = pod_addresses(net)
    taken = set(state.allocations.values())
    size = last - first + 1
    start = first
    if state.last is not None:
        prev = int(ipaddress.IPv4Address(state.last))
        if first <= prev <= last:
            start = prev + 1 if prev < last else first
    for i in range(size):
        candidate = str(ipaddress.IPv4Address(first + (start - first + i) % size))
        if candidate not in taken:
            state.allocations[sandbox_id] = candidate
            state.last = candidate
            return candidate
    raise PodNetError(f"pod CIDR {net} is full: all {size} pod addresses are in use "
                      "(tear down sandboxes that are gone, or give the node a larger CIDR)")


def release(state: IpamState, sandbox_id: str) -> str | None:
    """Free the sandbox's address (rule 3); returns it, or None if it held none."""
    return state.allocations.pop(sandbox_id, None)


class IpamStore:
    """The persisted table in `state_dir`; every change is one locked read-modify-write."""

    def __init__(self, state_dir: str):
        self.state_dir = state_dir
        self.path = os.path.join(state_dir, STATE_FILE)
        self._thread_lock = threading.Lock()

    @contextlib.contextmanager
    def _locked(self):
        os.makedirs(self.state_dir, mode=0o755, exist_ok=True)
        with self._thread_lock, open(os.path.join(self.state_dir, LOCK_FILE), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read(self) -> IpamState:
        try:
            with open(self.path) as fh:
                doc = json.load(fh)
        except FileNotFoundError:
            return IpamState()
        except ValueError as exc:
            raise PodNetError(f"{self.path} is not valid JSON ({exc}); move it away to "
                              "start afresh (pods then get new addresses)") from None
        return IpamState.from_json(doc, self.path)

    def _write(self, state: IpamState) -> None:
        tmp = self.path + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(state.to_json(), fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)  # a crash leaves the old or the new table, never half

    def load(self) -> IpamState:
        with self._locked():
            return self._read()

    def allocate(self, net: ipaddress.IPv4Network, sandbox_id: str) -> tuple[str, bool]:
        """(the sandbox's address, whether it was newly allocated)."""
        with self._locked():
            state = self._read()
            if sandbox_id in state.allocations:
                return state.allocations[sandbox_id], False
            ip = allocate(state, net, sandbox_id)
            self._write(state)
            return ip, True

    def release(self, sandbox_id: str) -> str | None:
        with self._locked():
            state = self._read()
            ip = release(state, sandbox_id)
            if ip is not None:
                self._write(state)
            return ip

    def address_of(self, sandbox_id: str) -> str | None:
        return self.load().allocations.get(sandbox_id)
