"""Running probes for real: httpGet and tcpSocket against a server on 127.0.0.1 (standing
in for the pod IP), exec through the runtime's exec_sync."""

import asyncio
import socket

import pytest
from aiohttp import web

from agents.kubelet.prober import resolve_port, run_probe
from agents.kubelet.probes import LIVENESS, READINESS, ProbeSpec

pytestmark = pytest.mark.component


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Runtime:
    def __init__(self, code):
        self.code, self.calls = code, []

    def exec_sync(self, cid, argv, timeout_s):
        self.calls.append((cid, argv, timeout_s))
        return self.code, b"said something", b""


async def with_server(check):
    seen = {}

    async def ok(request):
        seen["headers"] = dict(request.headers)
        return web.Response(text="fine")

    async def bad(_):
        return web.Response(status=503)

    async def slow(_):
        await asyncio.sleep(2)
        return web.Response(text="late")
    app = web.Application()
    app.router.add_get("/ok", ok)
    app.router.add_get("/bad", bad)
    app.router.add_get("/slow", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        return await check(port, seen)
    finally:
        await runner.cleanup()


def probe(kind=READINESS, **handler):
    (name, params), = handler.items()
    return ProbeSpec.from_k8s(kind, {name: params, "timeoutSeconds": 1})


def test_http_probe_success_failure_timeout_and_headers():
    async def check(port, seen):
        container = {"name": "c", "ports": [{"name": "web", "containerPort": port}]}
        run = lambda spec: run_probe(spec, runtime=None, container_id="c1",  # noqa: E731
                                     pod_ip="127.0.0.1", container=container)
        ok = await run(probe(httpGet={"path": "/ok", "port": "web",
                                      "httpHeaders": [{"name": "X-Probe", "value": "1"}]}))
        bad = await run(probe(httpGet={"path": "/bad", "port": port}))
        slow = await run(probe(httpGet={"path": "/slow", "port": port}))
        return ok, bad, slow, seen
    ok, bad, slow, seen = asyncio.run(with_server(check))
    assert ok == (True, "")
    assert seen["headers"]["X-Probe"] == "1"
    assert seen["headers"]["User-Agent"].startswith("kube-probe/")
    assert bad == (False, "HTTP probe failed with statuscode: 503")
    assert slow[0] is False and "timeout" in slow[1]


def test_tcp_probe_open_and_closed_ports():
    async def check(port, _):
        container = {"name": "c"}
        opened = await run_probe(probe(tcpSocket={"port": port}), runtime=None,
                                 container_id="c1", pod_ip="127.0.0.1", container=container)
        closed = await run_probe(probe(tcpSocket={"port": free_port()}), runtime=None,
                                 container_id="c1", pod_ip="127.0.0.1", container=container)
        return opened, closed
    opened, closed = asyncio.run(with_server(check))
    assert opened == (True, "") and closed[0] is False


def test_exec_probe_uses_the_runtime_exec_sync():
    rt = Runtime(1)
    result = asyncio.run(run_probe(probe(LIVENESS, exec={"command": ["cat", "/ready"]}),
                                   runtime=rt, container_id="c7", pod_ip="",
                                   container={"name": "c"}))
    assert result == (False, "said something")
    assert rt.calls == [("c7", ["cat", "/ready"], 1.0)]


def test_named_port_that_does_not_exist_is_an_error():
    with pytest.raises(ValueError, match="no port named 'http'"):
        resolve_port("http", {"name": "c", "ports": []})
    assert resolve_port("8080", {}) == 8080
