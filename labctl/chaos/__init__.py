"""Chaos-experiment tooling: fault schedules and the checkers that judge the results."""

from .linearizability import CheckResult, Event, Op, VersionedRegister, check

__all__ = ["CheckResult", "Event", "Op", "VersionedRegister", "check"]
