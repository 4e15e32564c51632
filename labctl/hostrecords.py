"""One JSON file per provisioned host (``<lab>/hosts/<name>.json``).

Records are written atomically (temp file, fsync, rename) the moment a provider has
created a host, so an interrupted ``labctl up`` always leaves enough behind for
``labctl down`` to remove it and for ``labctl up`` to resume.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict
from pathlib import Path

from labctl.errors import LabError
from labctl.providers.base import HostRecord

SUFFIX = ".json"


def record_path(hosts_dir: Path, name: str) -> Path:
    if not name or "/" in name or name.startswith("."):
        raise LabError(f"invalid host name {name!r} for a host record")
    return hosts_dir / f"{name}{SUFFIX}"


def to_json(record: HostRecord) -> str:
    return json.dumps(asdict(record), indent=2, sort_keys=True) + "\n"


def from_json(text: str, source: str) -> HostRecord:
    try:
        data = json.loads(text)
        return HostRecord(
            name=data["name"],
            provider=data["provider"],
            address=data["address"],
            details=dict(data.get("details") or {}),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise LabError(
            f"{source}: not a valid host record ({exc}); remove the host by hand "
            "or delete the file if the host no longer exists"
        ) from exc


def save(hosts_dir: Path, record: HostRecord) -> Path:
    """Write ``record`` so that readers see either the old or the new file, never half."""
    hosts_dir.mkdir(parents=True, exist_ok=True)
    path = record_path(hosts_dir, record.name)
    fd, tmp = tempfile.mkstemp(dir=hosts_dir, prefix=f".{record.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(to_json(record))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load(hosts_dir: Path, name: str) -> HostRecord | None:
    path = record_path(hosts_dir, name)
    try:
        return from_json(path.read_text(), str(path))
    except FileNotFoundError:
        return None


def load_all(hosts_dir: Path) -> dict[str, HostRecord]:
    """All records, by host name, in name order (temp files of a crashed write are ignored)."""
    if not hosts_dir.is_dir():
        return {}
    records = {}
    for path in sorted(hosts_dir.glob(f"*{SUFFIX}")):
        if path.name.startswith("."):
            continue
        record = from_json(path.read_text(), str(path))
        records[record.name] = record
    return records


def remove(hosts_dir: Path, name: str) -> None:
    record_path(hosts_dir, name).unlink(missing_ok=True)
