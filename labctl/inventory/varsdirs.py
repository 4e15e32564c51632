"""``group_vars/`` and ``host_vars/`` beside the inventory file, found as Ansible finds them.

For an entity NAME, the first that exists of ``NAME`` (a file, or a directory whose
files are read recursively in sorted order), ``NAME.yml``, ``NAME.yaml``, ``NAME.json``
is used. In a directory, hidden files, backups (``~``) and files with other extensions
are skipped. Later files replace earlier ones' top-level keys; empty files count as {}.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from labctl.inventory.problems import InventoryError
from labctl.inventory.yamlfile import plain, read_yaml

EXTENSIONS = (".yml", ".yaml", ".json")


def vars_files(directory: Path, name: str) -> list[Path]:
    if not directory.is_dir() or name.startswith("/"):
        return []
    for suffix in ("", *EXTENSIONS):
        candidate = directory / f"{name}{suffix}"
        if candidate.is_dir():
            return _files_in(candidate)
        if candidate.exists():
            return [candidate]
    return []


def _files_in(directory: Path) -> list[Path]:
    found: list[Path] = []
    for entry in sorted(directory.iterdir(), key=lambda p: p.name):
        if entry.name.startswith(".") or entry.name.endswith("~"):
            continue
        if entry.is_dir() and not entry.suffix:
            found.extend(_files_in(entry))
        elif entry.is_file() and (not entry.suffix or entry.suffix in EXTENSIONS):
            found.append(entry)
    return found


def load_vars(directory: Path, name: str) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for path in vars_files(directory, name):
        data = read_yaml(path)
        if data is None:
            continue
        if not isinstance(data, dict):
            raise InventoryError(
                f"{path}: a vars file must be a mapping of variable: value, not a {type(data).__name__}"
            )
        merged.update(plain(data))
    return merged


def entity_names(directory: Path) -> dict[str, Path]:
    """The entity names a vars directory has entries for (file stems / directory names)."""
    names: dict[str, Path] = {}
    if not directory.is_dir():
        return names
    for entry in sorted(directory.iterdir(), key=lambda p: p.name):
        if entry.name.startswith(".") or entry.name.endswith("~"):
            continue
        name = entry.name
        if entry.is_file() and entry.suffix in EXTENSIONS:
            name = entry.name[: -len(entry.suffix)]
        elif entry.is_file() and entry.suffix:
            continue
        names.setdefault(name, entry)
    return names
