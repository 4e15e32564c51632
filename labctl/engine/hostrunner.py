"""The module runner that executes tasks ON a host (stdlib only, Python >= 3.7).

The controller sends this file's source once per run over one SSH channel and keeps
the process running: every task is one JSON line in (``{"module", "args", "check",
"diff"}``) and one JSON line out with Ansible's result contract (``changed``,
``failed``, ``msg``, ``diff`` plus module-specific keys). Nothing here imports labctl:
the same file is imported locally by the unit tests and run in a tmp dir.

Modules follow Ansible's names and argument names. Each one is idempotent (it reads
the current state first and acts only on a difference), honours check mode (reports
what it would change, changes nothing) and fills ``diff`` with before/after text.
"""

import base64
import contextlib
import grp
import hashlib
import json
import os
import platform
import pwd
import re
import shlex
import socket
import stat as stat_mod
import subprocess
import sys
import tempfile
import time


class ModuleFailed(Exception):
    """Raised by a module to fail its task with ``msg`` (plus optional result keys)."""

    def __init__(self, msg, **extra):
        super().__init__(msg)
        self.msg = msg
        self.extra = extra


# ---------------------------------------------------------------------------
# shared helpers


def sha1_file(path):
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def parse_mode(mode):
    """Ansible accepts an int (YAML 0644 is already octal) or an octal string."""
    if mode is None:
        return None
    if isinstance(mode, int):
        return mode
    text = str(mode).strip()
    if re.fullmatch(r"0?[0-7]{3,4}", text):
        return int(text, 8)
    raise ModuleFailed(f"mode {mode!r} is not an octal mode such as '0644'")


def to_bool(value):
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "yes", "true", "on", "y")


def lookup_uid(owner):
    if owner is None:
        return -1
    try:
        return int(owner) if str(owner).isdigit() else pwd.getpwnam(owner).pw_uid
    except KeyError:
        raise ModuleFailed(f"owner {owner!r} does not exist on this host") from None


def lookup_gid(group):
    if group is None:
        return -1
    try:
        return int(group) if str(group).isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        raise ModuleFailed(f"group {group!r} does not exist on this host") from None


def path_state(path):
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "absent"
    if stat_mod.S_ISLNK(st.st_mode):
        return "link"
    if stat_mod.S_ISDIR(st.st_mode):
        return "directory"
    return "file"


def apply_attributes(path, args, check, result, follow=True):
    """Bring mode/owner/group of an existing path in line; record what changed."""
    mode = parse_mode(args.get("mode"))
    uid = lookup_uid(args.get("owner"))
    gid = lookup_gid(args.get("group"))
    st = os.stat(path) if follow else os.lstat(path)
    changed = False
    before, after = {}, {}
    if mode is not None and stat_mod.S_IMODE(st.st_mode) != mode:
        before["mode"] = f"{stat_mod.S_IMODE(st.st_mode):04o}"
        after["mode"] = f"{mode:04o}"
        changed = True
        if not check:
            os.chmod(path, mode)
    if (uid != -1 and st.st_uid != uid) or (gid != -1 and st.st_gid != gid):
        before["owner"] = f"{st.st_uid}:{st.st_gid}"
        after["owner"] = f"{st.st_uid if uid == -1 else uid}:{st.st_gid if gid == -1 else gid}"
        changed = True
        if not check:
            os.chown(path, uid, gid)
    if changed:
        result["changed"] = True
        result.setdefault("diff", {}).setdefault("before", {}).update(before)
        result["diff"].setdefault("after", {}).update(after)
    return changed


def atomic_write(dest, data, mode=None):
    """Write via a temp file in the same directory, then rename (readers never see half)."""
    directory = os.path.dirname(os.path.abspath(dest))
    fd, tmp = tempfile.mkstemp(prefix=".labctl-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        if mode is not None:
            os.chmod(tmp, mode)
        elif os.path.exists(dest):
            os.chmod(tmp, stat_mod.S_IMODE(os.stat(dest).st_mode))
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def text_or_none(data):
    """Diff text for data that is text and not huge; None for binary."""
    if data is None:
        return ""
    if len(data) > 256 * 1024 or b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


# ---------------------------------------------------------------------------
# file, copy, stat


def module_file(args, check, want_diff):
    path = args.get("path") or args.get("dest") or args.get("name")
    if not path:
        raise ModuleFailed("file: 'path' is required")
    current = path_state(path)
    state = args.get("state") or ("file" if current == "absent" else current)
    if state == "link" and current == "link" and args.get("src") is None:
        raise ModuleFailed("file: state=link needs 'src'")
    result = {"changed": False, "path": path, "state": state}
    diff = {"before": {"path": path, "state": current}, "after": {"path": path, "state": state}}
    if state == "absent":
        if current != "absent":
            result["changed"] = True
            if not check:
                if current == "directory":
                    import shutil

                    shutil.rmtree(path)
                else:
                    os.unlink(path)
    elif state == "directory":
        if current not in ("absent", "directory"):
            raise ModuleFailed(f"file: {path} exists and is a {current}, not a directory")
        if current == "absent":
            result["changed"] = True
            if not check:
                os.makedirs(path)
        if not check or current != "absent":
            apply_attributes(path, args, check, result)
    elif state == "file":
        if current == "absent":
            raise ModuleFailed(f"file: {path} does not exist (use state=touch to create it)")
        if current == "directory":
            raise ModuleFailed(f"file: {path} is a directory")
        apply_attributes(path, args, check, result)
    elif state == "touch":
        if current == "absent":
            result["changed"] = True
            if not check:
                open(path, "ab").close()
        if not check or current != "absent":
            apply_attributes(path, args, check, result)
    elif state == "link":
        src = args.get("src")
        existing = os.readlink(path) if current == "link" else None
        if current not in ("absent", "link"):
            raise ModuleFailed(f"file: {path} exists and is a {current}, not a link")
        if existing != src:
            result["changed"] = True
            diff["before"]["src"] = existing
            diff["after"]["src"] = src
            if not check:
                if current == "link":
                    os.unlink(path)
                os.symlink(src, path)
    else:
        raise ModuleFailed(f"file: unsupported state {state!r}")
    if result["changed"] and want_diff:
        merged = result.get("diff") or {}
        diff["before"].update(merged.get("before", {}))
        diff["after"].update(merged.get("after", {}))
        result["diff"] = diff
    return result


def module_copy(args, check, want_diff):
    """Write ``content_b64`` to ``dest``; with only ``checksum`` given, say whether the
    content is needed (the controller then sends it): big files cross the wire only
    when they differ."""
    dest = args.get("dest")
    if not dest:
        raise ModuleFailed("copy: 'dest' is required")
    if dest.endswith("/") or os.path.isdir(dest):
        name = args.get("_basename")
        if not name:
            raise ModuleFailed(f"copy: dest {dest} is a directory; give a file path")
        dest = os.path.join(dest, name)
    content = args.get("content_b64")
    data = base64.b64decode(content) if content is not None else None
    want = args.get("checksum") or hashlib.sha1(data).hexdigest()
    exists = os.path.lexists(dest)
    if exists and os.path.isdir(dest):
        raise ModuleFailed(f"copy: {dest} is a directory")
    current = sha1_file(dest) if exists else None
    force = to_bool(args.get("force", True))
    result = {"changed": False, "dest": dest, "checksum": want}
    if current != want and (force or not exists):
        if data is None:
            if check and not want_diff:
                result["changed"] = True
                return result
            return {"need_content": True, "dest": dest}
        result["changed"] = True
        if want_diff:
            before = b""
            if exists and os.path.getsize(dest) <= 256 * 1024:
                with open(dest, "rb") as f:
                    before = f.read()
            b_text, a_text = text_or_none(before), text_or_none(data)
            if b_text is None or a_text is None:
                result["diff"] = {"before": "", "after": "", "dst_binary": True}
            else:
                result["diff"] = {
                    "before": b_text,
                    "after": a_text,
                    "before_header": dest if exists else f"{dest} (absent)",
                    "after_header": args.get("_src_name") or dest,
                }
        if not check:
            parent = os.path.dirname(os.path.abspath(dest))
            if not os.path.isdir(parent):
                raise ModuleFailed(f"copy: destination directory {parent} does not exist")
            atomic_write(dest, data, parse_mode(args.get("mode")))
    if os.path.exists(dest):
        saved = result.pop("diff", None)
        apply_attributes(dest, args, check, result)
        if saved is not None:
            result["diff"] = saved
    return result


def module_checksums(args, check, want_diff):
    """sha1 of each relative path under ``dest`` (None when absent): lets the
    controller send only the files of a directory copy that differ."""
    dest = args["dest"]
    out = {}
    for rel in args.get("paths", []):
        p = os.path.join(dest, rel)
        out[rel] = sha1_file(p) if os.path.isfile(p) else None
    return {"changed": False, "checksums": out}


def module_stat(args, check, want_diff):
    path = args.get("path")
    if not path:
        raise ModuleFailed("stat: 'path' is required")
    follow = to_bool(args.get("follow", False))
    try:
        st = os.stat(path) if follow else os.lstat(path)
    except FileNotFoundError:
        return {"changed": False, "stat": {"exists": False}}
    info = {
        "exists": True,
        "path": path,
        "mode": f"{stat_mod.S_IMODE(st.st_mode):04o}",
        "isdir": stat_mod.S_ISDIR(st.st_mode),
        "isreg": stat_mod.S_ISREG(st.st_mode),
        "islnk": stat_mod.S_ISLNK(st.st_mode),
        "uid": st.st_uid,
        "gid": st.st_gid,
        "size": st.st_size,
        "mtime": st.st_mtime,
    }
    with contextlib.suppress(KeyError):
        info["pw_name"] = pwd.getpwuid(st.st_uid).pw_name
    with contextlib.suppress(KeyError):
        info["gr_name"] = grp.getgrgid(st.st_gid).gr_name
    if info["islnk"]:
        info["lnk_target"] = os.readlink(path)
    if info["isreg"] and to_bool(args.get("get_checksum", True)):
        info["checksum"] = sha1_file(path)
    return {"changed": False, "stat": info}


# ---------------------------------------------------------------------------
# lineinfile, sysctl


def plan_lineinfile(lines, args):
    """Pure: the new list of lines (without newlines) for a lineinfile request."""
    regexp = args.get("regexp")
    line = args.get("line")
    state = args.get("state", "present")
    pattern = re.compile(regexp) if regexp else None

    def matches(text):
        return bool(pattern.search(text)) if pattern else text == line

    if state == "absent":
        if pattern is None and line is None:
            raise ModuleFailed("lineinfile: state=absent needs 'regexp' or 'line'")
        return [x for x in lines if not matches(x)]
    if line is None:
        raise ModuleFailed("lineinfile: state=present needs 'line'")
    hits = [i for i, x in enumerate(lines) if matches(x)]
    if hits:
        new = list(lines)
        new[hits[-1]] = line
        return new
    if pattern is not None and line in lines:
        return list(lines)
    new = list(lines)
    after, before = args.get("insertafter"), args.get("insertbefore")
    if before:
        if before == "BOF":
            new.insert(0, line)
            return new
        idx = [i for i, x in enumerate(new) if re.search(before, x)]
        new.insert(idx[-1] if idx else len(new), line)
        return new
    if after and after != "EOF":
        idx = [i for i, x in enumerate(new) if re.search(after, x)]
        if idx:
            new.insert(idx[-1] + 1, line)
            return new
    new.append(line)
    return new


def edit_text_file(path, new_text_of, args, check, want_diff, create):
    """Read ``path``, compute new text with ``new_text_of(old_text)``, write if different."""
    exists = os.path.exists(path)
    if not exists and not create:
        raise ModuleFailed(f"{path} does not exist (create=yes would create it)")
    old = ""
    if exists:
        with open(path, encoding="utf-8") as f:
            old = f.read()
    new = new_text_of(old)
    result = {"changed": new != old, "path": path}
    if result["changed"]:
        if want_diff:
            result["diff"] = {
                "before": old,
                "after": new,
                "before_header": path if exists else f"{path} (absent)",
                "after_header": path,
            }
        if not check:
            parent = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(parent):
                os.makedirs(parent)
            atomic_write(path, new.encode("utf-8"), parse_mode(args.get("mode")))
    if os.path.exists(path):
        saved = result.pop("diff", None)
        apply_attributes(path, args, check, result)
        if saved is not None:
            result["diff"] = saved
    return result


def split_lines(text):
    return text.splitlines()


def join_lines(lines):
    return "".join(x + "\n" for x in lines)


def module_lineinfile(args, check, want_diff):
    path = args.get("path") or args.get("dest") or args.get("name")
    if not path:
        raise ModuleFailed("lineinfile: 'path' is required")
    create = to_bool(args.get("create", False))
    result = edit_text_file(
        path,
        lambda old: join_lines(plan_lineinfile(split_lines(old), args)),
        args,
        check,
        want_diff,
        create,
    )
    if result["changed"]:
        result["msg"] = "line changed"
    return result


def sysctl_file_lines(lines, name, value, state):
    """Pure: set ``name = value`` in sysctl.conf lines (last assignment wins)."""
    pat = re.compile(rf"^\s*{re.escape(name)}\s*=")
    kept = [x for x in lines if not pat.match(x)]
    if state == "absent":
        return kept
    hits = [i for i, x in enumerate(lines) if pat.match(x)]
    new = list(lines)
    wanted = f"{name}={value}"
    if hits:
        current = new[hits[-1]].split("=", 1)[1].strip()
        if current == value:
            return [x for i, x in enumerate(new) if not pat.match(x) or i == hits[-1]]
        new[hits[-1]] = wanted
        return [x for i, x in enumerate(new) if not pat.match(x) or i == hits[-1]]
    new.append(wanted)
    return new


def module_sysctl(args, check, want_diff):
    name = args.get("name")
    if not name:
        raise ModuleFailed("sysctl: 'name' is required")
    state = args.get("state", "present")
    value = args.get("value")
    if state == "present" and value is None:
        raise ModuleFailed("sysctl: state=present needs 'value'")
    value = None if value is None else str(value).strip()
    sysctl_file = args.get("sysctl_file", "/etc/sysctl.conf")
    result = edit_text_file(
        sysctl_file,
        lambda old: join_lines(sysctl_file_lines(split_lines(old), name, value, state)),
        {},
        check,
        want_diff,
        True,
    )
    proc = "/proc/sys/" + name.replace(".", "/")
    set_live = to_bool(args.get("sysctl_set", False)) or to_bool(args.get("reload", True))
    if state == "present" and set_live:
        try:
            with open(proc) as f:
                live = " ".join(f.read().split())
        except OSError as exc:
            raise ModuleFailed(f"sysctl: cannot read {proc}: {exc}") from None
        if live != " ".join(value.split()):
            result["changed"] = True
            if not check:
                try:
                    with open(proc, "w") as f:
                        f.write(value)
                except OSError as exc:
                    raise ModuleFailed(f"sysctl: cannot set {name}: {exc}") from None
    return result


# ---------------------------------------------------------------------------
# command, shell


def module_command(args, check, want_diff, shell=False):
    creates, removes = args.get("creates"), args.get("removes")
    chdir = args.get("chdir")
    if creates and os.path.exists(os.path.join(chdir or "", creates)):
        return {"changed": False, "rc": 0, "stdout": "", "stderr": "",
                "msg": f"skipped, since {creates} exists", "stdout_lines": [], "stderr_lines": []}
    if removes and not os.path.exists(os.path.join(chdir or "", removes)):
        return {"changed": False, "rc": 0, "stdout": "", "stderr": "",
                "msg": f"skipped, since {removes} does not exist", "stdout_lines": [], "stderr_lines": []}
    if check:
        return {"changed": False, "skipped": True, "msg": "Command would have run if not in check mode"}
    argv = args.get("argv")
    raw = args.get("cmd") or args.get("_raw_params")
    if shell:
        if not raw:
            raise ModuleFailed("shell: no command given")
        cmd = [args.get("executable") or "/bin/sh", "-c", raw]
    elif argv:
        cmd = [str(a) for a in argv]
    elif raw:
        cmd = shlex.split(raw)
    else:
        raise ModuleFailed("command: no command given")
    stdin = args.get("stdin")
    start = time.time()
    try:
        proc = subprocess.run(
            cmd,
            cwd=chdir,
            input=(stdin + "\n").encode() if stdin is not None else None,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
        )
    except FileNotFoundError as exc:
        raise ModuleFailed(f"command not found: {exc.filename}", rc=2, cmd=cmd) from None
    out = proc.stdout.decode("utf-8", "replace").rstrip("\n")
    err = proc.stderr.decode("utf-8", "replace").rstrip("\n")
    result = {
        "changed": True,
        "cmd": raw if shell or not argv else cmd,
        "rc": proc.returncode,
        "stdout": out,
        "stderr": err,
        "stdout_lines": out.splitlines(),
        "stderr_lines": err.splitlines(),
        "delta": "%.3f" % (time.time() - start),
    }
    if proc.returncode != 0:
        result["failed"] = True
        result["msg"] = f"non-zero return code {proc.returncode}"
    return result


def module_shell(args, check, want_diff):
    return module_command(args, check, want_diff, shell=True)


# ---------------------------------------------------------------------------
# systemd_service


def plan_systemd(args, active, enabled):
    """Pure: the systemctl commands that bring a unit to the requested state, given
    ``systemctl is-active`` and ``is-enabled`` answers (strings such as "active",
    "inactive", "enabled", "disabled")."""
    name = args.get("name")
    commands = []
    if to_bool(args.get("daemon_reload", False)):
        commands.append(["systemctl", "daemon-reload"])
    want_enabled = args.get("enabled")
    if want_enabled is not None and name:
        is_on = enabled in ("enabled", "enabled-runtime", "alias", "static", "indirect")
        if to_bool(want_enabled) and enabled not in ("enabled", "enabled-runtime", "alias"):
            if enabled != "static":
                commands.append(["systemctl", "enable", name])
        elif not to_bool(want_enabled) and is_on and enabled != "static":
            commands.append(["systemctl", "disable", name])
    state = args.get("state")
    running = active in ("active", "activating", "reloading")
    if state and name:
        if state == "started" and not running:
            commands.append(["systemctl", "start", name])
        elif state == "stopped" and running:
            commands.append(["systemctl", "stop", name])
        elif state == "restarted":
            commands.append(["systemctl", "restart", name])
        elif state == "reloaded":
            commands.append(["systemctl", "reload" if running else "start", name])
        elif state not in ("started", "stopped", "restarted", "reloaded"):
            raise ModuleFailed(f"systemd_service: unsupported state {state!r}")
    return commands


def systemctl_query(verb, name):
    proc = subprocess.run(["systemctl", verb, name], stdin=subprocess.DEVNULL,
                          capture_output=True)
    return proc.stdout.decode().strip() or "unknown"


def module_systemd_service(args, check, want_diff):
    name = args.get("name") or args.get("unit")
    args = dict(args, name=name)
    if not name and not to_bool(args.get("daemon_reload", False)):
        raise ModuleFailed("systemd_service: 'name' is required")
    active = systemctl_query("is-active", name) if name else "unknown"
    enabled = systemctl_query("is-enabled", name) if name else "unknown"
    commands = plan_systemd(args, active, enabled)
    # daemon-reload alone is an action Ansible reports as changed only with a unit change.
    changing = [c for c in commands if c[1] != "daemon-reload"]
    result = {"changed": bool(changing), "name": name,
              "status": {"ActiveState": active, "UnitFileState": enabled},
              "commands": [" ".join(c) for c in commands]}
    if check:
        return result
    for cmd in commands:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)
        if proc.returncode != 0:
            raise ModuleFailed("{} failed: {}".format(" ".join(cmd), proc.stdout.decode().strip()))
    if commands and commands[-1][1] == "daemon-reload" and not changing:
        result["changed"] = False
    return result


# ---------------------------------------------------------------------------
# wait_for


def port_open(host, port):
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


def module_wait_for(args, check, want_diff):
    timeout = float(args.get("timeout", 300))
    delay = float(args.get("delay", 0))
    sleep = float(args.get("sleep", 0.2))
    host = args.get("host", "127.0.0.1")
    port, path = args.get("port"), args.get("path")
    state = args.get("state", "started")
    regex = args.get("search_regex")
    if port is None and path is None:
        raise ModuleFailed("wait_for: give 'port' or 'path'")
    if check:
        return {"changed": False, "elapsed": 0}
    if delay:
        time.sleep(delay)
    start = time.monotonic()
    deadline = start + timeout

    def satisfied():
        if port is not None:
            up = port_open(host, port)
            return up if state in ("started", "present") else not up
        exists = os.path.exists(path)
        if state in ("absent", "stopped"):
            return not exists
        if not exists:
            return False
        if regex:
            with open(path, errors="replace") as f:
                return re.search(regex, f.read()) is not None
        return True

    while True:
        if satisfied():
            return {"changed": False, "elapsed": round(time.monotonic() - start, 3),
                    "port": port, "path": path, "state": state}
        if time.monotonic() >= deadline:
            what = f"port {host}:{port}" if port is not None else f"path {path}"
            raise ModuleFailed(f"Timeout when waiting for {what} to be {state}",
                               elapsed=round(time.monotonic() - start, 3))
        time.sleep(sleep)


# ---------------------------------------------------------------------------
# pip

# Run with the target interpreter: which requirements are not satisfied yet. Uses the
# packaging copy vendored in pip, which every venv has.
_UNSATISFIED_SCRIPT = r"""
import json, sys
from importlib import metadata
from pip._vendor.packaging.requirements import Requirement
out = []
for spec in json.loads(sys.argv[1]):
    req = Requirement(spec)
    try:
        version = metadata.version(req.name)
    except metadata.PackageNotFoundError:
        out.append(spec); continue
    if req.specifier and not req.specifier.contains(version, prereleases=True):
        out.append(spec)
print(json.dumps(out))
"""


def read_requirements(path):
    out = []
    with open(path) as f:
        for raw in f:
            line = raw.split("#", 1)[0].strip()
            if line and not line.startswith("-"):
                out.append(line)
    return out


def module_pip(args, check, want_diff):
    names = args.get("name") or []
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    if args.get("requirements"):
        names = list(names) + read_requirements(args["requirements"])
    if not names:
        raise ModuleFailed("pip: give 'name' or 'requirements'")
    state = args.get("state", "present")
    venv = args.get("virtualenv")
    result = {"changed": False, "name": names, "state": state}
    if venv:
        python = os.path.join(venv, "bin", "python")
        if not os.path.exists(python):
            result["changed"] = True
            if check:
                return result
            venv_cmd = shlex.split(args.get("virtualenv_command") or "python3 -m venv")
            proc = subprocess.run(venv_cmd + [venv], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            if proc.returncode != 0:
                raise ModuleFailed(f"creating virtualenv {venv} failed: {proc.stdout.decode().strip()}")
    else:
        python = args.get("executable") or sys.executable
    extra = shlex.split(args.get("extra_args") or "")
    pip = [python, "-m", "pip", "--disable-pip-version-check", "--no-input"]

    def run_pip(argv):
        proc = subprocess.run(pip + argv, stdin=subprocess.DEVNULL, capture_output=True)
        if proc.returncode != 0:
            raise ModuleFailed("pip {} failed: {}".format(" ".join(argv), proc.stderr.decode().strip()[-2000:]),
                               stdout=proc.stdout.decode()[-2000:])
        return proc.stdout.decode()

    if state == "absent":
        present = [n for n in names if n not in unsatisfied(python, names, check)]
        if present:
            result["changed"] = True
            if not check:
                run_pip(["uninstall", "-y"] + present)
        return result
    if state == "forcereinstall":
        result["changed"] = True
        if not check:
            result["stdout"] = run_pip(["install", "--force-reinstall"] + extra + names)
        return result
    if state == "latest":
        if check:
            result["changed"] = True
            return result
        before = installed_versions(python)
        result["stdout"] = run_pip(["install", "--upgrade"] + extra + names)
        result["changed"] = result["changed"] or installed_versions(python) != before
        return result
    if state != "present":
        raise ModuleFailed(f"pip: unsupported state {state!r}")
    missing = unsatisfied(python, names, check)
    if missing:
        result["changed"] = True
        if not check:
            result["stdout"] = run_pip(["install"] + extra + missing)
    return result


def unsatisfied(python, names, check):
    if not os.path.exists(python):
        return list(names)
    proc = subprocess.run([python, "-c", _UNSATISFIED_SCRIPT, json.dumps(names)],
                          stdin=subprocess.DEVNULL, capture_output=True)
    if proc.returncode != 0:
        raise ModuleFailed(f"pip: cannot inspect {python}: {proc.stderr.decode().strip()}")
    return json.loads(proc.stdout)


def installed_versions(python):
    proc = subprocess.run([python, "-m", "pip", "list", "--format=json"], stdin=subprocess.DEVNULL,
                          capture_output=True)
    return proc.stdout


# ---------------------------------------------------------------------------
# facts


def ipv4_addresses():
    """(interface, address, prefix) of every non-loopback IPv4 address."""
    try:
        proc = subprocess.run(["ip", "-4", "-o", "addr", "show"], stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    except FileNotFoundError:
        return []
    out = []
    for line in proc.stdout.decode().splitlines():
        cols = line.split()
        if len(cols) >= 4 and cols[1] != "lo":
            address, _, prefix = cols[3].partition("/")
            out.append((cols[1], address, prefix))
    return out


def default_ipv4(addresses):
    """Like Ansible: the address of the interface holding the default route; empty
    when there is no default route (isolated lab networks have none)."""
    iface = None
    try:
        with open("/proc/net/route") as f:
            for row in f.readlines()[1:]:
                cols = row.split()
                if len(cols) > 2 and cols[1] == "00000000":
                    iface = cols[0]
                    break
    except OSError:
        pass
    for name, address, prefix in addresses:
        if name == iface:
            return {"address": address, "interface": name, "prefix": prefix}
    return {}


def os_release():
    info = {}
    try:
        with open("/etc/os-release") as f:
            for line in f:
                key, _, value = line.strip().partition("=")
                info[key] = value.strip('"')
    except OSError:
        pass
    return info


def gather_facts():
    rel = os_release()
    family_of = {"debian": "Debian", "ubuntu": "Debian", "fedora": "RedHat", "centos": "RedHat",
                 "rhel": "RedHat", "alpine": "Alpine", "arch": "Archlinux"}
    ids = [rel.get("ID", "")] + rel.get("ID_LIKE", "").split()
    family = next((family_of[i] for i in ids if i in family_of), rel.get("ID", "unknown").title())
    mem = 0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem = int(line.split()[1]) // 1024
    except OSError:
        pass
    vi = sys.version_info
    addresses = ipv4_addresses()
    return {
        "hostname": socket.gethostname().split(".")[0],
        "fqdn": socket.getfqdn(),
        "nodename": platform.node(),
        "default_ipv4": default_ipv4(addresses),
        "all_ipv4_addresses": [a for _, a, _ in addresses],
        "os_family": family,
        "distribution": rel.get("NAME", "unknown").split()[0] if rel else "unknown",
        "distribution_release": rel.get("VERSION_CODENAME", ""),
        "distribution_major_version": rel.get("VERSION_ID", "").split(".")[0],
        "system": platform.system(),
        "architecture": platform.machine(),
        "kernel": platform.release(),
        "python_version": f"{vi[0]}.{vi[1]}.{vi[2]}",
        "python": {"executable": sys.executable,
                   "version": {"major": vi[0], "minor": vi[1], "micro": vi[2]}},
        "processor_count": os.cpu_count() or 1,
        "processor_vcpus": os.cpu_count() or 1,
        "memtotal_mb": mem,
    }


# ---------------------------------------------------------------------------
# dispatch and the JSON-lines loop

MODULES = {
    "file": module_file,
    "copy": module_copy,
    "stat": module_stat,
    "lineinfile": module_lineinfile,
    "sysctl": module_sysctl,
    "command": module_command,
    "shell": module_shell,
    "systemd_service": module_systemd_service,
    "systemd": module_systemd_service,
    "wait_for": module_wait_for,
    "pip": module_pip,
    "_checksums": module_checksums,
}


def execute(request):
    """One request → one Ansible-style result dict; never raises."""
    name = request.get("module")
    if name == "_facts":
        return {"changed": False, "ansible_facts": gather_facts()}
    fn = MODULES.get(name)
    if fn is None:
        return {"failed": True, "changed": False, "msg": f"unknown module {name!r}"}
    try:
        result = fn(request.get("args") or {}, bool(request.get("check")), bool(request.get("diff")))
    except ModuleFailed as exc:
        result = dict(exc.extra, failed=True, changed=False, msg=exc.msg)
    except Exception as exc:  # a module bug or an OS error: report it as the task's failure
        result = {"failed": True, "changed": False, "msg": f"{type(exc).__name__}: {exc}"}
    result.setdefault("changed", False)
    return result


def serve(inp, out):
    for line in iter(inp.readline, b""):
        line = line.strip()
        if not line:
            continue
        try:
            request = json.loads(line)
        except ValueError as exc:
            result = {"failed": True, "changed": False, "msg": f"bad request: {exc}"}
        else:
            result = execute(request)
        out.write(json.dumps(result, default=str).encode() + b"\n")
        out.flush()


if __name__ == "__main__":
    os.chdir("/")
    serve(sys.stdin.buffer, sys.stdout.buffer)
