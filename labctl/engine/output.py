"""What a run prints: Ansible-like text (one line per host per task, a PLAY RECAP) or
one JSON document.

Hosts run their plays independently; the reporter prints a step only once every host
that is still in the play has reported it, so the text reads per task, in order.
"""

from __future__ import annotations

import difflib
import json
import threading
from dataclasses import dataclass, field
from typing import Any, TextIO

from labctl.engine.outcome import CHANGED, FAILED, OK, SKIPPED, UNREACHABLE, Outcome

STATS = ("ok", "changed", "unreachable", "failed", "skipped", "rescued", "ignored")


def banner(text: str, width: int = 79) -> str:
    return f"{text} " + "*" * max(3, width - len(text) - 1)


def diff_text(diff: Any) -> str:
    """Unified diff text of a module's ``diff`` (a dict or a list of dicts)."""
    parts = diff if isinstance(diff, list) else [diff]
    out = []
    for d in parts:
        before, after = d.get("before", ""), d.get("after", "")
        if isinstance(before, dict) or isinstance(after, dict):
            before = json.dumps(before, indent=4, sort_keys=True) + "\n"
            after = json.dumps(after, indent=4, sort_keys=True) + "\n"
        if d.get("dst_binary"):
            out.append("(binary file changed)\n")
            continue
        lines = difflib.unified_diff(
            str(before).splitlines(keepends=True), str(after).splitlines(keepends=True),
            fromfile=f"before: {d.get('before_header', '')}".rstrip(": "),
            tofile=f"after: {d.get('after_header', '')}".rstrip(": "),
        )
        text = "".join(x if x.endswith("\n") else x + "\n" for x in lines)
        if text:
            out.append(text)
    return "".join(out)


@dataclass
class Failure:
    host: str
    task: str
    msg: str


@dataclass
class Stats:
    per_host: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, host: str, outcome: Outcome) -> None:
        row = self.per_host.setdefault(host, dict.fromkeys(STATS, 0))
        if outcome.status in (OK, CHANGED):
            row["ok"] += 1
        if outcome.status == CHANGED:
            row["changed"] += 1
        if outcome.status == SKIPPED:
            row["skipped"] += 1
        if outcome.status == UNREACHABLE:
            row["unreachable"] += 1
        if outcome.status == FAILED:
            row["ignored" if outcome.ignored else "failed"] += 1

    def ensure(self, host: str) -> None:
        self.per_host.setdefault(host, dict.fromkeys(STATS, 0))


class Reporter:
    def __init__(self, out: TextIO, *, as_json: bool = False, diff: bool = False,
                 verbose: bool = False) -> None:
        self.out = out
        self.as_json = as_json
        self.diff = diff
        self.verbose = verbose
        self.stats = Stats()
        self.failures: list[Failure] = []
        self.plays: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    # -- play lifecycle -------------------------------------------------------

    def begin_play(self, name: str, hosts: list[str], steps: list[tuple[str, str]]) -> None:
        with self._lock:
            self._hosts = list(hosts)
            self._steps = steps
            self._got: list[dict[str, Outcome | None]] = [{} for _ in steps]
            self._stopped: dict[str, int] = {}
            self._last: dict[str, int] = {}
            self._next = 0
            self._play = {"name": name, "hosts": list(hosts), "tasks": []}
            self.plays.append(self._play)
            for h in hosts:
                self.stats.ensure(h)
            self._print("")
            self._print(banner(f"PLAY [{name}]"))

    def report(self, host: str, step: int, outcome: Outcome | None) -> None:
        with self._lock:
            self._got[step][host] = outcome
            self._last[host] = step
            if outcome is not None:
                self.stats.add(host, outcome)
                if outcome.stops_host:
                    self._stopped[host] = step
                    self.failures.append(Failure(host, self._steps[step][1], outcome.msg))
            self._flush()

    def host_done(self, host: str) -> None:
        """The host will report no more steps of this play (finished or stopped)."""
        with self._lock:
            self._stopped.setdefault(host, self._last.get(host, -1))
            self._flush()

    def end_play(self) -> None:
        with self._lock:
            for h in self._hosts:
                self._stopped.setdefault(h, self._last.get(h, -1))
            self._flush()

    # -- printing -------------------------------------------------------------

    def _complete(self, step: int) -> bool:
        got = self._got[step]
        never = len(self._steps) + 1
        return all(h in got or self._stopped.get(h, never) < step for h in self._hosts)

    def _flush(self) -> None:
        while self._next < len(self._steps) and self._complete(self._next):
            self._emit(self._next)
            self._next += 1

    def _emit(self, step: int) -> None:
        kind, name = self._steps[step]
        rows = [(h, self._got[step][h]) for h in self._hosts if self._got[step].get(h) is not None]
        if not rows:
            return
        entry: dict[str, Any] = {"name": name, "kind": kind, "hosts": {}}
        self._play["tasks"].append(entry)
        self._print("")
        self._print(banner(f"{kind} [{name}]"))
        for host, outcome in rows:
            assert outcome is not None
            entry["hosts"][host] = {"status": outcome.status, "ignored": outcome.ignored,
                                    **_jsonable(outcome.result)}
            self._print_outcome(host, outcome)

    def _print_outcome(self, host: str, o: Outcome) -> None:
        for item in o.items:
            self._print_diff(item.result)
            word = "skipping" if item.status == SKIPPED else item.status
            if item.status == FAILED:
                self._print(f"failed: [{host}] (item={item.label}) => {_brief(item.result)}")
            else:
                self._print(f"{word}: [{host}] => (item={item.label})")
        if not o.items:
            self._print_diff(o.result)
        if o.status == UNREACHABLE:
            self._print(f"fatal: [{host}]: UNREACHABLE! => {_brief(o.result)}")
        elif o.status == FAILED:
            self._print(f"fatal: [{host}]: FAILED! => {_brief(o.result)}")
            if o.ignored:
                self._print("...ignoring")
        elif not o.items:
            word = "skipping" if o.status == SKIPPED else o.status
            extra = ""
            if "msg" in o.result and o.result.get("msg") and (self.verbose or "assertion" in o.result):
                extra = f" => {_brief(o.result)}"
            self._print(f"{word}: [{host}]{extra}")

    def _print_diff(self, result: dict[str, Any]) -> None:
        if self.diff and result.get("diff") and result.get("changed"):
            text = diff_text(result["diff"])
            if text:
                self._print(text.rstrip("\n"))

    def _print(self, line: str) -> None:
        if not self.as_json:
            self.out.write(line + "\n")
            self.out.flush()

    # -- the end --------------------------------------------------------------

    def recap(self) -> None:
        if self.as_json:
            doc = {
                "plays": self.plays,
                "stats": self.stats.per_host,
                "failures": [f.__dict__ for f in self.failures],
                "ok": not self.failures,
            }
            self.out.write(json.dumps(doc, indent=2, default=str) + "\n")
            self.out.flush()
            return
        self._print("")
        self._print(banner("PLAY RECAP"))
        width = max((len(h) for h in self.stats.per_host), default=0)
        for host, row in self.stats.per_host.items():
            cells = "  ".join(f"{k}={row[k]}" for k in STATS)
            self._print(f"{host.ljust(width)} : {cells}")
        for f in self.failures:
            self._print(f"FAILED: [{f.host}] task '{f.task}': {f.msg}")


def _brief(result: dict[str, Any]) -> str:
    keep = {k: result[k] for k in ("changed", "msg", "rc", "stdout", "stderr", "assertion")
            if k in result and result[k] not in ("", None)}
    return json.dumps(keep, default=str)


def _jsonable(result: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(result, default=str))
