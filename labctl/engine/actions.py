"""Controller-side halves of modules (Ansible calls these action plugins).

``template`` renders on the controller; ``copy`` reads local files (a directory is
synced file by file, sending only files whose checksum differs on the host);
``set_fact``, ``assert``, ``fail`` and ``debug`` never touch the host. Every other
module is one round trip to the host's runner.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labctl.engine import templating
from labctl.engine.model import Task
from labctl.engine.templating import LazyVars
from labctl.errors import LabError

INLINE_LIMIT = 64 * 1024  # bytes sent with the first request; bigger files only on demand
COPY_ATTRS = ("mode", "owner", "group", "force")


@dataclass
class ActionContext:
    call: Callable[..., dict[str, Any]]   # call(module, args, check=, diff=) on the host
    check: bool
    diff: bool
    playbook_dir: Path


class ActionFailed(LabError):
    pass


def find_local(task: Task, src: str, kind: str, playbook_dir: Path) -> Path:
    """``src`` of copy/template: the role's files/ or templates/, then the site dir."""
    path = Path(src)
    if path.is_absolute():
        candidates = [path]
    else:
        candidates = []
        if task.role_path:
            candidates += [task.role_path / kind / src, task.role_path / src]
        candidates += [playbook_dir / kind / src, playbook_dir / src]
    for c in candidates:
        if c.exists():
            return c
    raise ActionFailed(f"could not find '{src}' (looked in {', '.join(str(c) for c in candidates)})")


def put_content(ctx: ActionContext, data: bytes, dest: str, attrs: dict[str, Any],
                label: str) -> dict[str, Any]:
    args = {k: attrs[k] for k in COPY_ATTRS if k in attrs}
    args.update(dest=dest, _src_name=label, _basename=os.path.basename(label))
    if len(data) <= INLINE_LIMIT:
        return ctx.call("copy", dict(args, content_b64=base64.b64encode(data).decode()),
                        check=ctx.check, diff=ctx.diff)
    checksum = hashlib.sha1(data).hexdigest()
    first = ctx.call("copy", dict(args, checksum=checksum), check=ctx.check, diff=ctx.diff)
    if not first.get("need_content"):
        return first
    return ctx.call("copy", dict(args, content_b64=base64.b64encode(data).decode()),
                    check=ctx.check, diff=ctx.diff)


def sync_directory(ctx: ActionContext, src: Path, dest: str, attrs: dict[str, Any]) -> dict[str, Any]:
    """Copy a local tree to ``dest``: one checksum round trip, then only what differs."""
    files = sorted(
        str(Path(root, name).relative_to(src))
        for root, _dirs, names in os.walk(src)
        for name in names
    )
    remote = ctx.call("_checksums", {"dest": dest, "paths": files})
    if remote.get("failed"):
        return remote
    sums = remote["checksums"]
    changed_files = []
    dirs = sorted({os.path.dirname(f) for f in files} | {""})
    made_dirs = False
    for d in dirs:
        target = os.path.join(dest, d) if d else dest
        res = ctx.call("file", {"path": target, "state": "directory"}, check=ctx.check, diff=False)
        if res.get("failed"):
            return res
        made_dirs = made_dirs or res.get("changed", False)
    attr_args = {k: attrs[k] for k in COPY_ATTRS if k in attrs and k != "force"}
    for rel in files:
        local = src / rel
        data = local.read_bytes()
        checksum = hashlib.sha1(data).hexdigest()
        target = os.path.join(dest, rel)
        if sums.get(rel) == checksum:
            if not attr_args:
                continue
            # same bytes: only mode/owner may need fixing, no content travels
            res = ctx.call("copy", dict(attr_args, dest=target, checksum=checksum),
                           check=ctx.check, diff=ctx.diff)
        else:
            res = put_content(ctx, data, target, attrs, str(local))
        if res.get("failed"):
            return dict(res, msg=f"{rel}: {res.get('msg')}")
        if res.get("changed"):
            changed_files.append(rel)
    result: dict[str, Any] = {"changed": bool(changed_files) or made_dirs, "dest": dest,
                              "changed_files": changed_files, "files": len(files)}
    if changed_files and ctx.diff:
        result["diff"] = {"before": "", "after": "".join(f"{f}\n" for f in changed_files),
                          "before_header": dest, "after_header": f"{src} (files to update)"}
    return result


def action_copy(ctx: ActionContext, task: Task, args: dict[str, Any], variables: LazyVars) -> dict:
    dest = args.get("dest")
    if not dest:
        raise ActionFailed("copy: 'dest' is required")
    if args.get("remote_src"):
        raise ActionFailed("copy: remote_src is not supported")
    if "content" in args:
        content = args["content"]
        if not isinstance(content, str):
            content = templating.filters.to_json(content) if isinstance(content, dict | list) else str(content)
        return put_content(ctx, content.encode(), dest, args, dest)
    src = args.get("src")
    if not src:
        raise ActionFailed("copy: give 'src' or 'content'")
    local = find_local(task, src, "files", ctx.playbook_dir)
    if local.is_dir():
        target = dest if src.endswith("/") else os.path.join(dest, local.name)
        return sync_directory(ctx, local, target, args)
    if dest.endswith("/"):
        dest = dest + local.name
    return put_content(ctx, local.read_bytes(), dest, args, str(local))


def action_template(ctx: ActionContext, task: Task, args: dict[str, Any], variables: LazyVars) -> dict:
    src, dest = args.get("src"), args.get("dest")
    if not src or not dest:
        raise ActionFailed("template: 'src' and 'dest' are required")
    local = find_local(task, src, "templates", ctx.playbook_dir)
    text = templating.render_text(local.read_text(encoding="utf-8"), variables, str(local))
    if dest.endswith("/"):
        dest = dest + local.name.removesuffix(".j2")
    return put_content(ctx, text.encode(), dest, args, str(local))


def action_set_fact(ctx: ActionContext, task: Task, args: dict[str, Any], variables: LazyVars) -> dict:
    facts = {k: v for k, v in args.items() if k != "cacheable"}
    return {"changed": False, "ansible_facts": facts}


def action_assert(ctx: ActionContext, task: Task, args: dict[str, Any], variables: LazyVars) -> dict:
    that = args.get("that")
    conditions = that if isinstance(that, list) else [that]
    for cond in conditions:
        if not templating.condition(cond, variables):
            msg = args.get("fail_msg") or args.get("msg") or "Assertion failed"
            return {"failed": True, "changed": False, "msg": msg, "assertion": cond,
                    "evaluated_to": False}
    return {"changed": False, "msg": args.get("success_msg") or "All assertions passed"}


def action_fail(ctx: ActionContext, task: Task, args: dict[str, Any], variables: LazyVars) -> dict:
    return {"failed": True, "changed": False, "msg": args.get("msg") or "Failed as requested from task"}


def action_debug(ctx: ActionContext, task: Task, args: dict[str, Any], variables: LazyVars) -> dict:
    if "var" in args:
        name = args["var"]
        return {"changed": False, name: templating.evaluate(str(name), variables)}
    return {"changed": False, "msg": args.get("msg", "Hello world!")}


CONTROLLER_ACTIONS = {
    "copy": action_copy,
    "template": action_template,
    "set_fact": action_set_fact,
    "assert": action_assert,
    "fail": action_fail,
    "debug": action_debug,
}

# Arguments templated late by the action itself (assert's conditions are expressions).
RAW_ARGS = {"assert": ("that",)}


def run_action(ctx: ActionContext, task: Task, args: dict[str, Any], variables: LazyVars) -> dict:
    action = CONTROLLER_ACTIONS.get(task.module)
    try:
        if action is not None:
            return action(ctx, task, args, variables)
        return ctx.call(task.module, args, check=ctx.check, diff=ctx.diff)
    except ActionFailed as exc:
        return {"failed": True, "changed": False, "msg": str(exc)}
