"""Proxying pods/log and pods/exec to the kubelet that runs the pod.

The kubelet is found from the pod's spec.nodeName and that Node's status (InternalIP
address, daemonEndpoints.kubeletEndpoint.Port). Logs stream through as they come; exec
is a WebSocket (`v5.channel.k8s.io`, `v4.channel.k8s.io`, ...) relayed frame by frame."""

from __future__ import annotations

import asyncio
import contextlib
import ssl

import aiohttp
from aiohttp import web

from .errors import ApiError, bad_request
from .resources import find

LOG_PARAMS = ("follow", "previous", "sinceSeconds", "sinceTime", "tailLines", "timestamps",
              "limitBytes")


class KubeletProxy:
    def __init__(self, cert: str | None = None, key: str | None = None, ca: str | None = None,
                 https: bool = True):
        self.https = https
        self._ssl: ssl.SSLContext | bool = False
        if https:
            ctx = ssl.create_default_context(cafile=ca) if ca else ssl.create_default_context()
            if not ca:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            if cert and key:
                ctx.load_cert_chain(cert, key)
            self._ssl = ctx
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=5))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _locate(self, registry, t, container: str | None) -> tuple[str, str]:
        pod = await registry.get(t.rt, t.namespace, t.name)
        containers = [c["name"] for c in (pod.get("spec") or {}).get("containers") or []]
        if not container:
            if len(containers) != 1:
                raise bad_request(f"a container name must be specified for pod {t.name}, "
                                  f"choose one of: [{' '.join(containers)}]")
            container = containers[0]
        elif container not in containers:
            raise bad_request(f"container {container} is not valid for pod {t.name}")
        node_name = (pod.get("spec") or {}).get("nodeName")
        if not node_name:
            raise bad_request(f"pod {t.name} does not have a host assigned")
        node = await registry.get(find("", "v1", "nodes"), None, node_name)
        status = node.get("status") or {}
        addresses = {a.get("type"): a.get("address") for a in status.get("addresses") or []}
        host = addresses.get("InternalIP") or addresses.get("Hostname") or node_name
        port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get(
            "Port", 10250)
        scheme = "https" if self.https else "http"
        if ":" in host:
            host = f"[{host}]"
        return f"{scheme}://{host}:{port}", container

    async def handle(self, request: web.Request, t, registry) -> web.StreamResponse:
        if t.subresource == "log":
            return await self.logs(request, t, registry)
        return await self.exec(request, t, registry)

    async def logs(self, request: web.Request, t, registry) -> web.StreamResponse:
        base, container = await self._locate(registry, t, request.query.get("container"))
        params = {k: v for k, v in request.query.items() if k in LOG_PARAMS}
        url = f"{base}/containerLogs/{t.namespace}/{t.name}/{container}"
        try:
            upstream = await self.session().get(url, params=params, ssl=self._ssl)
        except aiohttp.ClientError as exc:
            raise ApiError(502, f"cannot reach the kubelet at {base}: {exc}",
                           "ServiceUnavailable") from exc
        async with upstream:
            if upstream.status != 200:
                text = await upstream.text()
                raise ApiError(upstream.status if upstream.status < 600 else 502,
                               f"kubelet: {text.strip()}")
            response = web.StreamResponse(headers={"Content-Type": "text/plain"})
            response.enable_chunked_encoding()
            await response.prepare(request)
            with contextlib.suppress(ConnectionResetError, aiohttp.ClientError):
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
            with contextlib.suppress(Exception):
                await response.write_eof()
            return response

    async def exec(self, request: web.Request, t, registry) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() != "websocket":
            raise bad_request("exec needs a WebSocket upgrade (SPDY is not supported)")
        base, container = await self._locate(registry, t, request.query.get("container"))
        offered = [p.strip() for p in
                   request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        params = [(k, v) for k, v in request.query.items() if k != "container"]
        url = f"{base}/exec/{t.namespace}/{t.name}/{container}"
        try:
            upstream = await self.session().ws_connect(
                url.replace("http", "ws", 1), params=params, protocols=offered, ssl=self._ssl)
        except aiohttp.ClientError as exc:
            raise ApiError(502, f"cannot reach the kubelet at {base}: {exc}",
                           "ServiceUnavailable") from exc
        client = web.WebSocketResponse(protocols=[upstream.protocol] if upstream.protocol
                                       else ())
        await client.prepare(request)

        async def pump(src, dst):
            async for msg in src:
                if msg.type == aiohttp.WSMsgType.BINARY:
                    await dst.send_bytes(msg.data)
                elif msg.type == aiohttp.WSMsgType.TEXT:
                    await dst.send_str(msg.data)
                else:
                    break

        tasks = [asyncio.create_task(pump(upstream, client)),
                 asyncio.create_task(pump(client, upstream))]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await upstream.close()
            await client.close()
        return client
