"""The runtime's data: what the kubelet asks for (configs) and what it reads back
(statuses). Plain frozen dataclasses; JSON round trips through ``to_dict``/``from_dict``
so everything the runtime knows can live on disk and survive a kubelet restart."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any


class RuntimeError_(Exception):  # noqa: N801 - the name the kubelet imports
    """A runtime call failed: the message says what, for which object, and why."""


class NotFound(RuntimeError_):
    """No sandbox, container or image with that id/name."""


class ExecTimeout(RuntimeError_):
    """exec_sync's command did not finish within its timeout (it was killed)."""


def _from(cls, data: Mapping[str, Any]):
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class DnsConfig:
    servers: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class PodSandboxConfig:
    uid: str
    namespace: str
    name: str
    hostname: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    dns: DnsConfig | None = None
    host_network: bool = False
    annotations: Mapping[str, str] = field(default_factory=dict)
    attempt: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PodSandboxConfig:
        data = dict(data)
        dns = data.get("dns")
        if isinstance(dns, Mapping):
            data["dns"] = DnsConfig(*(tuple(dns.get(k) or ()) for k in ("servers", "searches", "options")))
        return _from(cls, data)


@dataclass(frozen=True)
class Mount:
    host_path: str
    container_path: str
    read_only: bool = False


@dataclass(frozen=True)
class ContainerConfig:
    name: str
    image: str
    command: tuple[str, ...] | list[str] = ()  # replaces the image's entrypoint
    args: tuple[str, ...] | list[str] = ()  # replaces the image's cmd
    env: Mapping[str, str] | tuple = field(default_factory=dict)  # mapping or (name, value) pairs
    working_dir: str = ""
    mounts: tuple[Mount, ...] | list[Mount] = ()
    cpu_millis: int = 0  # cpu limit in millicores; 0 = none
    memory_limit_bytes: int = 0  # 0 = none
    attempt: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)
    tty: bool = False
    stdin: bool = False
    annotations: Mapping[str, str] = field(default_factory=dict)

    def env_pairs(self) -> list[tuple[str, str]]:
        items = self.env.items() if isinstance(self.env, Mapping) else (self.env or ())
        return [(str(k), str(v)) for k, v in items]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["env"] = self.env_pairs()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ContainerConfig:
        data = dict(data)
        data["mounts"] = tuple(_from(Mount, m) for m in data.get("mounts") or ())
        data["env"] = tuple(tuple(p) for p in data.get("env") or ())
        for key in ("command", "args"):
            data[key] = tuple(data.get(key) or ())
        return _from(cls, data)


@dataclass(frozen=True)
class ImageConfig:
    """The part of an image that decides how its containers start."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()  # "NAME=value"
    working_dir: str = "/"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ImageConfig:
        return cls(
            entrypoint=tuple(data.get("entrypoint") or ()),
            cmd=tuple(data.get("cmd") or ()),
            env=tuple(data.get("env") or ()),
            working_dir=data.get("working_dir") or data.get("workdir") or "/",
        )


@dataclass(frozen=True)
class ImageInfo:
    ref: str  # "lab/busybox:latest"
    name: str
    tag: str
    id: str  # content digest given by the image's builder
    size_bytes: int
    config: ImageConfig
    rootfs: str  # read-only tree on this node


@dataclass(frozen=True)
class SandboxStatus:
    id: str
    state: str  # "ready" | "notready"
    ip: str
    netns_path: str
    created_at: float
    metadata: PodSandboxConfig
    hostname: str = ""

    @property
    def uid(self) -> str:
        return self.metadata.uid

    @property
    def namespace(self) -> str:
        return self.metadata.namespace

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def labels(self) -> Mapping[str, str]:
        return self.metadata.labels


@dataclass(frozen=True)
class ContainerStatus:
    id: str
    sandbox_id: str
    name: str
    attempt: int
    image: str
    state: str  # "created" | "running" | "exited"
    pid: int
    created_at: float
    started_at: float
    finished_at: float
    exit_code: int
    reason: str  # "Completed" | "Error" | "OOMKilled" | ""
    message: str
    log_path: str
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
