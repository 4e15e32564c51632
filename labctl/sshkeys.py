"""The lab's SSH key pair and its known_hosts file (plain files; no SSH library here).

The known_hosts file uses OpenSSH's format so that ``ssh -o UserKnownHostsFile=...
-o StrictHostKeyChecking=yes`` accepts the same pins labctl uses. A host's alias is
its address, or ``[address]:port`` when the port is not 22 (OpenSSH's convention).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from labctl.errors import LabError

KEY_COMMENT = "labctl"


def host_alias(address: str, port: int = 22) -> str:
    return address if port == 22 else f"[{address}]:{port}"


def fingerprint(key_b64: str) -> str:
    """OpenSSH's ``SHA256:...`` fingerprint of a base64 public key blob."""
    try:
        blob = base64.b64decode(key_b64, validate=True)
    except binascii.Error as exc:
        raise LabError(f"not a base64 SSH public key: {key_b64[:40]!r}") from exc
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` created 0600 from the start (never briefly readable)."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}-{threading.get_ident()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def new_ed25519_openssh() -> tuple[bytes, str]:
    """A fresh ed25519 key: (OpenSSH private key PEM, ``ssh-ed25519 AAAA...`` public)."""
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return private, public.decode()


def write_openssh_keypair(private_path: Path, comment: str = KEY_COMMENT) -> str:
    """Create (or replace) an ed25519 pair at ``private_path`` + ``.pub``; return the pub line."""
    private, public = new_ed25519_openssh()
    line = f"{public} {comment}"
    private_path.parent.mkdir(parents=True, exist_ok=True)
    _write_private(private_path, private)
    pub_path = private_path.with_name(private_path.name + ".pub")
    pub_path.write_text(line + "\n")
    pub_path.chmod(0o644)
    return line


def ensure_keypair(private_path: Path) -> str:
    """Create the lab's ed25519 key pair if missing; return its public key line.

    The private key is 0600 (ssh and paramiko refuse or warn otherwise); the
    public key sits beside it as ``<name>.pub``.
    """
    private_path = Path(private_path)
    pub_path = private_path.with_name(private_path.name + ".pub")
    if not private_path.exists():
        return write_openssh_keypair(private_path)
    if private_path.stat().st_mode & 0o077:
        private_path.chmod(0o600)
    try:
        key = serialization.load_ssh_private_key(private_path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise LabError(
            f"{private_path} is not an unencrypted OpenSSH private key ({exc}); "
            "remove it to let labctl create a new one (hosts must then be re-provisioned)"
        ) from exc
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    line = f"{public} {KEY_COMMENT}"
    if not pub_path.exists() or pub_path.read_text().split()[:2] != line.split()[:2]:
        pub_path.write_text(line + "\n")
        pub_path.chmod(0o644)
    return line


# One lock per known_hosts file for threads of this process (hosts are provisioned in
# parallel); flock on the directory covers other labctl processes.
_locks: dict[Path, threading.Lock] = {}
_locks_guard = threading.Lock()


def _thread_lock(path: Path) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(path, threading.Lock())


class KnownHosts:
    """Pinned host keys, one per alias, in an OpenSSH known_hosts file.

    Lines labctl does not own (comments, hashed entries, other aliases) are kept
    as they are. ``get`` answers ``"<key_type> <key_b64>"`` or None.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path).absolute()

    def _lines(self) -> list[str]:
        try:
            return self.path.read_text().splitlines()
        except FileNotFoundError:
            return []

    @staticmethod
    def _parse(line: str) -> tuple[list[str], str, str] | None:
        fields = line.split()
        if len(fields) < 3 or line.lstrip().startswith("#") or fields[0].startswith("@"):
            return None
        return fields[0].split(","), fields[1], fields[2]

    def entries(self) -> Iterator[tuple[str, str, str]]:
        """(alias, key_type, key_b64) for every plain (unhashed) entry."""
        for line in self._lines():
            parsed = self._parse(line)
            if parsed:
                aliases, key_type, key_b64 = parsed
                for alias in aliases:
                    yield alias, key_type, key_b64

    def get(self, host_alias: str) -> str | None:
        for alias, key_type, key_b64 in self.entries():
            if alias == host_alias:
                return f"{key_type} {key_b64}"
        return None

    def pin(self, host_alias: str, key_type: str, key_b64: str) -> None:
        """Pin (replacing any earlier key of) ``host_alias``."""
        fingerprint(key_b64)  # validates
        with self._locked():
            kept = self._without(host_alias)
            kept.append(f"{host_alias} {key_type} {key_b64}")
            self._write(kept)

    def forget(self, host_alias: str) -> None:
        with self._locked():
            lines = self._lines()
            kept = self._without(host_alias)
            if kept != lines:
                self._write(kept)

    def _without(self, host_alias: str) -> list[str]:
        kept = []
        for line in self._lines():
            parsed = self._parse(line)
            if parsed and host_alias in parsed[0]:
                others = [a for a in parsed[0] if a != host_alias]
                if others:
                    kept.append(" ".join([",".join(others), parsed[1], parsed[2]]))
                continue
            kept.append(line)
        return kept

    def _write(self, lines: list[str]) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}-{threading.get_ident()}")
        tmp.write_text("".join(line + "\n" for line in lines))
        tmp.chmod(0o644)
        os.replace(tmp, self.path)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _thread_lock(self.path):
            fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)
