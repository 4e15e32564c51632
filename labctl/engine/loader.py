"""Load a site (``site.yml`` in Ansible play syntax) and its roles into model objects.

Pure apart from reading YAML files. Roles are found in ``roles/`` next to the site
file and then in the extra ``roles_path`` directories. Meta dependencies run before
the role that needs them, once per play (unless given different parameters).
``import_tasks``/``include_tasks`` are expanded statically.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from labctl.engine.model import Play, Role, Site, Task
from labctl.errors import LabError

try:
    _Loader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - libyaml missing
    _Loader = yaml.SafeLoader

PREFIXES = ("ansible.builtin.", "ansible.legacy.", "ansible.posix.", "community.general.")
ALIASES = {"systemd": "systemd_service", "include": "include_tasks"}
MODULES = {
    "file", "copy", "template", "command", "shell", "systemd_service", "lineinfile",
    "sysctl", "wait_for", "stat", "set_fact", "assert", "fail", "pip", "debug",
}
# Free-form "k=v" options that command/shell take out of their command line.
COMMAND_OPTIONS = {"creates", "removes", "chdir", "executable", "stdin"}
TASK_KEYWORDS = {
    "name", "when", "loop", "with_items", "with_list", "loop_control", "register", "notify",
    "tags", "changed_when", "failed_when", "ignore_errors", "until", "retries", "delay",
    "vars", "become", "become_user", "become_method", "check_mode", "diff", "no_log", "args",
    "listen",
}
UNSUPPORTED_KEYWORDS = {"delegate_to", "run_once", "block", "rescue", "always", "async",
                        "poll", "environment", "local_action", "with_dict", "with_fileglob"}
PLAY_KEYWORDS = {"name", "hosts", "roles", "tasks", "pre_tasks", "post_tasks", "handlers",
                 "vars", "gather_facts", "tags", "become", "become_user", "any_errors_fatal",
                 "serial", "strategy", "remote_user", "connection"}


def read_yaml(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.load(f, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise LabError(f"{path}: invalid YAML: {exc}") from None
    except OSError as exc:
        raise LabError(f"cannot read {path}: {exc.strerror}") from None


def _main_file(directory: Path) -> Path | None:
    for name in ("main.yml", "main.yaml"):
        if (directory / name).is_file():
            return directory / name
    return None


def _mapping(data: Any, where: Path) -> dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise LabError(f"{where}: expected a mapping of variables, got {type(data).__name__}")
    return data


class RoleLoader:
    """Finds and caches roles by name."""

    def __init__(self, search_path: Sequence[Path]) -> None:
        self.search_path = [Path(p) for p in search_path]
        self._cache: dict[str, Role] = {}

    def find(self, name: str, needed_by: str) -> Role:
        if name in self._cache:
            return self._cache[name]
        for base in self.search_path:
            candidate = base / name
            if candidate.is_dir():
                role = self._load(name, candidate)
                self._cache[name] = role
                return role
        looked = ", ".join(str(p) for p in self.search_path)
        raise LabError(f"{needed_by}: role '{name}' not found (looked in {looked})")

    def _load(self, name: str, path: Path) -> Role:
        def load_main(sub: str) -> Any:
            f = _main_file(path / sub)
            return read_yaml(f) if f else None

        defaults = _mapping(load_main("defaults"), path / "defaults")
        variables = _mapping(load_main("vars"), path / "vars")
        meta = load_main("meta") or {}
        deps = meta.get("dependencies") or [] if isinstance(meta, dict) else []
        tasks_file = _main_file(path / "tasks")
        handlers_file = _main_file(path / "handlers")
        tasks = expand_includes(tasks_file, path / "tasks") if tasks_file else []
        handlers = expand_includes(handlers_file, path / "handlers") if handlers_file else []
        return Role(name, path, defaults, variables, tasks, handlers,
                    [normalize_role_entry(d, f"{path}/meta/main.yml") for d in deps])


def expand_includes(path: Path, base: Path, inherited: dict[str, Any] | None = None,
                    depth: int = 0) -> list[dict[str, Any]]:
    """Raw task dicts of a task file with imports expanded; each gets ``__source__``."""
    if depth > 20:
        raise LabError(f"{path}: import_tasks nested too deeply (a loop?)")
    data = read_yaml(path) or []
    if not isinstance(data, list):
        raise LabError(f"{path}: a task file must be a list of tasks")
    out: list[dict[str, Any]] = []
    for index, raw in enumerate(data, 1):
        if not isinstance(raw, dict):
            raise LabError(f"{path}, task {index}: a task must be a mapping")
        source = f"{path}, task {index}"
        include = next((k for k in raw if _strip(k) in ("import_tasks", "include_tasks")), None)
        if include:
            target = raw[include]
            if isinstance(target, dict):
                target = target.get("file")
            if not isinstance(target, str) or "{{" in target:
                raise LabError(f"{source}: {include} needs a literal file name")
            child = (path.parent / target) if (path.parent / target).exists() else base / target
            extra = {
                "when": _as_list(raw.get("when")),
                "tags": _as_list(raw.get("tags")),
                "vars": raw.get("vars") or {},
            }
            merged = _merge_inherited(inherited, extra)
            out.extend(expand_includes(child, base, merged, depth + 1))
            continue
        task = dict(raw)
        task["__source__"] = source
        if inherited:
            task["__inherited__"] = inherited
        out.append(task)
    return out


def _merge_inherited(parent: dict[str, Any] | None, child: dict[str, Any]) -> dict[str, Any]:
    if not parent:
        return child
    return {
        "when": parent["when"] + child["when"],
        "tags": parent["tags"] + child["tags"],
        "vars": {**parent["vars"], **child["vars"]},
    }


def _strip(name: str) -> str:
    for prefix in PREFIXES:
        if name.startswith(prefix):
            name = name[len(prefix):]
    return ALIASES.get(name, name)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, str) and "," in value and "{{" not in value:
        return [v.strip() for v in value.split(",") if v.strip()]
    return [value]


def split_args(text: str) -> list[str]:
    """Split ``k=v`` words on blanks, but not inside quotes or jinja ``{{ }}``/``{% %}``;
    quotes around a value are removed."""
    tokens: list[str] = []
    current: list[str] = []
    quote = ""
    depth = 0
    i = 0
    while i < len(text):
        c = text[i]
        pair = text[i:i + 2]
        if quote:
            if c == quote:
                quote = ""
            else:
                current.append(c)
        elif pair in ("{{", "{%"):
            depth += 1
            current.append(pair)
            i += 2
            continue
        elif pair in ("}}", "%}") and depth:
            depth -= 1
            current.append(pair)
            i += 2
            continue
        elif c in "'\"" and not depth:
            quote = c
        elif c.isspace() and not depth:
            if current:
                tokens.append("".join(current))
                current = []
        else:
            current.append(c)
        i += 1
    if current:
        tokens.append("".join(current))
    return tokens


def parse_free_form(module: str, text: str) -> dict[str, Any]:
    """``copy: src=a dest=b`` → dict; for command/shell the rest is ``_raw_params``."""
    tokens = split_args(text)
    if module in ("command", "shell"):
        args: dict[str, Any] = {}
        rest = []
        for tok in tokens:
            key, eq, value = tok.partition("=")
            if eq and key in COMMAND_OPTIONS:
                args[key] = value
            else:
                rest.append(tok)
        if rest:
            args["_raw_params"] = " ".join(shlex.quote(t) if " " in t else t for t in rest)
        # keep the user's exact command line when there were no options in it
        if not args.keys() - {"_raw_params"}:
            args["_raw_params"] = text
        return args
    args = {}
    for tok in tokens:
        key, eq, value = tok.partition("=")
        if not eq:
            raise LabError(f"'{module}: {text}': expected key=value arguments, got '{tok}'")
        args[key] = value
    return args


def parse_task(raw: dict[str, Any], role: Role | None = None, role_params: dict | None = None,
               extra_when: list | None = None, extra_tags: Sequence[str] = ()) -> Task:
    source = raw.get("__source__", "task")
    inherited = raw.get("__inherited__") or {}
    keys = [k for k in raw if not k.startswith("__")]
    for k in keys:
        if k in UNSUPPORTED_KEYWORDS:
            raise LabError(f"{source}: '{k}' is not supported by labctl's engine")
    candidates = [k for k in keys if k not in TASK_KEYWORDS]
    if len(candidates) != 1:
        what = ", ".join(candidates) or "none"
        raise LabError(f"{source}: a task needs exactly one module (found: {what})")
    written = candidates[0]
    module = _strip(written)
    if module not in MODULES:
        known = ", ".join(sorted(MODULES))
        raise LabError(f"{source}: unknown module '{written}' (supported: {known})")
    value = raw[written]
    if isinstance(value, dict):
        args = dict(value)
    elif value is None:
        args = {}
    elif isinstance(value, str):
        args = parse_free_form(module, value)
    else:
        raise LabError(f"{source}: arguments of '{written}' must be a mapping or a string")
    if isinstance(raw.get("args"), dict):
        args = {**raw["args"], **args}

    loop = raw.get("loop", raw.get("with_items", raw.get("with_list")))
    control = raw.get("loop_control") or {}
    tags = {str(t) for t in _as_list(raw.get("tags"))}
    tags |= {str(t) for t in inherited.get("tags", [])} | set(extra_tags)
    when = list(extra_when or []) + list(inherited.get("when", [])) + _as_list(raw.get("when"))
    return Task(
        name=str(raw.get("name") or ""),
        module=module,
        args=args,
        source=source,
        role=role.name if role else None,
        role_path=role.path if role else None,
        role_params=dict(role_params or {}),
        when=when,
        loop=loop,
        loop_var=control.get("loop_var", "item"),
        loop_label=control.get("label"),
        register=raw.get("register"),
        notify=[str(n) for n in _as_list(raw.get("notify"))],
        listen=[str(n) for n in _as_list(raw.get("listen"))],
        tags=frozenset(tags),
        changed_when=raw.get("changed_when"),
        failed_when=raw.get("failed_when"),
        ignore_errors=bool(raw.get("ignore_errors", False)),
        until=raw.get("until"),
        retries=int(raw.get("retries", 3)),
        delay=float(raw.get("delay", 5)),
        vars={**inherited.get("vars", {}), **(raw.get("vars") or {})},
        check_mode=raw.get("check_mode"),
        diff=raw.get("diff"),
        no_log=bool(raw.get("no_log", False)),
    )


def normalize_role_entry(entry: Any, where: str) -> dict[str, Any]:
    """``- name`` / ``- role: name`` / ``- {role: name, tags: x, var: 1}`` → one shape."""
    if isinstance(entry, str):
        return {"role": entry, "params": {}, "tags": [], "when": []}
    if isinstance(entry, dict):
        name = entry.get("role") or entry.get("name")
        if not name:
            raise LabError(f"{where}: role entry without a name: {entry!r}")
        params = {k: v for k, v in entry.items()
                  if k not in ("role", "name", "tags", "when", "vars", "become")}
        params.update(entry.get("vars") or {})
        return {"role": name, "params": params, "tags": _as_list(entry.get("tags")),
                "when": _as_list(entry.get("when"))}
    raise LabError(f"{where}: a role entry must be a name or a mapping, got {entry!r}")


class _PlayBuilder:
    def __init__(self, roles: RoleLoader, play_tags: list[str]) -> None:
        self.roles = roles
        self.play_tags = play_tags
        self.tasks: list[Task] = []
        self.handlers: list[Task] = []
        self.defaults: list[tuple[str, dict]] = []
        self.vars: list[tuple[str, dict]] = []
        self._applied: list[tuple[str, dict]] = []
        self._handlers_of: set[str] = set()

    def add_role(self, entry: dict[str, Any], where: str, tags: list[str], when: list,
                 chain: tuple[str, ...] = ()) -> None:
        name = entry["role"]
        if name in chain:
            raise LabError(f"{where}: role dependency loop: {' -> '.join(chain + (name,))}")
        role = self.roles.find(name, where)
        tags = tags + [str(t) for t in entry["tags"]]
        when = when + entry["when"]
        for dep in role.dependencies:
            self.add_role(dep, f"{role.path}/meta/main.yml", tags, when, chain + (name,))
        key = (name, entry["params"])
        if key in self._applied:
            return  # Ansible runs a role once per play unless its parameters differ
        self._applied.append(key)
        self.defaults.append((name, role.defaults))
        self.vars.append((name, role.vars))
        all_tags = self.play_tags + tags
        for raw in role.tasks:
            self.tasks.append(parse_task(raw, role, entry["params"], when, all_tags))
        if name not in self._handlers_of:
            self._handlers_of.add(name)
            for raw in role.handlers:
                self.handlers.append(parse_task(raw, role, entry["params"], [], all_tags))

    def add_tasks(self, raws: list[Any], where: str, base: Path) -> None:
        for index, raw in enumerate(raws or [], 1):
            if not isinstance(raw, dict):
                raise LabError(f"{where}, task {index}: a task must be a mapping")
            raw = dict(raw)
            raw.setdefault("__source__", f"{where}, task {index}")
            include = next((k for k in raw if _strip(k) in ("import_tasks", "include_tasks")), None)
            if include:
                target = raw[include] if isinstance(raw[include], str) else raw[include].get("file")
                for sub in expand_includes(base / target, base, {
                    "when": _as_list(raw.get("when")), "tags": _as_list(raw.get("tags")),
                    "vars": raw.get("vars") or {}}):
                    self.tasks.append(parse_task(sub, extra_tags=self.play_tags))
                continue
            self.tasks.append(parse_task(raw, extra_tags=self.play_tags))


def load_site(site_path: Path | str, roles_path: Sequence[Path | str] = ()) -> Site:
    site_path = Path(site_path)
    data = read_yaml(site_path)
    if not isinstance(data, list):
        raise LabError(f"{site_path}: a site must be a list of plays (- hosts: ...)")
    search = [site_path.parent / "roles", *(Path(p) for p in roles_path)]
    roles = RoleLoader(search)
    plays = []
    for index, raw in enumerate(data, 1):
        where = f"{site_path}, play {index}"
        if not isinstance(raw, dict) or "hosts" not in raw:
            raise LabError(f"{where}: a play needs 'hosts:'")
        unknown = set(raw) - PLAY_KEYWORDS
        if unknown:
            raise LabError(f"{where}: unsupported play keyword(s): {', '.join(sorted(unknown))}")
        hosts = raw["hosts"]
        if isinstance(hosts, list):
            hosts = ":".join(str(h) for h in hosts)
        builder = _PlayBuilder(roles, [str(t) for t in _as_list(raw.get("tags"))])
        builder.add_tasks(raw.get("pre_tasks") or [], f"{where} pre_tasks", site_path.parent)
        for entry in raw.get("roles") or []:
            builder.add_role(normalize_role_entry(entry, where), where, [], [])
        builder.add_tasks(raw.get("tasks") or [], f"{where} tasks", site_path.parent)
        builder.add_tasks(raw.get("post_tasks") or [], f"{where} post_tasks", site_path.parent)
        for h_index, h in enumerate(raw.get("handlers") or [], 1):
            h = dict(h)
            h.setdefault("__source__", f"{where} handlers, handler {h_index}")
            builder.handlers.append(parse_task(h, extra_tags=builder.play_tags))
        plays.append(Play(
            name=str(raw.get("name") or hosts),
            hosts=str(hosts),
            vars=_mapping(raw.get("vars"), site_path),
            gather_facts=bool(raw.get("gather_facts", True)),
            tasks=builder.tasks,
            handlers=builder.handlers,
            role_defaults=builder.defaults,
            role_vars=builder.vars,
            source=where,
        ))
    return Site(site_path, plays)
