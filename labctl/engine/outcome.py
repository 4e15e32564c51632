"""The result of one task on one host, as the reporter and the recap see it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

OK, CHANGED, FAILED, SKIPPED, UNREACHABLE = "ok", "changed", "failed", "skipped", "unreachable"


@dataclass
class ItemOutcome:
    label: str
    status: str
    result: dict[str, Any]


@dataclass
class Outcome:
    status: str                     # ok / changed / failed / skipped / unreachable
    result: dict[str, Any] = field(default_factory=dict)
    items: list[ItemOutcome] = field(default_factory=list)
    ignored: bool = False           # failed under ignore_errors: the host goes on

    @property
    def msg(self) -> str:
        return str(self.result.get("msg", ""))

    @property
    def stops_host(self) -> bool:
        return self.status == UNREACHABLE or (self.status == FAILED and not self.ignored)


def status_of(result: dict[str, Any]) -> str:
    if result.get("unreachable"):
        return UNREACHABLE
    if result.get("failed"):
        return FAILED
    if result.get("skipped"):
        return SKIPPED
    return CHANGED if result.get("changed") else OK
