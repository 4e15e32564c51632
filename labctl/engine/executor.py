"""Run one play's tasks on one host: when, loop, register, changed_when/failed_when,
until/retries, ignore_errors, notify, then the notified handlers.

``HostPlay.run`` reports every step (gathering facts, each task, each handler) to the
reporter, ``None`` for a step that does not apply to the host, and stops the host's
play at the first failure that is not ignored.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labctl.engine import templating
from labctl.engine.actions import RAW_ARGS, ActionContext, run_action
from labctl.engine.model import Play, Task
from labctl.engine.outcome import (
    CHANGED,
    FAILED,
    SKIPPED,
    UNREACHABLE,
    ItemOutcome,
    Outcome,
    status_of,
)
from labctl.engine.selection import is_selected
from labctl.engine.templating import LazyVars, TemplatingError
from labctl.engine.transport import HostUnreachable
from labctl.engine.variables import HostState, task_vars


@dataclass
class PlayOptions:
    check: bool = False
    diff: bool = False
    tags: tuple[str, ...] = ()
    skip_tags: tuple[str, ...] = ()


def handler_matches(handler: Task, notified: set[str]) -> bool:
    names = {handler.name, handler.display_name, *handler.listen}
    return bool(names & notified)


CENSORED = "the output has been hidden due to the fact that 'no_log: true' was specified for this result"


def censored(outcome: Outcome) -> Outcome:
    """What is shown of a ``no_log`` task: its status, nothing of its data."""
    keep = {k: outcome.result[k] for k in ("changed", "failed", "skipped", "unreachable")
            if k in outcome.result}
    items = [ItemOutcome("(censored)", i.status, {"censored": CENSORED}) for i in outcome.items]
    return Outcome(outcome.status, {**keep, "censored": CENSORED, "msg": CENSORED}, items,
                   outcome.ignored)


def where(task: Task) -> str:
    role = f"role '{task.role}', " if task.role else ""
    return f"{role}task '{task.name or task.module}' ({task.source})"


class HostPlay:
    def __init__(
        self,
        play: Play,
        host: str,
        state: HostState,
        call: Callable[..., dict[str, Any]],
        magic: Mapping[str, Any],
        extra_vars: Mapping[str, Any],
        options: PlayOptions,
        report: Callable[[str, int, Outcome | None], None],
        playbook_dir: Path,
        gather: Callable[[], dict[str, Any]] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        base_vars: Mapping[str, Any] | None = None,
    ) -> None:
        self.base_vars = base_vars
        self.play = play
        self.host = host
        self.state = state
        self.call = call
        self.magic = magic
        self.extra_vars = extra_vars
        self.options = options
        self.report = report
        self.playbook_dir = playbook_dir
        self.gather = gather
        self.sleep = sleep
        self.notified: set[str] = set()

    # -- the play -------------------------------------------------------------

    def run(self) -> bool:
        """Run the play on this host; False when the host failed or was unreachable."""
        step = 0
        if self.gather is not None:
            outcome = self._guard(None, self._gather_facts)
            self.report(self.host, step, outcome)
            if outcome.stops_host:
                return False
        step += 1
        for task in self.play.tasks:
            if not is_selected(task.tags, self.options.tags, self.options.skip_tags):
                self.report(self.host, step, None)
            else:
                outcome = self._guard(task, lambda t=task: self.run_task(t))
                self.report(self.host, step, censored(outcome) if task.no_log else outcome)
                if outcome.stops_host:
                    return False
            step += 1
        for handler in self.play.handlers:
            if handler_matches(handler, self.notified):
                outcome = self._guard(handler, lambda h=handler: self.run_task(h))
                self.report(self.host, step, outcome)
                if outcome.stops_host:
                    return False
            else:
                self.report(self.host, step, None)
            step += 1
        return True

    def _gather_facts(self) -> Outcome:
        facts = self.gather() if self.gather else {}
        self.state.facts.update(facts)
        return Outcome("ok", {"changed": False})

    def _guard(self, task: Task | None, body: Callable[[], Outcome]) -> Outcome:
        try:
            return body()
        except HostUnreachable as exc:
            return Outcome(UNREACHABLE, {"unreachable": True, "msg": str(exc)})
        except TemplatingError as exc:
            name = templating.undefined_name(exc.detail)
            extra = f" (variable '{name}')" if name else ""
            msg = f"{where(task)}: {exc.detail}{extra}" if task else exc.detail
            return Outcome(FAILED, {"failed": True, "msg": msg})

    # -- one task -------------------------------------------------------------

    def variables(self, task: Task, extra: Mapping[str, Any] | None = None) -> LazyVars:
        raw = task_vars(self.play, task, self.state, self.extra_vars, self.magic, self.base_vars)
        if extra:
            raw.update(extra)
        return LazyVars(raw)

    def run_task(self, task: Task) -> Outcome:
        if task.loop is None:
            variables = self.variables(task)
            if not self._when(task, variables):
                return self._finish(task, Outcome(SKIPPED, {"skipped": True, "changed": False,
                                                            "skip_reason": "Conditional result was False"}))
            result = self._execute(task, variables, {})
            return self._finish(task, Outcome(status_of(result), result))
        items = self._loop_items(task)
        outcomes = []
        for item in items:
            bound = {task.loop_var: item, "ansible_loop_var": task.loop_var}
            variables = self.variables(task, bound)
            label = self._label(task, variables, item)
            if not self._when(task, variables):
                res = {"skipped": True, "changed": False, task.loop_var: item}
                outcomes.append(ItemOutcome(label, SKIPPED, res))
                continue
            result = self._execute(task, variables, bound)
            result[task.loop_var] = item
            result["ansible_loop_var"] = task.loop_var
            outcomes.append(ItemOutcome(label, status_of(result), result))
            if task.module == "set_fact" and not result.get("failed"):
                self.state.runtime_vars.update(result.get("ansible_facts", {}))
        results = [o.result for o in outcomes]
        summary: dict[str, Any] = {
            "changed": any(r.get("changed") for r in results),
            "results": results,
            "msg": "All items completed",
        }
        if any(o.status == FAILED for o in outcomes):
            summary["failed"] = True
            summary["msg"] = "One or more items failed"
        if outcomes and all(o.status == SKIPPED for o in outcomes) or not outcomes:
            summary["skipped"] = True
        return self._finish(task, Outcome(status_of(summary), summary, outcomes))

    def _when(self, task: Task, variables: LazyVars) -> bool:
        return not task.when or templating.condition(task.when, variables)

    def _loop_items(self, task: Task) -> list[Any]:
        items = templating.template(task.loop, self.variables(task))
        if isinstance(items, str):
            items = [items]
        if not isinstance(items, list):
            raise TemplatingError(f"loop needs a list, got {type(items).__name__}: {items!r}")
        return items

    def _label(self, task: Task, variables: LazyVars, item: Any) -> str:
        if task.loop_label is not None:
            return str(templating.template(task.loop_label, variables))
        return str(item)

    def _execute(self, task: Task, variables: LazyVars, bound: Mapping[str, Any]) -> dict[str, Any]:
        raw_keys = RAW_ARGS.get(task.module, ())
        args = {k: (v if k in raw_keys else templating.template(v, variables))
                for k, v in task.args.items()}
        args = templating.strip_omitted(args)
        check = self.options.check if task.check_mode is None else bool(task.check_mode)
        diff = self.options.diff if task.diff is None else bool(task.diff)
        ctx = ActionContext(self.call, check, diff, self.playbook_dir)
        attempts = max(1, task.retries + 1) if task.until is not None else 1
        for attempt in range(1, attempts + 1):
            result = run_action(ctx, task, args, variables)
            if task.changed_when is not None or task.failed_when is not None:
                result = self._command_conditions(task, variables, bound, result)
            if task.until is None:
                break
            if self._holds(task.until, task, bound, result):
                result["attempts"] = attempt
                break
            result["attempts"] = attempt
            if attempt < attempts:
                self.sleep(task.delay)
            else:
                result["failed"] = True
                result.setdefault("msg", "")
                result["msg"] = f"Retried {attempts} times, 'until' never held. {result['msg']}".strip()
        if task.module == "set_fact" and not result.get("failed") and task.loop is None:
            self.state.runtime_vars.update(result.get("ansible_facts", {}))
        return result

    def _holds(self, expr: Any, task: Task, bound: Mapping[str, Any], result: dict[str, Any]) -> bool:
        extra = dict(bound)
        if task.register:
            extra[task.register] = result
        return templating.condition(expr, self.variables(task, extra))

    def _command_conditions(self, task: Task, variables: LazyVars, bound: Mapping[str, Any],
                            result: dict[str, Any]) -> dict[str, Any]:
        if result.get("skipped") or result.get("unreachable"):
            return result
        if task.changed_when is not None:
            result["changed"] = self._holds(task.changed_when, task, bound, result)
        if task.failed_when is not None:
            failed = self._holds(task.failed_when, task, bound, result)
            result["failed"] = failed
            if failed:
                result.setdefault("msg", "")
                if not result["msg"] or result["msg"].startswith("non-zero return code"):
                    result["msg"] = f"failed_when held: {task.failed_when}"
            elif str(result.get("msg", "")).startswith("non-zero return code"):
                result.pop("msg")   # failed_when accepted the return code
        return result

    def _finish(self, task: Task, outcome: Outcome) -> Outcome:
        if outcome.status == FAILED and task.ignore_errors:
            outcome.ignored = True
        if task.register:
            self.state.runtime_vars[task.register] = outcome.result
        if outcome.status == CHANGED:
            self.notified.update(task.notify)
        return outcome
