"""The member process: gRPC client API, the Raft node, and the HTTP /health + /metrics."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal

import grpc

from .api import add_services
from .config import Config, host_port
from .log import Logger
from .node import Node

GRPC_OPTIONS = [
    ("grpc.max_receive_message_length", 2 * 1024 * 1024),
    ("grpc.max_send_message_length", 2**31 - 1),
    ("grpc.so_reuseport", 0),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 5000),
]


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def client_credentials(cfg: Config):
    if not cfg.cert_file:
        raise ValueError("an https:// client URL needs --cert-file and --key-file")
    ca = _read(cfg.trusted_ca_file) if cfg.trusted_ca_file else None
    return grpc.ssl_server_credentials(
        [(_read(cfg.key_file), _read(cfg.cert_file))],
        root_certificates=ca,
        require_client_auth=bool(cfg.client_cert_auth and ca),
    )


class HttpEndpoint:
    """/health and /metrics, answered with a minimal HTTP/1.1 responder."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.hooks: dict = {}  # extra path -> handler(query) (fault injection)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass
            parts = line.decode("latin-1").split()
            path = parts[1] if len(parts) > 1 else "/"
            status, ctype, body = self.route(path)
            head = (f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                    "Connection: close\r\n\r\n")
            writer.write(head.encode() + body)
            await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    def route(self, target: str) -> tuple[str, str, bytes]:
        n = self.node
        path, _, query = target.partition("?")
        if path in self.hooks:
            return self.hooks[path](query)
        if path in ("/health", "/healthz"):
            ok = bool(n.leader)
            body = json.dumps({"health": "true" if ok else "false", **({} if ok else {"reason": "no leader"})})
            return ("200 OK" if ok else "503 Service Unavailable"), "application/json", body.encode()
        if path == "/metrics":
            n.metrics.gauges["etcd_debugging_mvcc_current_revision"] = n.sm.store.rev
            n.metrics.gauges["etcd_server_proposals_pending"] = len(n.waiters)
            return "200 OK", "text/plain; version=0.0.4", n.metrics.render().encode()
        if path == "/version":
            return "200 OK", "application/json", b'{"etcdserver":"3.4.23","etcdcluster":"3.4.0"}'
        return "404 Not Found", "text/plain", b"not found\n"


async def serve(cfg: Config, fault_injection: bool = False) -> None:
    import os
    import sys

    # gRPC's poller thread and the fsync worker hand the GIL back and forth with the
    # event loop on every request; the default 5 ms switch interval adds up to that much
    # latency per hand-off (measured: 1-client put p50 8 ms -> 2.5 ms on one member).
    sys.setswitchinterval(float(os.environ.get("LABETCD_SWITCH", "0.001")))
    log = Logger(cfg.name)
    node = Node(cfg, log)
    await node.start()
    server = grpc.aio.server(options=GRPC_OPTIONS)
    add_services(server, node)
    for url in cfg.listen_client_urls:
        host, port, tls = host_port(url, "--listen-client-urls")
        addr = f"{host}:{port}"
        bound = server.add_secure_port(addr, client_credentials(cfg)) if tls else server.add_insecure_port(addr)
        if not bound:
            raise OSError(f"cannot listen on {url} for clients")
    await server.start()
    http = HttpEndpoint(node)
    http_servers = []
    for url in cfg.listen_metrics_urls:
        host, port, _ = host_port(url, "--listen-metrics-urls")
        http_servers.append(await asyncio.start_server(http.handle, host, port))
    if fault_injection:
        from .faults import install

        install(http, node)
    log.info("serving", client_urls=cfg.listen_client_urls, peer_urls=cfg.listen_peer_urls,
             metrics_urls=cfg.listen_metrics_urls, id=f"{node.id:x}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    run_task = node._tasks[0]
    waiter = loop.create_task(stop.wait())
    await asyncio.wait([run_task, waiter], return_when=asyncio.FIRST_COMPLETED)
    log.info("shutting down")
    await server.stop(0.5)
    for s in http_servers:
        s.close()
    await node.stop()
    if run_task.done() and not run_task.cancelled():
        with contextlib.suppress(asyncio.CancelledError):
            exc = run_task.exception()
            if exc is not None:
                raise exc
