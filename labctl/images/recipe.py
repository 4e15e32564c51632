"""The base image's recipe as data, and the hash that keys the image cache.

The recipe is everything that decides the image's content: the debootstrap inputs
from ``recipe.yaml``, the text of every file the customisation writes, and the
version of the build steps. Change any of it and the hash (so the cache key)
changes; the apt mirror is not part of it (any mirror serves the same packages).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from labctl.errors import LabError
from labctl.images import customize

RECIPE_FILE = Path(__file__).with_name("recipe.yaml")

# Bump when the builder's steps change in a way the data above does not show.
BUILD_STEPS_VERSION = 2


@dataclass(frozen=True)
class Recipe:
    suite: str
    variant: str
    component: str
    disk_size_mb: int
    packages: tuple[str, ...]
    initrd_modules: tuple[str, ...]
    enabled_units: tuple[str, ...]
    disabled_units: tuple[str, ...]
    masked_units: tuple[str, ...]
    masked_generators: tuple[str, ...]
    remove_paths: tuple[str, ...]
    files: tuple[customize.ImageFile, ...]
    steps_version: int = BUILD_STEPS_VERSION

    @property
    def hash(self) -> str:
        """A short stable digest of the whole recipe (the cache key)."""
        canonical = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _string_list(data: dict[str, Any], key: str, where: Path) -> tuple[str, ...]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise LabError(f"{where}: `{key}` must be a list of non-empty strings")
    return tuple(value)


def recipe_from_data(data: Any, where: Path = RECIPE_FILE, extra_packages=()) -> Recipe:
    """Validate the YAML data and build the recipe (pure)."""
    if not isinstance(data, dict):
        raise LabError(f"{where}: expected a mapping at the top level")
    for key in ("suite", "variant", "component"):
        if not isinstance(data.get(key), str):
            raise LabError(f"{where}: `{key}` must be a string")
    groups = data.get("packages")
    if not isinstance(groups, dict) or not groups:
        raise LabError(f"{where}: `packages` must map group names to package lists")
    packages: set[str] = set(extra_packages)
    for group in groups:
        packages.update(_string_list(groups, group, where))
    disk_size_mb = data.get("disk_size_mb")
    if not isinstance(disk_size_mb, int) or disk_size_mb < 512:
        raise LabError(f"{where}: `disk_size_mb` must be an integer >= 512")
    modules = _string_list(data, "initrd_modules", where)
    return Recipe(
        suite=data["suite"],
        variant=data["variant"],
        component=data["component"],
        disk_size_mb=disk_size_mb,
        packages=tuple(sorted(packages)),
        initrd_modules=modules,
        enabled_units=_string_list(data, "enabled_units", where),
        disabled_units=_string_list(data, "disabled_units", where),
        masked_units=_string_list(data, "masked_units", where),
        masked_generators=_string_list(data, "masked_generators", where),
        remove_paths=_string_list(data, "remove_paths", where),
        files=customize.image_files(initrd_modules=modules),
    )


def image_recipe(path: Path | None = None, extra_packages=()) -> Recipe:
    """The recipe of the lab's base image (``recipe.yaml`` unless ``path`` is given)."""
    where = path or RECIPE_FILE
    try:
        data = yaml.safe_load(where.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise LabError(f"cannot read the image recipe {where}: {exc}") from exc
    return recipe_from_data(data, where, extra_packages)
