"""Ansible's ``-e/--extra-vars`` forms: ``k=v k2=v2`` (strings), ``{"k": 1}`` (JSON/YAML)
and ``@file.yml``. Later ``-e`` options replace earlier ones' keys."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from labctl.inventory.problems import InventoryError
from labctl.inventory.yamlfile import parse_yaml, plain, read_yaml


def parse_extra_vars(options: list[str] | None) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for option in options or []:
        merged.update(parse_one(option))
    return merged


def parse_one(option: str) -> dict[str, Any]:
    text = option.strip()
    if not text:
        return {}
    if text.startswith("@"):
        data = read_yaml(Path(text[1:]))
        source = text[1:]
    elif text[0] in "[{":
        data = parse_yaml(text, f"-e {text}")
        source = f"-e {text}"
    else:
        return _key_values(text)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InventoryError(f"{source}: extra vars must be a mapping of name: value")
    return plain(data)


def _key_values(text: str) -> dict[str, Any]:
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise InventoryError(f"-e {text}: {exc}") from None
    values: dict[str, Any] = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise InventoryError(
                f"-e {text}: {word!r} is not key=value; write -e key=value, -e '{{\"key\": 1}}' "
                f"or -e @vars.yml"
            )
        values[key] = value
    return values
