"""The aiohttp application: authentication and error middlewares, non-resource endpoints
(version, health, discovery, OpenAPI, metrics) and routing of resource paths."""

from __future__ import annotations

import collections
import json
import logging
import time

from aiohttp import web

from . import auth, discovery
from .errors import ApiError, status_object
from .handlers import ResourceHandlers, respond
from .storage import Compacted, Unavailable

log = logging.getLogger("apiserver")

MAX_BODY = 3 * 1024 * 1024  # kube-apiserver's limit for a request body

VERSION = {
    "major": "1", "minor": "32", "gitVersion": "v1.32.0-labctl", "gitCommit": "labctl",
    "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "python3",
    "compiler": "cpython", "platform": "linux/amd64",
}


class Metrics:
    def __init__(self):
        self.requests: collections.Counter = collections.Counter()
        self.latency_sum: collections.Counter = collections.Counter()

    def observe(self, verb: str, code: int, seconds: float) -> None:
        self.requests[(verb, code)] += 1
        self.latency_sum[verb] += seconds

    def render(self) -> str:
        lines = ["# TYPE apiserver_request_total counter"]
        for (verb, code), n in sorted(self.requests.items()):
            lines.append(f'apiserver_request_total{{verb="{verb}",code="{code}"}} {n}')
        lines.append("# TYPE apiserver_request_duration_seconds_sum counter")
        for verb, s in sorted(self.latency_sum.items()):
            lines.append(f'apiserver_request_duration_seconds_sum{{verb="{verb}"}} {s:.6f}')
        return "\n".join(lines) + "\n"


def _error_response(code: int, message: str, reason: str) -> web.Response:
    return respond(status_object(code, message, reason), code)


class Server:
    def __init__(self, registry, caches, tokens: dict[str, auth.User] | None = None,
                 proxy=None, ready=lambda: True, advertise: str = "127.0.0.1:6443"):
        self.resources = ResourceHandlers(registry, caches, proxy)
        self.tokens = tokens or {}
        self.metrics = Metrics()
        self.ready = ready
        self.advertise = advertise

    def authenticate(self, request: web.Request) -> auth.User:
        if not request.secure:
            return auth.ADMIN_LOCAL  # the --insecure-port listens on 127.0.0.1 only
        peercert = request.transport.get_extra_info("peercert") if request.transport else None
        user = auth.user_from_cert(peercert)
        if user is None:
            header = request.headers.get("Authorization")
            user = auth.user_from_token(header, self.tokens)
            if user is None and header:
                raise ApiError(401, "Unauthorized", "Unauthorized")
        return user or auth.User(auth.ANONYMOUS, ("system:unauthenticated",))

    @web.middleware
    async def middleware(self, request: web.Request, handler):
        started = time.monotonic()
        code = 500
        try:
            request["user"] = self.authenticate(request)
            if "rest" not in request.match_info:  # resource paths authorize per verb
                auth.require(request["user"], auth.Attributes(
                    "get", path=request.path.rstrip("/") or "/"))
            response = await handler(request)
            code = response.status
            return response
        except ApiError as exc:
            code = exc.code
            return respond(exc.status(), exc.code)
        except Unavailable as exc:
            code = 503
            return _error_response(503, f"storage unavailable: {exc}", "ServiceUnavailable")
        except Compacted as exc:
            code = 410
            return _error_response(410, f"too old resource version: {exc}", "Expired")
        except web.HTTPRequestEntityTooLarge as exc:
            code = 413
            return _error_response(413, f"the request body is too large: {exc.text}",
                                   "RequestEntityTooLarge")
        except web.HTTPException as exc:
            code = exc.status
            return _error_response(exc.status, exc.reason, exc.reason.replace(" ", ""))
        except ConnectionResetError:
            raise
        except Exception as exc:
            log.exception("internal error on %s %s", request.method, request.path)
            return _error_response(500, f"internal error: {exc}", "InternalError")
        finally:
            elapsed = time.monotonic() - started
            self.metrics.observe(request.method, code, elapsed)
            # Errors and slow requests at INFO; every mutation only when debugging (a log
            # line per write costs ~10% of a create's CPU).
            if code >= 400 or elapsed > 1.0 or (request.method != "GET"
                                               and log.isEnabledFor(logging.DEBUG)):
                user = request.get("user")
                log.info("request method=%s path=%s code=%d ms=%.1f user=%s", request.method,
                         request.path, code, elapsed * 1000, user.name if user else "-")

    # ------------------------------------------------------------ non-resource endpoints

    async def version(self, request):
        return respond(VERSION)

    async def health(self, request):
        if request.path == "/readyz" and not self.ready():
            return web.Response(text="not ready: watch caches starting", status=503)
        return web.Response(text="ok")

    async def metrics_text(self, request):
        lines = ["# TYPE apiserver_registered_watchers gauge"]
        for plural, cache in sorted(self.resources.caches.items()):
            lines.append(f'apiserver_registered_watchers{{resource="{plural}"}} '
                         f"{len(cache.subscribers)}")
        return web.Response(text=self.metrics.render() + "\n".join(lines) + "\n",
                            content_type="text/plain")

    @staticmethod
    def _aggregated_wanted(request) -> bool:
        accept = request.headers.get("Accept", "")
        return "as=APIGroupDiscoveryList" in accept and "v=v2" in accept

    async def api(self, request):
        if self._aggregated_wanted(request):
            return web.Response(text=_dumps(discovery.aggregated(legacy=True)), headers={
                "Content-Type": discovery.AGGREGATED_TYPE})
        return respond(discovery.api_versions(self.advertise))

    async def apis(self, request):
        if self._aggregated_wanted(request):
            return web.Response(text=_dumps(discovery.aggregated(legacy=False)), headers={
                "Content-Type": discovery.AGGREGATED_TYPE})
        return respond(discovery.api_group_list())

    async def api_v1(self, request):
        return respond(discovery.api_resource_list("", "v1"))

    async def api_group(self, request):
        doc = discovery.api_group(request.match_info["group"])
        if doc is None:
            raise ApiError(404, "the server could not find the requested resource", "NotFound")
        return respond(doc)

    async def api_group_version(self, request):
        doc = discovery.api_resource_list(request.match_info["group"],
                                          request.match_info["version"])
        if doc is None:
            raise ApiError(404, "the server could not find the requested resource", "NotFound")
        return respond(doc)

    async def openapi_root(self, request):
        return respond(discovery.openapi_root())

    async def openapi_doc(self, request):
        path = request.match_info["path"].strip("/").split("/")
        if path[0] == "api" and len(path) == 2:
            doc = discovery.openapi_group_version("", path[1])
        elif path[0] == "apis" and len(path) == 3:
            doc = discovery.openapi_group_version(path[1], path[2])
        else:
            doc = None
        if not doc or not doc["paths"]:
            raise ApiError(404, "the server could not find the requested resource", "NotFound")
        return respond(doc)

    async def not_found(self, request):
        raise ApiError(404, "the server could not find the requested resource", "NotFound")

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.middleware], client_max_size=MAX_BODY)
        r = app.router
        r.add_get("/version", self.version)
        for path in ("/healthz", "/readyz", "/livez"):
            r.add_get(path, self.health)
        r.add_get("/metrics", self.metrics_text)
        r.add_get("/api", self.api)
        r.add_get("/api/", self.api)
        r.add_get("/apis", self.apis)
        r.add_get("/apis/", self.apis)
        r.add_get("/api/v1", self.api_v1)
        r.add_get("/api/v1/", self.api_v1)
        r.add_get("/openapi/v3", self.openapi_root)
        r.add_get("/openapi/v3/{path:.+}", self.openapi_doc)
        r.add_route("*", "/api/{version}/{rest:.+}", self.resources.handle)
        r.add_get("/apis/{group}", self.api_group)
        r.add_get("/apis/{group}/{version}", self.api_group_version)
        r.add_get("/apis/{group}/{version}/", self.api_group_version)
        r.add_route("*", "/apis/{group}/{version}/{rest:.+}", self.resources.handle)
        return app


def _dumps(obj) -> str:
    return json.dumps(obj, separators=(",", ":"))
