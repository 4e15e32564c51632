"""Read a YAML file the way Ansible does (YAML 1.1, safe tags), keeping key line numbers.

Mappings come back as ``MarkedDict``: a dict that also knows the line of each key and
which keys were repeated, so validation messages can say ``file:line``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from labctl.inventory.problems import InventoryError


class MarkedDict(dict):
    """A YAML mapping plus ``lines`` (key -> 1-based line) and ``repeated`` [(key, line)]."""

    lines: dict[Any, int]
    repeated: list[tuple[Any, int]]


class _Loader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _Loader, node: yaml.MappingNode):
    data = MarkedDict()
    data.lines, data.repeated = {}, []
    yield data  # the generator form lets recursive (anchored) structures resolve
    data.update(loader.construct_mapping(node))
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        line = key_node.start_mark.line + 1
        try:
            if key in data.lines:
                data.repeated.append((key, line))
            else:
                data.lines[key] = line
        except TypeError:  # unhashable key: construct_mapping already refused it
            pass


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_yaml(text: str, source: str) -> Any:
    """Parse ``text``; a syntax error becomes an InventoryError naming source:line:column."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        what = " ".join(str(part) for part in (exc.context, exc.problem) if part)
        raise InventoryError(f"{where}: malformed YAML: {what}") from None
    except yaml.YAMLError as exc:
        raise InventoryError(f"{source}: malformed YAML: {exc}") from None


def read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InventoryError(f"{path}: no such inventory file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InventoryError(f"{path}: cannot read: {exc}") from None
    return parse_yaml(text, str(path))


def plain(value: Any) -> Any:
    """Deep copy of YAML data with MarkedDicts turned into plain dicts."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def key_line(mapping: Any, key: Any) -> int | None:
    lines = getattr(mapping, "lines", None)
    return lines.get(key) if lines else None
