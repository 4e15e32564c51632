"""API errors as exceptions that carry the server's `Status` object.

`error_for(code, body)` maps an HTTP answer to the most specific class, so callers write
`except NotFound` / `except Conflict` instead of comparing codes."""

from __future__ import annotations

import json


class ApiError(Exception):
    """A non-2xx answer from the API server; `.status` is the Status object it sent."""

    code = 0

    def __init__(self, code: int, status: dict):
        self.code = code
        self.status = status
        self.reason = status.get("reason", "")
        super().__init__(f"{code} {self.reason or 'error'}: {status.get('message', '')}")


class BadRequest(ApiError):
    pass


class Unauthorized(ApiError):
    pass


class Forbidden(ApiError):
    pass


class NotFound(ApiError):
    pass


class Conflict(ApiError):
    """409 Conflict: an update/delete with a stale resourceVersion (optimistic concurrency)."""


class AlreadyExists(Conflict):
    """409 AlreadyExists: a create of a name that is taken."""


class Gone(ApiError):
    """410: the requested resourceVersion was compacted away; list again."""


class Invalid(ApiError):
    pass


class TooManyRequests(ApiError):
    pass


class ServerError(ApiError):
    pass


_BY_CODE = {400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound,
            409: Conflict, 410: Gone, 422: Invalid, 429: TooManyRequests}


def status_from_body(code: int, body: bytes | str | dict | None) -> dict:
    """The Status the server sent, or a synthesized one if the body is not a Status."""
    if isinstance(body, dict):
        status = body
    else:
        try:
            status = json.loads(body) if body else {}
        except ValueError:
            status = {}
        if not isinstance(status, dict) or status.get("kind") != "Status":
            text = body.decode(errors="replace") if isinstance(body, bytes) else str(body or "")
            status = {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                      "code": code, "message": text.strip()[:500]}
    return status


def error_for(code: int, body: bytes | str | dict | None) -> ApiError:
    status = status_from_body(code, body)
    if code == 409 and status.get("reason") == "AlreadyExists":
        return AlreadyExists(code, status)
    cls = _BY_CODE.get(code, ServerError if code >= 500 else ApiError)
    return cls(code, status)
