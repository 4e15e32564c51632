"""Jinja2 templating with Ansible's semantics.

- StrictUndefined: an undefined variable is an error, never an empty string.
- Variables are templated lazily when used (``a: "{{ b }}/x"`` resolves ``b`` at use),
  recursively, with a loop guard.
- A string that is exactly one ``{{ expression }}`` keeps the expression's native type
  (``loop: "{{ hosts }}"`` gives a list), anything else renders to a string.
- ``default(omit)`` yields a placeholder; module arguments equal to it are dropped.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from jinja2 import Environment, StrictUndefined, Template, TemplateError, Undefined
from jinja2.exceptions import TemplateSyntaxError, UndefinedError

from labctl.engine import filters
from labctl.errors import LabError

OMIT = "__omit_place_holder__labctl"

# exactly one {{ }} and nothing around it (not even a newline) keeps the native type
_SINGLE_EXPR = re.compile(r"^\{\{(?P<expr>(?:(?!\{\{|\}\}).)*)\}\}\Z", re.S)


class TemplatingError(LabError):
    """A template or expression failed; ``detail`` is jinja's message."""

    def __init__(self, detail: str, source: str = "") -> None:
        self.detail = detail
        self.source = source
        super().__init__(detail)


def make_environment() -> Environment:
    env = Environment(
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        extensions=["jinja2.ext.do", "jinja2.ext.loopcontrols"],
        autoescape=False,
    )
    env.filters.update(filters.FILTERS)
    env.tests.update(filters.TESTS)
    env.globals["omit"] = OMIT
    return env


class _Compiled:
    """Per-process cache of compiled templates: the same strings recur on every host."""

    def __init__(self, env: Environment) -> None:
        self.env = env
        self._cache: dict[tuple[str, str], Template] = {}
        self._lock = threading.Lock()

    def get(self, kind: str, source: str) -> Template:
        key = (kind, source)
        tmpl = self._cache.get(key)
        if tmpl is None:
            text = source if kind == "text" else "{% set result = (" + source + ") %}"
            tmpl = self.env.from_string(text)
            with self._lock:
                self._cache[key] = tmpl
        return tmpl


ENV = make_environment()
_COMPILED = _Compiled(ENV)


class Deferred:
    """A variable whose value is computed on first use (e.g. building the wheelhouse
    only when a role refers to it); thread-safe, computed once."""

    def __init__(self, compute) -> None:
        self._compute = compute
        self._lock = threading.Lock()
        self._done = False
        self._value: Any = None

    def get(self) -> Any:
        with self._lock:
            if not self._done:
                self._value = self._compute()
                self._done = True
            return self._value


class LazyVars(dict):
    """The variables a template sees: raw values templated on first access.

    Subclasses dict because jinja's Context looks names up in its parent with ``in`` and
    ``[]``; the dict itself stays empty, values live in ``raw``.
    """

    def __init__(self, raw: Mapping[str, Any]) -> None:
        super().__init__()
        self.raw = raw
        self._cache: dict[str, Any] = {}
        self._resolving: set[str] = set()

    def __contains__(self, key: object) -> bool:
        return key in self.raw or key in ENV.globals

    def __getitem__(self, key: str) -> Any:
        if key in self._cache:
            return self._cache[key]
        if key not in self.raw:
            if key in ENV.globals:
                return ENV.globals[key]
            raise KeyError(key)
        if key in self._resolving:
            raise TemplatingError(f"recursive loop detected in the definition of variable '{key}'")
        self._resolving.add(key)
        try:
            value = self.raw[key]
            value = value.get() if isinstance(value, Deferred) else template(value, self)
        finally:
            self._resolving.discard(key)
        self._cache[key] = value
        return value

    def get(self, key: str, default: Any = None) -> Any:
        return self.get(key, default)

    def keys(self):  # type: ignore[override]
        return self.raw.keys()

    def __iter__(self) -> Iterator[str]:
        return iter(self.raw)

    def __len__(self) -> int:
        return len(self.raw)

    def items(self):  # type: ignore[override]
        return [(k, self[k]) for k in self.raw]

    def values(self):  # type: ignore[override]
        return [self[k] for k in self.raw]


def is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value or "{#" in value)


def _run(tmpl: Template, variables: LazyVars) -> Any:
    ctx = tmpl.new_context(variables, shared=True)
    return ctx, "".join(tmpl.root_render_func(ctx))


def evaluate(expression: str, variables: LazyVars) -> Any:
    """Value of a bare jinja expression (``when:``, ``that:``, ``var:``)."""
    try:
        tmpl = _COMPILED.get("expr", expression)
        ctx, _ = _run(tmpl, variables)
        value = ctx.vars["result"]
        if isinstance(value, Undefined):
            value._fail_with_undefined_error()
        if isinstance(value, str) and is_template(value):
            value = template(value, variables)
        return value
    except TemplatingError:
        raise
    except (TemplateError, TypeError, ValueError, KeyError, ArithmeticError) as exc:
        raise TemplatingError(_describe(exc), expression) from None


def template(value: Any, variables: LazyVars) -> Any:
    """Template strings inside ``value`` (recursively through lists and dicts)."""
    if isinstance(value, str):
        if not is_template(value):
            return value
        single = _SINGLE_EXPR.match(value)
        if single and "{%" not in value and "{#" not in value:
            return evaluate(single.group("expr"), variables)
        try:
            _, text = _run(_COMPILED.get("text", value), variables)
            return text
        except (TemplateError, TypeError, ValueError, KeyError, ArithmeticError) as exc:
            raise TemplatingError(_describe(exc), value) from None
    if isinstance(value, list):
        return [template(v, variables) for v in value]
    if isinstance(value, dict) and not isinstance(value, LazyVars):
        return {k: template(v, variables) for k, v in value.items()}
    return value


def render_text(source: str, variables: LazyVars, name: str) -> str:
    """Render a whole template file (always to text)."""
    try:
        tmpl = ENV.from_string(source)
        tmpl.name = name
        _, text = _run(tmpl, variables)
        return text
    except TemplateSyntaxError as exc:
        raise TemplatingError(f"syntax error in {name} line {exc.lineno}: {exc.message}") from None
    except (TemplateError, TypeError, ValueError, KeyError, ArithmeticError) as exc:
        raise TemplatingError(f"{_describe(exc)} (in template {name})") from None


def condition(expression: Any, variables: LazyVars) -> bool:
    """An Ansible conditional: a bool, an expression, or a list that must all hold."""
    if isinstance(expression, list):
        return all(condition(e, variables) for e in expression)
    if isinstance(expression, bool):
        return expression
    if expression is None:
        return False
    text = str(expression).strip()
    single = _SINGLE_EXPR.match(text)
    if single:
        text = single.group("expr")
    value = evaluate(text, variables)
    if isinstance(value, str):
        return filters.to_bool(value)
    return bool(value)


def undefined_name(detail: str) -> str | None:
    match = re.search(r"'([^']+)' is undefined", detail)
    return match.group(1) if match else None


def _describe(exc: Exception) -> str:
    if isinstance(exc, UndefinedError):
        return f"undefined variable: {exc.message}"
    if isinstance(exc, TemplateSyntaxError):
        return f"template syntax error: {exc.message}"
    return f"{type(exc).__name__}: {exc}"


def strip_omitted(args: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in args.items() if v != OMIT}
