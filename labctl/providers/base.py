"""What every provider offers the lab lifecycle (``labctl up/down/status``).

A provider turns a ``HostSpec`` into a running host that boots the lab's base image
with real systemd and sshd, reachable at ``spec.address`` on the lab network, with
root's authorized key set to the lab's public key and its hostname set to
``spec.name``. Providers do not wait for SSH: readiness is the lifecycle's job.
Everything a provider creates is recorded so that ``destroy``/``destroy_network``
remove exactly that, even after a crash.
"""

from __future__ import annotations

import ipaddress
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class NetworkSpec:
    lab_name: str
    cidr: ipaddress.IPv4Network
    gateway: str  # the lab machine's address on the lab bridge (first host address)
    bridge: str  # Linux bridge name, at most 15 characters


@dataclass(frozen=True)
class HostSpec:
    name: str
    address: str
    network: NetworkSpec
    cpus: int
    memory_mb: int
    public_key: str  # the lab's ssh public key line for root
    groups: tuple[str, ...] = ()
    vars: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


@dataclass
class HostRecord:
    """What a provider remembers about a host it created (saved as JSON in the lab)."""

    name: str
    provider: str
    address: str
    details: dict[str, Any] = field(default_factory=dict)  # pids, paths, domain names


class Provider(ABC):
    name: str

    def __init__(self, lab_root: Path):
        self.lab_root = lab_root  # the lab's state directory (LabState.root)

    @abstractmethod
    def ensure_network(self, net: NetworkSpec) -> None: ...

    @abstractmethod
    def destroy_network(self, net: NetworkSpec) -> None: ...

    @abstractmethod
    def create(self, spec: HostSpec) -> HostRecord:
        """Create and start the host; return at once (no waiting for boot)."""

    @abstractmethod
    def state(self, record: HostRecord) -> str:
        """'running', 'stopped' or 'missing'."""

    @abstractmethod
    def start(self, record: HostRecord) -> HostRecord: ...

    @abstractmethod
    def stop(self, record: HostRecord) -> None:
        """Stop cleanly (the host can be started again)."""

    @abstractmethod
    def destroy(self, record: HostRecord) -> None:
        """Remove everything created for this host; idempotent."""

    @abstractmethod
    def console_log(self, record: HostRecord) -> Path: ...
