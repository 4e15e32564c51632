"""`kubectl exec` over a WebSocket with the Kubernetes channel protocol.

Framing (v4/v5.channel.k8s.io): every binary message starts with a channel byte —
0 stdin (client → us), 1 stdout, 2 stderr, 3 status (a metav1.Status JSON sent once at
the end), 4 terminal resize (JSON {"Width", "Height"}); v5 adds 255 "close": its
payload byte names the channel the client closed (0 = end of stdin).
The process is the host command line `runtime.exec_argv(cid, argv, tty)` gives; with
tty it runs on a pseudo-terminal (stdout and stderr merged, resizes applied)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import pty
import struct
import termios

from aiohttp import WSMsgType, web

PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
STDIN, STDOUT, STDERR, STATUS, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
INITIAL_SIZE_WAIT = 0.5   # seconds to wait for kubectl's first resize with a tty


def frame(channel: int, data: bytes) -> bytes:
    return bytes([channel]) + data


def unframe(message: bytes) -> tuple[int, bytes]:
    if not message:
        raise ValueError("empty channel message")
    return message[0], message[1:]


def exit_status(code: int, argv: list[str]) -> dict:
    """The Status kubectl turns into its own exit code."""
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {"metadata": {}, "status": "Failure",
            "message": f"command terminated with non-zero exit code: error executing "
                       f"command {argv}, exit code {code}",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


def error_status(message: str) -> dict:
    return {"metadata": {}, "status": "Failure", "message": message,
            "reason": "InternalError"}


def parse_exec_query(query) -> tuple[list[str], bool, bool, bool, bool]:
    """(command, stdin, stdout, stderr, tty) from the request's query."""
    def flag(key, default=False):
        value = query.get(key)
        return default if value is None else value.lower() in ("true", "1")
    command = query.getall("command", []) if hasattr(query, "getall") else \
        list(query.get("command") or [])
    if not command:
        raise ValueError("exec needs at least one command= parameter")
    return command, flag("stdin"), flag("stdout", True), flag("stderr", True), flag("tty")


def _set_winsize(fd: int, payload: bytes) -> None:
    with contextlib.suppress(ValueError, OSError, KeyError, TypeError):
        size = json.loads(payload)
        fcntl.ioctl(fd, termios.TIOCSWINSZ,
                    struct.pack("HHHH", int(size["Height"]), int(size["Width"]), 0, 0))


async def stream_exec(ws: web.WebSocketResponse, argv: list[str], *, stdin: bool,
                      tty: bool, shown_argv: list[str]) -> int:
    """Run argv, relay its I/O over ws, send the status; returns the exit code."""
    master = None
    early: list[bytes] = []
    if tty:
        master, slave = pty.openpty()
        # kubectl sends the terminal size right after connecting: apply it before the
        # command starts, so that the command sees it from its first instruction.
        with contextlib.suppress(TimeoutError):
            while True:
                msg = await asyncio.wait_for(ws.receive(), INITIAL_SIZE_WAIT)
                if msg.type != WSMsgType.BINARY or not msg.data:
                    break
                channel, data = unframe(msg.data)
                if channel == RESIZE:
                    _set_winsize(slave, data)
                    break
                early.append(msg.data)  # stdin typed early: delivered once it runs
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
        os.close(slave)
    else:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)

    async def pump_pipe(reader: asyncio.StreamReader, channel: int) -> None:
        while chunk := await reader.read(65536):
            await ws.send_bytes(frame(channel, chunk))

    async def pump_pty() -> None:
        loop = asyncio.get_running_loop()
        os.set_blocking(master, False)
        chunks: asyncio.Queue[bytes] = asyncio.Queue()

        def readable() -> None:
            try:
                data = os.read(master, 65536)
            except BlockingIOError:
                return
            except OSError:  # EIO: every holder of the terminal's other side is gone
                data = b""
            if not data:
                loop.remove_reader(master)
            chunks.put_nowait(data)
        loop.add_reader(master, readable)
        try:
            while chunk := await chunks.get():
                await ws.send_bytes(frame(STDOUT, chunk))
        finally:
            loop.remove_reader(master)

    async def pump_client() -> None:
        async for msg in ws:
            if msg.type != WSMsgType.BINARY or not msg.data:
                if msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                    break
                continue
            channel, data = unframe(msg.data)
            if channel == STDIN and data:
                if master is not None:
                    os.write(master, data)
                elif proc.stdin is not None:
                    proc.stdin.write(data)
                    with contextlib.suppress(ConnectionError):
                        await proc.stdin.drain()
            elif channel == RESIZE and master is not None:
                _set_winsize(master, data)
            elif channel == CLOSE and data[:1] == bytes([STDIN]):
                if proc.stdin is not None:
                    proc.stdin.close()
                elif master is not None:
                    os.write(master, b"\x04")  # ^D on the terminal

    for data in early:
        channel, payload = unframe(data)
        if channel == STDIN and payload:
            os.write(master, payload)
    client = asyncio.create_task(pump_client())
    outputs = [asyncio.create_task(pump_pty())] if tty else [
        asyncio.create_task(pump_pipe(proc.stdout, STDOUT)),
        asyncio.create_task(pump_pipe(proc.stderr, STDERR))]
    try:
        code = await proc.wait()
        if tty:
            # Output still buffered in the terminal: give the reader a moment.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*outputs, return_exceptions=True), 1)
        else:
            await asyncio.gather(*outputs, return_exceptions=True)
        with contextlib.suppress(Exception):
            await ws.send_bytes(frame(STATUS, json.dumps(exit_status(code, shown_argv))
                                      .encode()))
        return code
    finally:
        client.cancel()
        for task in outputs:
            task.cancel()
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        if master is not None:
            with contextlib.suppress(OSError):
                os.close(master)
        await ws.close()
