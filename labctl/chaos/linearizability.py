"""A Wing–Gong–Lowe linearizability checker for key-value histories.

Input: a history of events as clients saw them, Jepsen style. Every operation is an
``invoke`` followed (by the same process) by ``ok`` (it took effect, with its
result), ``fail`` (it certainly did not take effect) or ``info`` (unknown: it may
or may not have taken effect, at any time after its invocation). An invocation
with no completion counts as ``info``.

Model: each key is a *versioned register* whose state is ``(value, mod_revision)``,
as etcd keys are (an absent key is ``(None, 0)``). Operations (``f``):

- ``read``: ``ok`` carries the observed value and, optionally, ``revision`` = the
  observed mod_revision.
- ``write``: ``value`` is written; ``ok`` may carry ``revision`` = the new mod_revision.
- ``cas``: ``value`` is ``(expected_value, new_value)``; succeeds iff the value equals.
- ``cas_revision``: ``value`` is ``(expected_mod_revision, new_value)`` (etcd txn on
  ``ModRevision(key) == r``; ``r = 0`` means "create if absent").
- ``delete``: the key becomes absent.

A revision that is unknown (the write's outcome was indeterminate) matches the
first revision a later read reports. Keys are checked independently: linearizability
is compositional (Herlihy & Wing), which keeps the search small.

Algorithm (Lowe, "Testing for linearizability", 2017): walk a linked list of call
and return entries; linearize the first call whose model step is legal, lifting it
out of the list; on reaching a return whose operation is not linearized yet,
backtrack. A cache of (linearized set, model state) already explored prunes
the search: the same configuration never needs to be explored twice.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

INVOKE, OK, FAIL, INFO = "invoke", "ok", "fail", "info"
_COMPLETIONS = (OK, FAIL, INFO)
FUNCTIONS = ("read", "write", "cas", "cas_revision", "delete")


class HistoryError(ValueError):
    """The history is malformed (says which event and what is wrong)."""


@dataclass(frozen=True, slots=True)
class Event:
    process: Any
    type: str  # invoke | ok | fail | info
    f: str
    key: Any = None
    value: Any = None
    time: float | None = None
    revision: int | None = None


@dataclass(frozen=True, slots=True)
class Op:
    """One operation: its invocation and completion, with the outcome known."""

    id: int
    process: Any
    f: str
    key: Any
    value: Any  # read: observed value; write: written; cas*: (expected, new)
    revision: int | None  # read: observed mod_revision; writes: resulting one
    call: float
    ret: float  # math.inf when indeterminate
    indeterminate: bool

    def __str__(self) -> str:
        end = "?" if self.indeterminate else f"{self.ret:g}"
        rev = f" rev={self.revision}" if self.revision is not None else ""
        return f"[{self.call:g}..{end}] p{self.process} {self.f}({self.key!r}) {self.value!r}{rev}"


class VersionedRegister:
    """The model of one etcd key. States are ``(value, mod_revision)`` tuples; a
    ``None`` revision means "some revision we have not observed yet"."""

    def __init__(self, initial: tuple[Any, int | None] = (None, 0)) -> None:
        self.initial = initial

    @staticmethod
    def _rev_ok(state_rev: int | None, new_rev: int | None) -> bool:
        # etcd revisions only grow
        return state_rev is None or new_rev is None or new_rev > state_rev

    def step(self, state: tuple[Any, int | None], op: Op) -> tuple[bool, tuple[Any, int | None]]:
        value, rev = state
        f = op.f
        if f == "read":
            if op.value != value:
                return False, state
            if op.revision is not None:
                if rev is None:
                    return True, (value, op.revision)  # learn the unknown revision
                if rev != op.revision:
                    return False, state
            return True, state
        if f == "write":
            if not self._rev_ok(rev, op.revision):
                return False, state
            return True, (op.value, op.revision)
        if f == "cas":
            expected, new = op.value
            if value != expected or not self._rev_ok(rev, op.revision):
                return False, state
            return True, (new, op.revision)
        if f == "cas_revision":
            expected_rev, new = op.value
            if rev is not None and rev != expected_rev:
                return False, state
            if expected_rev == 0 and value is not None:
                return False, state
            if not self._rev_ok(expected_rev, op.revision):
                return False, state
            return True, (new, op.revision)
        if f == "delete":
            return True, (None, 0)
        raise HistoryError(f"unknown operation {f!r} (expected one of {', '.join(FUNCTIONS)})")


@dataclass
class CheckResult:
    linearizable: bool | None  # None: search budget exhausted, unknown
    key: Any = None  # the first key found non-linearizable
    failing_op: Op | None = None  # the completion that made the prefix impossible
    ops: list[Op] = field(default_factory=list)  # the ops that explain the anomaly
    prefix: list[Event] = field(default_factory=list)  # shortest bad prefix (that key's events)
    keys_checked: int = 0
    ops_checked: int = 0
    configurations: int = 0  # (linearized set, state) pairs explored

    def __bool__(self) -> bool:
        return self.linearizable is True

    def explain(self) -> str:
        if self.linearizable:
            return f"linearizable ({self.ops_checked} ops over {self.keys_checked} keys)"
        if self.linearizable is None:
            return f"unknown: search budget exhausted on key {self.key!r}"
        lines = [
            f"NOT linearizable on key {self.key!r}: no valid order once this completes:",
            f"  {self.failing_op}",
            "operations involved:",
        ]
        lines += [f"  {op}" for op in self.ops]
        return "\n".join(lines)


# ---------------------------------------------------------------- history -> ops


def _as_event(e: Event | Mapping[str, Any], n: int) -> Event:
    if isinstance(e, Event):
        ev = e
    elif isinstance(e, Mapping):
        try:
            ev = Event(
                process=e["process"],
                type=e["type"],
                f=e["f"],
                key=e.get("key"),
                value=e.get("value"),
                time=e.get("time"),
                revision=e.get("revision"),
            )
        except KeyError as missing:
            raise HistoryError(f"event #{n} lacks field {missing}: {dict(e)!r}") from None
    else:
        raise HistoryError(f"event #{n} must be an Event or a mapping, got {type(e).__name__}")
    if ev.type not in (INVOKE, *_COMPLETIONS):
        raise HistoryError(f"event #{n} has type {ev.type!r}; expected invoke, ok, fail or info")
    if ev.f not in FUNCTIONS:
        raise HistoryError(f"event #{n} has f={ev.f!r}; expected one of {', '.join(FUNCTIONS)}")
    if ev.time is None:
        ev = Event(ev.process, ev.type, ev.f, ev.key, ev.value, float(n), ev.revision)
    return ev


def to_ops(history: Iterable[Event | Mapping[str, Any]]) -> list[Op]:
    """Pair invocations with completions. Failed ops are dropped (no effect); reads
    with unknown outcome are dropped (no effect either way)."""
    pending: dict[Any, tuple[int, Event]] = {}
    ops: list[Op] = []
    last_time = -math.inf
    next_id = 0

    def emit(inv: Event, comp: Event | None) -> None:
        nonlocal next_id
        if comp is not None and comp.type == FAIL:
            return
        indeterminate = comp is None or comp.type == INFO
        if indeterminate and inv.f == "read":
            return
        if inv.f == "read":
            value, revision = comp.value, comp.revision  # type: ignore[union-attr]
        else:
            value = inv.value
            revision = None if indeterminate else comp.revision  # type: ignore[union-attr]
            if inv.f in ("cas", "cas_revision") and (
                not isinstance(value, (tuple, list)) or len(value) != 2
            ):
                raise HistoryError(
                    f"{inv.f} by process {inv.process!r} at {inv.time}: value must be "
                    f"(expected, new), got {value!r}"
                )
            if isinstance(value, list):
                value = tuple(value)
        ops.append(
            Op(
                next_id,
                inv.process,
                inv.f,
                inv.key,
                value,
                revision,
                inv.time,  # type: ignore[arg-type]
                math.inf if indeterminate else comp.time,  # type: ignore[union-attr]
                indeterminate,
            )
        )
        next_id += 1

    for n, raw in enumerate(history):
        e = _as_event(raw, n)
        if e.time < last_time:  # type: ignore[operator]
            raise HistoryError(f"event #{n} goes back in time ({e.time} < {last_time})")
        last_time = e.time  # type: ignore[assignment]
        if e.type == INVOKE:
            if e.process in pending:
                raise HistoryError(
                    f"event #{n}: process {e.process!r} invokes again before its previous "
                    "operation completed (give each client its own process id; use 'info' "
                    "for timeouts and a new process id afterwards)"
                )
            pending[e.process] = (n, e)
        else:
            if e.process not in pending:
                raise HistoryError(
                    f"event #{n}: {e.type} from process {e.process!r} with no invoke"
                )
            _, inv = pending.pop(e.process)
            if inv.f != e.f:
                raise HistoryError(f"event #{n}: completes {e.f} but process invoked {inv.f}")
            emit(inv, e)
    for _, inv in sorted(pending.values(), key=lambda p: p[0]):
        emit(inv, None)
    return ops


# ---------------------------------------------------------------- WGL search


class BudgetExhausted(Exception):
    pass


def _search(ops: list[Op], model: VersionedRegister, budget: int | None) -> tuple[bool, int]:
    """Lowe's WGL with memoization. Returns (linearizable, configurations explored)."""
    n = len(ops)
    if n == 0:
        return True, 0
    # Entries: 0 = head sentinel; call of op k = 1 + 2k; return of op k = 2 + 2k.
    # Calls sort before returns at equal times (treated as concurrent: lenient).
    order = sorted(
        [(op.call, 0, 1 + 2 * k) for k, op in enumerate(ops)]
        + [(op.ret, 1, 2 + 2 * k) for k, op in enumerate(ops)]
    )
    size = 2 * n + 2
    nxt = [0] * size
    prv = [0] * size
    prev_e = 0
    for _, _, e in order:
        nxt[prev_e] = e
        prv[e] = prev_e
        prev_e = e
    nxt[prev_e] = -1
    required = sum(1 for op in ops if not op.indeterminate)

    def lift(call: int) -> None:
        ret = call + 1
        p, q = prv[call], nxt[call]
        nxt[p] = q
        if q != -1:
            prv[q] = p
        p, q = prv[ret], nxt[ret]
        nxt[p] = q
        if q != -1:
            prv[q] = p

    def unlift(call: int) -> None:
        ret = call + 1
        p, q = prv[ret], nxt[ret]
        nxt[p] = ret
        if q != -1:
            prv[q] = ret
        p, q = prv[call], nxt[call]
        nxt[p] = call
        if q != -1:
            prv[q] = call

    step = model.step
    state = model.initial
    linearized = 0
    cache: set[tuple[int, Any]] = set()
    stack: list[tuple[int, Any]] = []
    entry = nxt[0]
    while True:
        if required == 0:
            return True, len(cache)
        if entry == -1:
            # Only indeterminate entries remain to be tried past this point: that
            # cannot happen while required > 0 (their returns sort last) — defensive.
            return False, len(cache)
        if entry & 1:  # a call
            k = (entry - 1) >> 1
            ok, new_state = step(state, ops[k])
            if ok:
                new_lin = linearized | (1 << k)
                key = (new_lin, new_state)
                if key not in cache:
                    cache.add(key)
                    if budget is not None and len(cache) > budget:
                        raise BudgetExhausted
                    stack.append((entry, state))
                    state = new_state
                    linearized = new_lin
                    if not ops[k].indeterminate:
                        required -= 1
                    lift(entry)
                    entry = nxt[0]
                    continue
            entry = nxt[entry]
        else:  # a return: its op must have been linearized by now
            if not stack:
                return False, len(cache)
            entry, state = stack.pop()
            k = (entry - 1) >> 1
            linearized &= ~(1 << k)
            if not ops[k].indeterminate:
                required += 1
            unlift(entry)
            entry = nxt[entry]


def _prefix_ops(events: list[Event], upto: int) -> list[Op]:
    """Ops of the first ``upto`` events; those still running at the cut are indeterminate."""
    return to_ops(events[:upto])


def _explain(events: list[Event], model: VersionedRegister, budget: int | None):
    """Shortest non-linearizable prefix (binary search: bad prefixes stay bad)."""
    lo, hi = 1, len(events)
    while lo < hi:
        mid = (lo + hi) // 2
        ok, _ = _search(_prefix_ops(events, mid), model, budget)
        if ok:
            lo = mid + 1
        else:
            hi = mid
    prefix = events[:lo]
    ops = to_ops(prefix)
    last = prefix[-1]
    failing = next(
        (
            o
            for o in ops
            if o.process == last.process and o.ret == last.time and not o.indeterminate
        ),
        ops[-1] if ops else None,
    )
    involved: list[Op] = []
    if failing is not None:
        # The failing op, everything concurrent with it, and the latest ops that
        # completed before it started (what it should have observed).
        before = [o for o in ops if o.ret < failing.call]
        horizon = max((o.call for o in before), default=-math.inf)
        involved = [o for o in ops if o.ret >= horizon and o.call <= failing.ret]
    return prefix, failing, involved


def check(
    history: Iterable[Event | Mapping[str, Any]],
    *,
    initial: Mapping[Any, tuple[Any, int | None]] | None = None,
    budget: int | None = 2_000_000,
) -> CheckResult:
    """Check a history; see the module docstring for its format.

    ``initial`` gives keys' starting (value, mod_revision) (default: absent).
    ``budget`` caps explored configurations per key (None: no cap)."""
    events = [_as_event(e, n) for n, e in enumerate(history)]
    ops = to_ops(events)  # validates the whole history up front
    by_key: dict[Any, list[Event]] = {}
    invoked_key: dict[Any, Any] = {}
    for e in events:
        # A completion belongs to its invocation's key even if it does not repeat it.
        if e.type == INVOKE:
            invoked_key[e.process] = e.key
            key = e.key
        else:
            key = invoked_key.pop(e.process)
        by_key.setdefault(key, []).append(e)
    ops_by_key: dict[Any, list[Op]] = {}
    for op in ops:
        ops_by_key.setdefault(op.key, []).append(op)
    result = CheckResult(True, keys_checked=len(by_key), ops_checked=len(ops))
    for key, key_ops in ops_by_key.items():
        model = VersionedRegister((initial or {}).get(key, (None, 0)))
        try:
            ok, explored = _search(key_ops, model, budget)
        except BudgetExhausted:
            result.linearizable = None
            result.key = key
            return result
        result.configurations += explored
        if not ok:
            prefix, failing, involved = _explain(by_key[key], model, budget)
            result.linearizable = False
            result.key = key
            result.prefix = prefix
            result.failing_op = failing
            result.ops = involved
            return result
    return result
