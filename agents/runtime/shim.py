"""The per-container shim: ``python -m agents.runtime.shim ...`` (started by Runtime).

It detaches at once (the caller's child exits; the shim lives on in its own session,
so a kubelet restart — whose unit must use ``KillMode=process`` — leaves it alone),
becomes a child subreaper, and runs ``runc create``: runc hands its stdio (two pipes
the shim reads) to the container's process and exits, and that process is re-parented
to the shim. The shim tells the caller "ok <pid>" (or "error <why>") on the ready pipe,
then copies the container's stdout/stderr into the CRI log file, waits for the process
(an exit code; 128+N when killed by signal N), reads the cgroup's OOM-kill counter and
writes ``exit.json``. ``runc start`` (by the runtime) lets the process exec its command.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

from agents.runtime import cgroups, crilog
from agents.runtime.jsonfile import write_json

PR_SET_CHILD_SUBREAPER = 36
DRAIN_SECONDS = 5.0  # after the process exits, how long its output may still trickle in


OPTIONS = ("runc", "runc_root", "id", "bundle", "log_path", "exit_file", "cgroups_path", "ready_fd")


def parse_args(argv: list[str]) -> SimpleNamespace:
    """``--name value`` for every option (all required). Not argparse: it costs the
    shim tens of milliseconds of imports on every container start."""
    values: dict[str, str] = {}
    items = iter(argv)
    for flag in items:
        name = flag.removeprefix("--").replace("-", "_")
        if not flag.startswith("--") or name not in OPTIONS:
            raise SystemExit(f"agents.runtime.shim: unknown argument {flag!r}")
        values[name] = next(items, "")
    missing = [f"--{n.replace('_', '-')}" for n in OPTIONS if not values.get(n)]
    if missing:
        raise SystemExit(f"agents.runtime.shim: missing {', '.join(missing)}")
    args = SimpleNamespace(**values)
    args.ready_fd = int(args.ready_fd)
    return args


def set_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def exit_code_of(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def read_available(fds: list[int], timeout: float) -> bytes:
    """What the fds hold until EOF on all of them or ``timeout`` (runc's error text)."""
    out, deadline, open_fds = b"", time.monotonic() + timeout, list(fds)
    while open_fds and time.monotonic() < deadline:
        ready, _, _ = select.select(open_fds, [], [], max(0.0, deadline - time.monotonic()))
        for fd in ready:
            data = os.read(fd, 65536)
            if data:
                out += data
            else:
                open_fds.remove(fd)
    return out


class LogWriter:
    """Appends CRI lines for both streams to one file (one lock, whole lines)."""

    def __init__(self, path: str):
        self._file = open(path, "ab", buffering=0)  # noqa: SIM115 - lives as long as the shim
        self._lock = threading.Lock()

    def pump(self, fd: int, stream: str) -> None:
        splitter = crilog.LineSplitter()
        while True:
            try:
                data = os.read(fd, 65536)
            except OSError:
                data = b""
            pieces = splitter.feed(data) if data else splitter.close()
            if pieces:
                now = time.time_ns()
                lines = b"".join(crilog.format_line(now, stream, c, p) for c, p in pieces)
                with self._lock:
                    self._file.write(lines)
            if not data:
                os.close(fd)
                return


def wait_for(pid: int) -> int:
    """Reap children until ``pid`` exits (orphans re-parented to us are reaped too)."""
    while True:
        try:
            got, status = os.waitpid(-1, 0)
        except ChildProcessError:
            # Not our child after all (no subreaper?): poll until it is gone.
            while os.path.exists(f"/proc/{pid}"):
                time.sleep(0.05)
            return 255
        except InterruptedError:
            continue
        if got == pid:
            return exit_code_of(status)


def run(args: SimpleNamespace) -> int:
    set_subreaper()
    bundle = Path(args.bundle)
    pid_file = bundle / "init.pid"
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    cmd = [
        args.runc, "--root", args.runc_root, "--log", str(bundle / "runc.log"),
        "create", "--no-new-keyring", "--bundle", str(bundle), "--pid-file", str(pid_file),
        args.id,
    ]  # fmt: skip
    with open(os.devnull, "rb") as devnull:
        created = subprocess.run(cmd, stdin=devnull, stdout=out_w, stderr=err_w)
    os.close(out_w)
    os.close(err_w)
    ready = os.fdopen(args.ready_fd, "w")
    if created.returncode != 0:
        why = read_available([out_r, err_r], 2.0).decode(errors="replace").strip()
        ready.write(f"error runc create exited {created.returncode}: {why}\n")
        ready.close()
        return 1
    pid = int(pid_file.read_text().strip())
    writer = LogWriter(args.log_path)
    pumps = [
        threading.Thread(target=writer.pump, args=(out_r, "stdout"), daemon=True),
        threading.Thread(target=writer.pump, args=(err_r, "stderr"), daemon=True),
    ]
    for t in pumps:
        t.start()
    ready.write(f"ok {pid} {os.getpid()}\n")
    ready.close()
    exit_code = wait_for(pid)
    finished = time.time()
    deadline = time.monotonic() + DRAIN_SECONDS
    for t in pumps:
        t.join(max(0.0, deadline - time.monotonic()))
    oom = cgroups.oom_kill_count(args.cgroups_path) > 0
    write_json(
        Path(args.exit_file),
        {"exit_code": exit_code, "finished_at": finished, "oom_killed": oom, "pid": pid},
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if os.fork():
        os._exit(0)  # the caller reaps this at once; the shim is re-parented
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    null = os.open(os.devnull, os.O_RDWR)
    errors = os.open(str(Path(args.bundle) / "shim.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    for fd, target in ((0, null), (1, null), (2, errors)):
        os.dup2(target, fd)
    try:
        code = run(args)
    except BaseException as exc:  # tell the caller, whatever happened
        with contextlib.suppress(OSError):
            os.write(args.ready_fd, f"error shim failed: {type(exc).__name__}: {exc}\n".encode())
        code = 1
    os._exit(code)


if __name__ == "__main__":
    main()
