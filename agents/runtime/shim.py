"""The per-container shim: ``python -S -c 'from agents.runtime.shim import main; main()' ...``
(started by Runtime; ``-c`` rather than ``-m``, which would import runpy).

It detaches at once (the caller's child exits; the shim lives on in its own session,
so a kubelet restart — whose unit must use ``KillMode=process`` — leaves it alone),
becomes a child subreaper, and runs ``runc create``: runc hands its stdio (two pipes
the shim reads) to the container's process and exits, and that process is re-parented
to the shim. The shim tells the caller "ok <pid>" (or "error <why>") on the ready pipe,
then copies the container's stdout/stderr into the CRI log file, waits for the process
(an exit code; 128+N when killed by signal N), reads the cgroup's OOM-kill counter and
writes ``exit.json``. ``runc start`` (by the runtime) lets the process exec its command.

One shim starts per container, so its start-up is on every pod's critical path: a
Python start plus imports was ~60 ms of CPU (``subprocess``, ``threading``, ``signal``,
``pathlib``, ``json``, ``tempfile`` pull in ``enum``, ``re``, ``random``...). It imports
only builtin or tiny modules: ``os.posix_spawn`` instead of ``subprocess``, ``_thread``
instead of ``threading``, ``_signal`` instead of ``signal``, and writes its one small
JSON record by hand.
"""

from __future__ import annotations

import _signal  # the builtin under `signal`: `signal` itself imports enum
import _thread
import os
import select
import sys
import time

from agents.runtime import cgroups, crilog

PR_SET_CHILD_SUBREAPER = 36
DRAIN_SECONDS = 5.0  # after the process exits, how long its output may still trickle in


OPTIONS = ("runc", "runc_root", "id", "bundle", "log_path", "exit_file", "cgroups_path", "ready_fd")


class Args:
    """The parsed options, as attributes."""

    def __init__(self, values: dict[str, str]):
        self.__dict__.update(values)


def parse_args(argv: list[str]) -> Args:
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
    args = Args(values)
    args.ready_fd = int(args.ready_fd)
    return args


def set_subreaper() -> None:
    import ctypes  # the one costly import left (~5 ms): no other way to call prctl

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


def exit_record_json(exit_code: int, finished_at: float, oom_killed: bool, pid: int) -> str:
    """exit.json's text (what ``json.dumps(..., sort_keys=True)`` gives; no json import)."""
    return (f'{{"exit_code": {int(exit_code)}, "finished_at": {float(finished_at)!r}, '
            f'"oom_killed": {"true" if oom_killed else "false"}, "pid": {int(pid)}}}\n')


def write_file_atomically(path: str, text: str) -> None:
    """Write a temporary file next to ``path``, then rename it: readers never see half."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


class LogWriter:
    """Appends CRI lines for both streams to one file (one lock, whole lines)."""

    def __init__(self, path: str):
        self._file = open(path, "ab", buffering=0)  # noqa: SIM115 - lives as long as the shim
        self._lock = _thread.allocate_lock()

    def pump(self, fd: int, stream: str, done=None) -> None:
        """Copy ``fd`` to the log until EOF; release ``done`` (a held lock) at the end."""
        try:
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
        finally:
            if done is not None:
                done.release()


def start_pump(writer: LogWriter, fd: int, stream: str):
    """Run ``writer.pump`` in a thread; returns a lock that is free once it is done."""
    done = _thread.allocate_lock()
    done.acquire()
    _thread.start_new_thread(writer.pump, (fd, stream, done))
    return done


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


def spawn(argv: list[str], stdin: int, stdout: int, stderr: int) -> int:
    """Start ``argv`` with those fds as its 0, 1, 2 and nothing else inherited (our own
    fds are close-on-exec, as Python opens them); returns its pid."""
    return os.posix_spawnp(argv[0], argv, os.environ, file_actions=[
        (os.POSIX_SPAWN_DUP2, stdin, 0), (os.POSIX_SPAWN_DUP2, stdout, 1),
        (os.POSIX_SPAWN_DUP2, stderr, 2)])


def run(args: Args) -> int:
    set_subreaper()
    pid_file = os.path.join(args.bundle, "init.pid")
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    cmd = [
        args.runc, "--root", args.runc_root, "--log", os.path.join(args.bundle, "runc.log"),
        "create", "--no-new-keyring", "--bundle", args.bundle, "--pid-file", pid_file,
        args.id,
    ]  # fmt: skip
    devnull = os.open(os.devnull, os.O_RDONLY)
    try:
        runc = spawn(cmd, devnull, out_w, err_w)
    finally:
        os.close(devnull)
    _, status = os.waitpid(runc, 0)
    created = exit_code_of(status)
    os.close(out_w)
    os.close(err_w)
    ready = os.fdopen(args.ready_fd, "w")
    if created != 0:
        why = read_available([out_r, err_r], 2.0).decode(errors="replace").strip()
        ready.write(f"error runc create exited {created}: {why}\n")
        ready.close()
        return 1
    with open(pid_file) as f:
        pid = int(f.read().strip())
    writer = LogWriter(args.log_path)
    pumps = [start_pump(writer, out_r, "stdout"), start_pump(writer, err_r, "stderr")]
    ready.write(f"ok {pid} {os.getpid()}\n")
    ready.close()
    exit_code = wait_for(pid)
    finished = time.time()
    deadline = time.monotonic() + DRAIN_SECONDS
    for done in pumps:
        done.acquire(timeout=max(0.0, deadline - time.monotonic()))
    oom = cgroups.oom_kill_count(args.cgroups_path) > 0
    write_file_atomically(args.exit_file, exit_record_json(exit_code, finished, oom, pid))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if os.fork():
        os._exit(0)  # the caller reaps this at once; the shim is re-parented
    _signal.signal(_signal.SIGHUP, _signal.SIG_IGN)
    _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
    os.set_inheritable(args.ready_fd, False)  # runc and the container must not hold it
    null = os.open(os.devnull, os.O_RDWR)
    errors = os.open(os.path.join(args.bundle, "shim.log"),
                     os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    for fd, target in ((0, null), (1, null), (2, errors)):
        os.dup2(target, fd)
    try:
        code = run(args)
    except BaseException as exc:  # tell the caller, whatever happened
        try:  # noqa: SIM105 - contextlib is one more import on every container start
            os.write(args.ready_fd, f"error shim failed: {type(exc).__name__}: {exc}\n".encode())
        except OSError:
            pass
        code = 1
    os._exit(code)


if __name__ == "__main__":
    main()
