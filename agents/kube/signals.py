"""Stopping an agent's main task on SIGTERM (systemd's stop) or SIGINT (Ctrl-C)."""

from __future__ import annotations

import asyncio
import signal


def cancel_on_stop_signals(task: asyncio.Task) -> asyncio.Task:
    """Cancel ``task`` when the process gets SIGTERM or SIGINT; returns it."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    return task
