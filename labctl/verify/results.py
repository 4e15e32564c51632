"""Outcomes of verification checks and how they read (pure: text and JSON)."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

PASSED, FAILED, ERROR, SKIPPED = "passed", "failed", "error", "skipped"
OUTCOMES = (PASSED, FAILED, ERROR, SKIPPED)
NO_HOST = "-"  # checks that do not use the ``host`` fixture run once, on no host


@dataclass(frozen=True)
class CheckResult:
    role: str
    host: str  # NO_HOST when the check does not use the ``host`` fixture
    check: str  # "test_common.py::test_venv_exists"
    outcome: str  # passed | failed | error | skipped
    seconds: float = 0.0
    message: str = ""  # the assertion or error for failed/error, the reason for skipped
    location: str = ""  # "roles/x/verify/test_x.py:12" where it failed
    details: str = field(default="", repr=False)  # pytest's full report, for --json

    @property
    def ok(self) -> bool:
        return self.outcome in (PASSED, SKIPPED)


@dataclass
class VerifyResult:
    results: list[CheckResult] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)  # roles whose suites ran, in order
    hosts: list[str] = field(default_factory=list)  # hosts checked, inventory order
    unreachable: dict[str, str] = field(default_factory=dict)  # host -> reason
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.unreachable and all(r.ok for r in self.results)

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 2 if self.unreachable else 1

    def counts(self) -> dict[str, int]:
        counted = Counter(r.outcome for r in self.results)
        return {outcome: counted.get(outcome, 0) for outcome in OUTCOMES}

    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if not r.ok]

    def to_dict(self) -> dict[str, Any]:
        per_role: dict[str, dict[str, dict[str, int]]] = {}
        for r in self.results:
            per_host = per_role.setdefault(r.role, {}).setdefault(
                r.host, dict.fromkeys(OUTCOMES, 0)
            )
            per_host[r.outcome] += 1
        return {
            "ok": self.ok,
            "seconds": round(self.seconds, 3),
            "summary": self.counts(),
            "roles": per_role,
            "hosts": self.hosts,
            "unreachable": self.unreachable,
            "results": [
                {**asdict(r), "seconds": round(r.seconds, 4)} for r in self.results
            ],
        }


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def describe_counts(counts: dict[str, int]) -> str:
    parts = [_plural(counts[o], o) if o == ERROR else f"{counts[o]} {o}"
             for o in OUTCOMES if counts.get(o)]
    return ", ".join(parts) or "no checks"


def _indent(text: str, prefix: str) -> list[str]:
    return [prefix + line if line else line for line in text.splitlines()] or [prefix.rstrip()]


def format_role(role: str, results: list[CheckResult], hosts: list[str],
                unreachable: dict[str, str]) -> list[str]:
    """One role's block: a line per host, then each failing check with its message."""
    checks = {r.check for r in results}
    lines = [f"{role}: {_plural(len(checks), 'check')} on {_plural(len(hosts), 'host')}"]
    rows = list(hosts)
    if any(r.host == NO_HOST for r in results):
        rows.append(NO_HOST)
    labels = {host: "(no host)" if host == NO_HOST else host for host in rows}
    width = max((len(label) for label in labels.values()), default=0)
    for host in rows:
        mine = [r for r in results if r.host == host]
        counts = Counter(r.outcome for r in mine)
        seconds = sum(r.seconds for r in mine)
        label = labels[host]
        if host in unreachable:
            lines.append(f"  UNREACHABLE  {label:<{width}}  {unreachable[host]}")
            continue
        failing = [r for r in mine if not r.ok]
        status = "FAILED" if failing else "ok"
        summary = describe_counts({o: counts.get(o, 0) for o in OUTCOMES})
        lines.append(f"  {status:<11}  {label:<{width}}  {summary}  ({seconds:.2f} s)")
        for r in failing:
            where = f"  [{r.location}]" if r.location else ""
            lines.append(f"      {r.outcome.upper()} {r.check}{where}")
            lines += _indent(r.message or "(no message)", "        ")
    return lines


def format_summary(result: VerifyResult) -> str:
    verdict = "ok" if result.ok else "FAILED"
    text = (
        f"verify {verdict}: {describe_counts(result.counts())} "
        f"({_plural(len(result.roles), 'role')}, {_plural(len(result.hosts), 'host')}) "
        f"in {result.seconds:.2f} s"
    )
    if result.unreachable:
        text += f"; unreachable: {', '.join(result.unreachable)}"
    return text
