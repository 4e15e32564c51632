"""Running one probe: exec (runtime.exec_sync), httpGet and tcpSocket against the pod IP.
Each returns (ok, message). The state machines that read the outcomes are in probes.py."""

from __future__ import annotations

import asyncio
import contextlib
import ssl

import aiohttp

from .probes import ProbeSpec


def resolve_port(port, container: dict) -> int:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
        return int(port)
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return int(p["containerPort"])
    raise ValueError(f"container {container.get('name')} has no port named {port!r}")


async def run_probe(spec: ProbeSpec, *, runtime, container_id: str, pod_ip: str,
                    container: dict) -> tuple[bool, str]:
    try:
        if spec.handler == "exec":
            argv = list(spec.params.get("command") or [])
            code, out, err = await asyncio.to_thread(
                runtime.exec_sync, container_id, argv, spec.timeout)
            text = (out + err).decode(errors="replace").strip()
            return code == 0, text or f"exit code {code}"
        if spec.handler == "tcpSocket":
            host = spec.params.get("host") or pod_ip
            port = resolve_port(spec.params.get("port"), container)
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port),
                                               spec.timeout)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            return True, ""
        if spec.handler == "httpGet":
            return await _http(spec, pod_ip, container)
        return False, f"unsupported probe handler {spec.handler}"
    except TimeoutError:
        return False, f"timeout after {spec.timeout:g}s"
    except Exception as exc:  # noqa: BLE001 - any failure is a failed probe
        return False, str(exc) or type(exc).__name__


async def _http(spec: ProbeSpec, pod_ip: str, container: dict) -> tuple[bool, str]:
    p = spec.params
    host = p.get("host") or pod_ip
    port = resolve_port(p.get("port"), container)
    scheme = (p.get("scheme") or "HTTP").lower()
    path = p.get("path") or "/"
    if not path.startswith("/"):
        path = "/" + path
    headers = {h["name"]: h.get("value", "") for h in p.get("httpHeaders") or []}
    headers.setdefault("User-Agent", "kube-probe/1.32")
    ctx = None
    if scheme == "https":  # the kubelet does not verify probe targets' certificates
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    url = f"{scheme}://{host if ':' not in host else f'[{host}]'}:{port}{path}"
    timeout = aiohttp.ClientTimeout(total=spec.timeout)
    async with aiohttp.ClientSession(timeout=timeout) as session, session.get(
            url, headers=headers, ssl=ctx if ctx else False,
            allow_redirects=False) as resp:
        ok = 200 <= resp.status < 400
        return ok, f"HTTP probe failed with statuscode: {resp.status}" if not ok else ""
