"""The kubelet's HTTPS API (what the API server's pods/log and pods/exec call).

- GET /healthz                                    no client certificate needed
- GET /metrics                                    Prometheus text
- GET /containerLogs/{ns}/{pod}/{container}       follow, tailLines, previous, timestamps,
                                                  sinceSeconds, sinceTime, limitBytes
- GET /exec/{ns}/{pod}/{container}?command=…      WebSocket, v5/v4.channel.k8s.io
Every path but /healthz needs a client certificate signed by the lab CA (the API server
presents apiserver-kubelet-client)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time

from aiohttp import web

from . import crilog
from .execstream import PROTOCOLS, parse_exec_query, stream_exec

log = logging.getLogger(__name__)


class NotFoundError(LookupError):
    pass


def server_ssl_context(cert: str, key: str, client_ca: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(cafile=client_ca)
    # Optional at the TLS level so /healthz works without one; the middleware below
    # refuses everything else without a verified certificate.
    ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


@web.middleware
async def require_client_cert(request: web.Request, handler):
    transport = request.transport
    if (request.path != "/healthz" and transport is not None
            and transport.get_extra_info("sslcontext") is not None
            and not transport.get_extra_info("peercert")):
        return web.Response(status=401, text="Unauthorized: a client certificate "
                            "signed by the cluster CA is required\n")
    return await handler(request)


def _text_error(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=message + "\n")


class KubeletServer:
    """`kubelet` provides: ready (bool), runtime, metrics_snapshot() and
    `locate(ns, pod, container, previous) -> (CState, log_path)` raising NotFoundError."""

    def __init__(self, kubelet, poll: float = 0.2):
        self.kubelet, self.poll = kubelet, poll
        self.app = web.Application(middlewares=[require_client_cert])
        self.app.router.add_get("/healthz", self.healthz)
        self.app.router.add_get("/metrics", self.metrics)
        self.app.router.add_get("/containerLogs/{ns}/{pod}/{container}", self.logs)
        self.app.router.add_get("/exec/{ns}/{pod}/{container}", self.exec)
        self.app.router.add_post("/exec/{ns}/{pod}/{container}", self.exec)
        self._runner: web.AppRunner | None = None

    async def start(self, host: str, port: int, ssl_context: ssl.SSLContext | None) -> int:
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=ssl_context)
        await site.start()
        sockets = site._server.sockets if site._server else []  # noqa: SLF001
        return sockets[0].getsockname()[1] if sockets else port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def healthz(self, _request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def metrics(self, _request: web.Request) -> web.Response:
        """Prometheus text: the kubelet's counters and gauges."""
        lines = []
        for name, value in sorted(self.kubelet.metrics_snapshot().items()):
            kind = "counter" if name.endswith("_total") else "gauge"
            lines += [f"# TYPE kubelet_{name} {kind}", f"kubelet_{name} {value}"]
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")

    async def logs(self, request: web.Request) -> web.StreamResponse:
        m = request.match_info
        try:
            options = crilog.LogOptions.from_query(request.query)
        except ValueError as exc:
            return _text_error(400, str(exc))
        try:
            container, path = await self.kubelet.locate(m["ns"], m["pod"], m["container"],
                                                        options.previous)
        except NotFoundError as exc:
            return _text_error(404, str(exc))
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        limit = crilog.ByteLimit(options.limit_bytes)
        try:
            with open(path, "rb") as fh:
                data = fh.read()
                lines, rest = crilog.parse_records(data)
                for line in crilog.select(lines, options, time.time()):
                    await self._write(response, crilog.render(line, options.timestamps),
                                      limit)
                    if limit.exhausted:
                        return response
                if options.follow and not options.previous:
                    await self._follow(fh, rest, container.id, options, response, limit)
        except FileNotFoundError:
            pass  # no output yet
        except (ConnectionResetError, asyncio.CancelledError):
            return response
        with contextlib.suppress(Exception):
            await response.write_eof()
        return response

    async def _write(self, response, data: bytes, limit: crilog.ByteLimit) -> None:
        data = limit.take(data)
        if data:
            await response.write(data)

    async def _follow(self, fh, rest: bytes, cid: str, options, response, limit) -> None:
        """Stream what the container writes until it stops running."""
        while not limit.exhausted:
            chunk = fh.read()
            if chunk:
                lines, rest = crilog.parse_records(rest + chunk)
                for line in lines:
                    await self._write(response, crilog.render(line, options.timestamps),
                                      limit)
                continue
            if not await self.kubelet.is_running(cid):
                chunk = fh.read()
                if not chunk:
                    return
                rest += chunk
                continue
            await asyncio.sleep(self.poll)

    async def exec(self, request: web.Request) -> web.StreamResponse:
        m = request.match_info
        try:
            command, stdin, _stdout, _stderr, tty = parse_exec_query(request.query)
            container, _ = await self.kubelet.locate(m["ns"], m["pod"], m["container"],
                                                     False)
            if not await self.kubelet.is_running(container.id):
                raise NotFoundError(f"container {m['container']} is not running")
            argv = await asyncio.to_thread(self.kubelet.runtime.exec_argv, container.id,
                                           command, tty)
        except ValueError as exc:
            return _text_error(400, str(exc))
        except NotFoundError as exc:
            return _text_error(404, str(exc))
        ws = web.WebSocketResponse(protocols=PROTOCOLS, max_msg_size=0)
        if not ws.can_prepare(request).ok:
            return _text_error(400, "exec needs a WebSocket upgrade offering "
                               + " or ".join(PROTOCOLS))
        await ws.prepare(request)
        code = await stream_exec(ws, argv, stdin=stdin, tty=tty, shown_argv=command)
        log.info("exec in %s/%s/%s %s: exit code %d", m["ns"], m["pod"], m["container"],
                 command, code)
        return ws
