"""A small asyncio Kubernetes REST client on aiohttp.

Objects are plain dicts (the API's JSON). Resources are named by plural ("pods",
"deployments", "leases"; see resources.py). Errors are exceptions from errors.py carrying
the server's Status. `watch` is an async iterator of (type, object) pairs read from the
chunked, newline-delimited JSON stream; it raises `Gone` when the server answers 410 or
sends an ERROR event with code 410 (the informer then lists again).

The methods `list` and `watch` form the "lister-watcher" interface that
`agents.kube.testing.FakeApi` implements too, so informers and controllers run against
either.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from . import resources
from .errors import ApiError, Gone, error_for
from .kubeconfig import KubeConfig, load_kubeconfig

PATCH_TYPES = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
    "apply": "application/apply-patch+yaml",
}


def _params(**kwargs: Any) -> dict[str, str]:
    out = {}
    for key, value in kwargs.items():
        if value is None or value is False:
            continue
        out[key] = "true" if value is True else str(value)
    return out


def parse_watch_line(line: bytes | str) -> tuple[str, dict]:
    """One line of a watch stream → (type, object). An ERROR event raises its error."""
    try:
        event = json.loads(line)
    except ValueError:
        raise ApiError(0, {"message": f"malformed watch event: {line[:200]!r}"}) from None
    kind, obj = event.get("type"), event.get("object") or {}
    if kind == "ERROR":
        raise error_for(int(obj.get("code") or 500), obj)
    if kind not in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK"):
        raise ApiError(0, {"message": f"unknown watch event type {kind!r}"})
    return kind, obj


class KubeClient:
    """Use as `async with KubeClient(config) as api:` (or call `close()`)."""

    def __init__(self, config: KubeConfig, user_agent: str = "labctl-agents",
                 timeout: float = 30.0):
        self.config = config
        self.namespace = config.namespace
        headers = {"Accept": "application/json", "User-Agent": user_agent}
        if config.token:
            headers["Authorization"] = f"Bearer {config.token}"
        self._headers = headers
        self._ssl = config.ssl_context()
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_kubeconfig(cls, path: str, context: str | None = None, **kwargs) -> KubeClient:
        return cls(load_kubeconfig(path, context), **kwargs)

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self._ssl if self._ssl else False,
                                             limit=64)
            self._session = aiohttp.ClientSession(
                self.config.server, headers=self._headers, connector=connector,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._timeout))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> KubeClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    # -- plumbing ----------------------------------------------------------------------

    async def request(self, method: str, path: str, *, params: dict | None = None,
                      body: Any = None, content_type: str = "application/json") -> dict:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": content_type} if data is not None else None
        extra = {"server_hostname": self.config.tls_server_name} \
            if self.config.tls_server_name else {}
        async with self.session.request(
                method, path, params=params, data=data, headers=headers,
                timeout=aiohttp.ClientTimeout(total=self._timeout), **extra) as resp:
            raw = await resp.read()
            if resp.status >= 300:
                raise error_for(resp.status, raw)
            return json.loads(raw) if raw else {}

    def _ns(self, res: resources.Resource, namespace: str | None) -> str | None:
        return namespace if res.namespaced else None

    # -- verbs -------------------------------------------------------------------------

    async def get(self, resource: str, name: str, namespace: str | None = None,
                  subresource: str | None = None) -> dict:
        res = resources.resource(resource)
        return await self.request("GET", resources.path(
            res, self._ns(res, namespace or self.namespace), name, subresource))

    async def list(self, resource: str, namespace: str | None = None, *,
                   label_selector: str | None = None, field_selector: str | None = None,
                   resource_version: str | None = None, limit: int | None = None,
                   continue_token: str | None = None) -> dict:
        """One page of a list (all namespaces when namespace is None)."""
        res = resources.resource(resource)
        return await self.request("GET", resources.path(res, self._ns(res, namespace)),
                                  params=_params(labelSelector=label_selector,
                                                 fieldSelector=field_selector,
                                                 resourceVersion=resource_version,
                                                 limit=limit, **{"continue": continue_token}))

    async def create(self, resource: str, obj: dict, namespace: str | None = None,
                     subresource: str | None = None, name: str | None = None) -> dict:
        """POST a new object (or a subresource such as a pod's binding or eviction, in
        which case `name` is the parent object)."""
        res = resources.resource(resource)
        ns = self._ns(res, namespace or (obj.get("metadata") or {}).get("namespace")
                      or self.namespace)
        return await self.request("POST", resources.path(res, ns, name, subresource),
                                  body=obj)

    async def update(self, resource: str, obj: dict, subresource: str | None = None,
                     namespace: str | None = None) -> dict:
        """PUT the object; its metadata.resourceVersion makes this a compare-and-swap."""
        res = resources.resource(resource)
        meta = obj.get("metadata") or {}
        ns = self._ns(res, namespace or meta.get("namespace") or self.namespace)
        return await self.request("PUT", resources.path(res, ns, meta["name"], subresource),
                                  body=obj)

    async def update_status(self, resource: str, obj: dict) -> dict:
        return await self.update(resource, obj, subresource="status")

    async def patch(self, resource: str, name: str, patch: Any,
                    namespace: str | None = None, *, patch_type: str = "merge",
                    subresource: str | None = None) -> dict:
        if patch_type not in PATCH_TYPES:
            raise ValueError(f"patch_type must be one of {', '.join(PATCH_TYPES)}")
        res = resources.resource(resource)
        return await self.request(
            "PATCH", resources.path(res, self._ns(res, namespace or self.namespace), name,
                                    subresource),
            body=patch, content_type=PATCH_TYPES[patch_type])

    async def delete(self, resource: str, name: str, namespace: str | None = None, *,
                     propagation_policy: str | None = None,
                     grace_period_seconds: int | None = None,
                     preconditions: dict | None = None) -> dict:
        res = resources.resource(resource)
        body: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if propagation_policy:
            body["propagationPolicy"] = propagation_policy
        if grace_period_seconds is not None:
            body["gracePeriodSeconds"] = grace_period_seconds
        if preconditions:
            body["preconditions"] = preconditions
        return await self.request(
            "DELETE", resources.path(res, self._ns(res, namespace or self.namespace), name),
            body=body)

    # -- subresource helpers -----------------------------------------------------------

    async def bind(self, namespace: str, pod: str, node: str, uid: str | None = None) -> dict:
        """POST pods/binding: what the scheduler does to place a pod."""
        meta: dict[str, Any] = {"name": pod, "namespace": namespace}
        if uid:
            meta["uid"] = uid
        binding = {"apiVersion": "v1", "kind": "Binding", "metadata": meta,
                   "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
        return await self.create("pods", binding, namespace, subresource="binding", name=pod)

    async def evict(self, namespace: str, pod: str) -> dict:
        eviction = {"apiVersion": "policy/v1", "kind": "Eviction",
                    "metadata": {"name": pod, "namespace": namespace}}
        return await self.create("pods", eviction, namespace, subresource="eviction",
                                 name=pod)

    async def get_scale(self, resource: str, name: str, namespace: str | None = None) -> dict:
        return await self.get(resource, name, namespace, subresource="scale")

    async def scale(self, resource: str, name: str, replicas: int,
                    namespace: str | None = None) -> dict:
        return await self.patch(resource, name, {"spec": {"replicas": replicas}}, namespace,
                                subresource="scale")

    # -- watch -------------------------------------------------------------------------

    async def watch(self, resource: str, namespace: str | None = None, *,
                    resource_version: str | None = None, allow_bookmarks: bool = True,
                    timeout_seconds: int | None = None, label_selector: str | None = None,
                    field_selector: str | None = None) -> AsyncIterator[tuple[str, dict]]:
        """Yield (type, object) until the server ends the stream (timeoutSeconds) or the
        caller stops iterating. Raises Gone for an expired resourceVersion."""
        res = resources.resource(resource)
        params = _params(watch=True, resourceVersion=resource_version,
                         allowWatchBookmarks=allow_bookmarks, timeoutSeconds=timeout_seconds,
                         labelSelector=label_selector, fieldSelector=field_selector)
        # No total timeout (a watch is long-lived), but a silent connection must not hang
        # forever: the server ends the stream by timeoutSeconds, bookmarks come meanwhile.
        read_timeout = (timeout_seconds + 30) if timeout_seconds else None
        async with self.session.get(resources.path(res, self._ns(res, namespace)),
                                    params=params,
                                    timeout=aiohttp.ClientTimeout(
                                        total=None, sock_connect=self._timeout,
                                        sock_read=read_timeout)) as resp:
            if resp.status >= 300:
                raise error_for(resp.status, await resp.read())
            buffer = b""
            # Split on newlines ourselves: one event can be larger than aiohttp's
            # readline limit.
            async for chunk in resp.content.iter_any():
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        yield parse_watch_line(line)
            if buffer.strip():
                yield parse_watch_line(buffer)


__all__ = ["KubeClient", "PATCH_TYPES", "parse_watch_line", "Gone", "ApiError"]
