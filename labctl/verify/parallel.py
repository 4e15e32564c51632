"""Run the checks of different hosts (and roles) at the same time, report them in order.

pytest runs one item at a time and its fixtures are not thread-safe, so concurrency
comes from processes: after collection, the verification session forks one check
process per group of items (a role's checks on one host; checks without a host per
role). Each runs its items through pytest's normal protocol and sends the reports back;
its commands run in the parent over the lab's pooled connections (labctl.verify.relay).
The parent replays the reports through pytest's hooks in collection order, so the
plugin, the output and the exit code are those of a sequential run; only the wall time
differs. At most ``workers`` groups run at once.

A check process that dies leaves its unfinished checks failed with the reason.
"""

from __future__ import annotations

import contextlib
import gc
import os
import queue
import signal
import socket
import stat
import sys
import threading
import traceback
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest

from labctl.verify import relay


def group_items(keys: list[Hashable]) -> list[list[int]]:
    """Item indices grouped by key, groups in order of first appearance (pure)."""
    groups: dict[Hashable, list[int]] = {}
    for index, key in enumerate(keys):
        groups.setdefault(key, []).append(index)
    return list(groups.values())


class InOrder:
    """Collects each item's reports as they arrive in any order; hands out finished
    items strictly in index order (pure)."""

    def __init__(self, count: int) -> None:
        self._reports: list[list[Any]] = [[] for _ in range(count)]
        self._finished = [False] * count
        self._next = 0

    def report(self, index: int, report: Any) -> None:
        self._reports[index].append(report)

    def finish(self, index: int) -> None:
        self._finished[index] = True

    def is_finished(self, index: int) -> bool:
        return self._finished[index]

    def ready(self) -> list[tuple[int, list[Any]]]:
        """Items finished since the last call whose predecessors are all finished."""
        out = []
        while self._next < len(self._finished) and self._finished[self._next]:
            out.append((self._next, self._reports[self._next]))
            self._reports[self._next] = []
            self._next += 1
        return out

    @property
    def done(self) -> bool:
        return self._next == len(self._finished)


def detach_inherited_sockets(keep: int) -> None:
    """Point every socket this (forked) process inherited, but ``keep``, at /dev/null:
    the parent's SSH connections and the like stay the parent's alone, whatever code
    here might try to write to them."""
    null = os.open(os.devnull, os.O_RDWR)
    try:
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            if fd in (keep, null):
                continue
            try:
                if stat.S_ISSOCK(os.fstat(fd).st_mode):
                    os.dup2(null, fd)
            except OSError:
                continue  # the listing's own descriptor, gone by now
    finally:
        os.close(null)


@dataclass
class _Child:
    pid: int
    sock: socket.socket
    indices: list[int]
    crash: str = ""  # the traceback it sent before dying, if any
    status: int | None = None  # from waitpid, once reaped
    lock: threading.Lock = field(default_factory=threading.Lock)


class ParallelChecks:
    """pytest plugin: the session's run loop, forking check processes.

    ``key(item)`` groups items (same key: same process, in order); ``in_child(relay)``
    prepares a check process (its hosts run commands through ``relay``; its reports go
    to the parent instead of the plugin); ``pool`` runs the relayed commands.
    """

    def __init__(self, key: Callable[[pytest.Item], Hashable],
                 in_child: Callable[[relay.Relay, Callable[[Any], None]], None],
                 pool: Any, workers: int,
                 on_running: Callable[[], None] = lambda: None) -> None:
        self._key = key
        self._in_child = in_child
        self._pool = pool
        self.workers = workers
        self._on_running = on_running  # called once the checks start (after any fork)
        self.forked = 0  # check processes the last run used (0: it ran in-process)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool | None:
        config = session.config
        items = list(session.items)
        groups = group_items([self._key(item) for item in items])
        if config.option.collectonly or self.workers < 2 or not hasattr(os, "fork") \
                or len(groups) < 2:
            self._on_running()
            return None  # pytest's own loop, one check after another
        self._run(session, items, groups)
        return True

    # -- the parent ------------------------------------------------------------------

    def _run(self, session: pytest.Session, items: list[pytest.Item],
             groups: list[list[int]]) -> None:
        config = session.config
        order = InOrder(len(items))
        children = self._fork_all(session, items, groups)
        self.forked = len(children)
        self._on_running()
        inbox: queue.Queue = queue.Queue()
        readers = [threading.Thread(target=self._read, args=(child, inbox), daemon=True,
                                    name=f"verify-read-{child.pid}") for child in children]
        executor = ThreadPoolExecutor(max(1, min(len(children), self.workers)),
                                      thread_name_prefix="verify-relay")
        waiting = list(children)
        running = 0
        try:
            for reader in readers:
                reader.start()
            while waiting and running < self.workers:
                self._start(waiting.pop(0))
                running += 1
            while not order.done:
                child, message = inbox.get()
                if message is None:  # the process closed its end: it is done or dead
                    self._reap(child)
                    for index in child.indices:
                        if not order.is_finished(index):
                            order.report(index, self._lost_report(items[index], child))
                            order.finish(index)
                    running -= 1
                    while waiting and running < self.workers:
                        self._start(waiting.pop(0))
                        running += 1
                elif message[0] == "run":
                    _, host, command, timeout = message
                    executor.submit(self._answer, child, host, command, timeout)
                elif message[0] == "report":
                    order.report(message[1], config.hook.pytest_report_from_serializable(
                        config=config, data=message[2]))
                elif message[0] == "finish":
                    order.finish(message[1])
                elif message[0] == "crash":
                    child.crash = message[1]
                for index, reports in order.ready():
                    self._replay(items[index], reports)
        finally:
            executor.shutdown(wait=False, cancel_futures=True)
            for child in children:
                self._stop(child)

    def _fork_all(self, session: pytest.Session, items: list[pytest.Item],
                  groups: list[list[int]]) -> list[_Child]:
        """Every check process, forked before the parent starts any thread of its own."""
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            with contextlib.suppress(Exception):
                stream.flush()
        children: list[_Child] = []
        # Garbage of the parent (closed SSH channels, ...) must never be finalized in a
        # check process: a paramiko Channel's __del__ writes to its transport's socket.
        gc.collect()
        gc.freeze()
        try:
            for indices in groups:
                mine, theirs = socket.socketpair()
                pid = os.fork()
                if pid == 0:  # the check process: never returns
                    detach_inherited_sockets(keep=theirs.fileno())
                    mine.close()
                    for other in children:
                        other.sock.close()
                    self._child(theirs, session, items, indices)
                theirs.close()
                children.append(_Child(pid, mine, indices))
        finally:
            gc.unfreeze()
        return children

    @staticmethod
    def _start(child: _Child) -> None:
        with child.lock, contextlib.suppress(OSError):
            relay.send(child.sock, ("go",))

    @staticmethod
    def _read(child: _Child, inbox: queue.Queue) -> None:
        while True:
            try:
                message = relay.receive(child.sock)
            except Exception:  # noqa: BLE001 - a garbled frame: the process is as good as gone
                message = None
            inbox.put((child, message))
            if message is None:
                return

    def _answer(self, child: _Child, host: str, command: str, timeout: float | None) -> None:
        reply = relay.answer_run(self._pool, host, command, timeout)
        with child.lock, contextlib.suppress(OSError):
            relay.send(child.sock, reply)

    @staticmethod
    def _replay(item: pytest.Item, reports: list[Any]) -> None:
        item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        for report in reports:
            item.ihook.pytest_runtest_logreport(report=report)
        item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)

    @staticmethod
    def _reap(child: _Child) -> None:
        if child.status is None:
            with contextlib.suppress(ChildProcessError):
                child.status = os.waitpid(child.pid, 0)[1]

    @staticmethod
    def _lost_report(item: pytest.Item, child: _Child) -> pytest.TestReport:
        status = child.status
        if status is not None and os.WIFSIGNALED(status):
            how = f"was killed by signal {os.WTERMSIG(status)}"
        elif status is not None:
            how = f"exited with status {os.WEXITSTATUS(status)}"
        else:
            how = "ended"
        message = f"the check did not run: its check process (pid {child.pid}) {how}"
        if child.crash:
            message += f"\n{child.crash.rstrip()}"
        return pytest.TestReport(item.nodeid, item.location, {}, "failed", message, "call")

    @staticmethod
    def _stop(child: _Child) -> None:
        with contextlib.suppress(OSError):
            child.sock.shutdown(socket.SHUT_RDWR)  # wakes its reader thread
        child.sock.close()
        if child.status is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGKILL)  # only left on an interrupt
            with contextlib.suppress(ChildProcessError):
                child.status = os.waitpid(child.pid, 0)[1]

    # -- a check process -------------------------------------------------------------

    def _child(self, sock: socket.socket, session: pytest.Session,
               items: list[pytest.Item], indices: list[int]) -> None:
        code = 1
        try:
            signal.signal(signal.SIGINT, signal.SIG_DFL)  # the parent decides about Ctrl-C
            config = session.config
            running = [-1]  # the index of the item running (nodeids need not be unique)

            def forward(report: Any) -> None:
                if isinstance(report, str):  # the item's last report is in
                    relay.send(sock, ("finish", running[0]))
                else:
                    relay.send(sock, ("report", running[0],
                                      config.hook.pytest_report_to_serializable(
                                          config=config, report=report)))

            self._in_child(relay.Relay(sock), forward)
            if relay.receive(sock) is None:
                return  # the parent went away before starting us
            for n, index in enumerate(indices):
                running[0] = index
                nextitem = items[indices[n + 1]] if n + 1 < len(indices) else None
                items[index].ihook.pytest_runtest_protocol(item=items[index], nextitem=nextitem)
            code = 0
        except BaseException:  # noqa: BLE001 - told to the parent, which fails the checks left
            with contextlib.suppress(Exception):
                relay.send(sock, ("crash", traceback.format_exc(limit=5)))
        finally:
            with contextlib.suppress(Exception):
                sock.close()
            os._exit(code)
