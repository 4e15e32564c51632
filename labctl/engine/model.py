"""What a loaded site is made of: plays, roles, tasks (plain frozen-ish dataclasses)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Role:
    name: str
    path: Path
    defaults: dict[str, Any]
    vars: dict[str, Any]
    tasks: list[dict[str, Any]]          # raw task dicts with their source, parsed later
    handlers: list[dict[str, Any]]
    dependencies: list[dict[str, Any]]   # meta/main.yml dependencies as role entries


@dataclass
class Task:
    """One task (or handler) as written, with what it inherits from its role entry."""

    name: str
    module: str
    args: dict[str, Any]
    source: str                           # "roles/x/tasks/main.yml, task 3" for messages
    role: str | None = None
    role_path: Path | None = None
    role_params: dict[str, Any] = field(default_factory=dict)
    when: list[Any] = field(default_factory=list)
    loop: Any = None
    loop_var: str = "item"
    loop_label: Any = None
    register: str | None = None
    notify: list[str] = field(default_factory=list)
    listen: list[str] = field(default_factory=list)
    tags: frozenset[str] = frozenset()
    changed_when: Any = None
    failed_when: Any = None
    ignore_errors: bool = False
    until: Any = None
    retries: int = 3
    delay: float = 5.0
    vars: dict[str, Any] = field(default_factory=dict)
    check_mode: bool | None = None
    diff: bool | None = None
    no_log: bool = False

    @property
    def display_name(self) -> str:
        base = self.name or self.module
        return f"{self.role} : {base}" if self.role else base


@dataclass
class Play:
    name: str
    hosts: str
    vars: dict[str, Any]
    gather_facts: bool
    tasks: list[Task]                     # pre_tasks, role tasks, tasks, post_tasks in order
    handlers: list[Task]                  # definition order: roles' then the play's
    role_defaults: list[tuple[str, dict[str, Any]]]   # (role name, defaults) in play order
    role_vars: list[tuple[str, dict[str, Any]]]
    source: str = ""


@dataclass
class Site:
    path: Path
    plays: list[Play]
