"""Providers turn host specs into running hosts; ``get_provider`` picks one by name.

Provider modules are imported lazily so that, e.g., ``labctl status`` on an nspawn lab
never imports ``libvirt``.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from labctl.errors import LabError
from labctl.providers.base import Provider

# provider name -> "module:ClassName"
PROVIDERS: dict[str, str] = {
    "nspawn": "labctl.providers.nspawn:NspawnProvider",
    "libvirt": "labctl.providers.libvirt:LibvirtProvider",
}


def get_provider(name: str, lab_root: Path) -> Provider:
    """Return a provider instance for the lab whose state lives in ``lab_root``."""
    target = PROVIDERS.get(name)
    if target is None:
        known = ", ".join(sorted(PROVIDERS))
        raise LabError(f"unknown provider {name!r}: use one of {known} (inventory var lab_provider)")
    module_name, class_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise LabError(f"provider {name!r} is not available: {exc}") from exc
    return getattr(module, class_name)(lab_root)
