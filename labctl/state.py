"""Where labctl keeps what outlives a command: per-lab state and the image cache.

Layout under the labctl home (``$LABCTL_HOME``, default ``/var/lib/labctl`` for root,
``~/.local/share/labctl`` otherwise)::

    images/<recipe-hash>/...            base images, shared by all labs
    labs/<lab_name>/ssh/id_ed25519      the lab's key pair (0600)
    labs/<lab_name>/ssh/known_hosts     host keys pinned when hosts are provisioned
    labs/<lab_name>/pki/                CA and certificates
    labs/<lab_name>/hosts/<host>.json   one record per provisioned host
    labs/<lab_name>/logs/               consoles and run logs
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def labctl_home() -> Path:
    env = os.environ.get("LABCTL_HOME")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/labctl")
    return Path.home() / ".local" / "share" / "labctl"


@dataclass(frozen=True)
class LabState:
    """Paths of one lab's state directory; creating them is explicit (``ensure``)."""

    name: str
    root: Path

    @classmethod
    def for_lab(cls, name: str, home: Path | None = None) -> LabState:
        return cls(name=name, root=(home or labctl_home()) / "labs" / name)

    @property
    def ssh_dir(self) -> Path:
        return self.root / "ssh"

    @property
    def private_key(self) -> Path:
        return self.ssh_dir / "id_ed25519"

    @property
    def public_key(self) -> Path:
        return self.ssh_dir / "id_ed25519.pub"

    @property
    def known_hosts(self) -> Path:
        return self.ssh_dir / "known_hosts"

    @property
    def pki_dir(self) -> Path:
        return self.root / "pki"

    @property
    def hosts_dir(self) -> Path:
        return self.root / "hosts"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    def ensure(self) -> LabState:
        for d in (self.root, self.hosts_dir, self.logs_dir):
            d.mkdir(parents=True, exist_ok=True)
        for d in (self.ssh_dir, self.pki_dir):
            d.mkdir(parents=True, exist_ok=True)
            d.chmod(0o700)
        return self


def images_dir(home: Path | None = None) -> Path:
    return (home or labctl_home()) / "images"
