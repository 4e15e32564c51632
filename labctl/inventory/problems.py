"""What inventory loading and validation report."""

from __future__ import annotations

from dataclasses import dataclass

from labctl.errors import LabError


class InventoryError(LabError):
    """The inventory cannot be read at all (missing file, malformed YAML, not a mapping)."""


@dataclass(frozen=True)
class Problem:
    level: str  # "error" | "warning"
    message: str  # names the file, the host or group, and the fix

    def __str__(self) -> str:
        return f"{self.level}: {self.message}"


def error(message: str) -> Problem:
    return Problem("error", message)


def warning(message: str) -> Problem:
    return Problem("warning", message)
