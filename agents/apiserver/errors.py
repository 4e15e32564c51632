"""API errors as Kubernetes `Status` objects."""

from __future__ import annotations

REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


class ApiError(Exception):
    """An error answered to the client as a `kind: Status` with the HTTP code."""

    def __init__(self, code: int, message: str, reason: str | None = None,
                 details: dict | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or REASONS.get(code, "Unknown")
        self.details = details

    def status(self) -> dict:
        return status_object(self.code, self.message, self.reason, self.details)


def status_object(code: int, message: str, reason: str, details: dict | None = None) -> dict:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return body


def _details(rt, name: str | None) -> dict:
    d = {"kind": rt.plural}
    if rt.group:
        d["group"] = rt.group
    if name:
        d["name"] = name
    return d


def _qualified(rt) -> str:
    return f"{rt.plural}.{rt.group}" if rt.group else rt.plural


def not_found(rt, name: str) -> ApiError:
    return ApiError(404, f'{_qualified(rt)} "{name}" not found', "NotFound", _details(rt, name))


def already_exists(rt, name: str) -> ApiError:
    return ApiError(409, f'{_qualified(rt)} "{name}" already exists', "AlreadyExists",
                    _details(rt, name))


def conflict(rt, name: str) -> ApiError:
    return ApiError(409, f'Operation cannot be fulfilled on {_qualified(rt)} "{name}": the '
                         "object has been modified; please apply your changes to the latest "
                         "version and try again", "Conflict", _details(rt, name))


def invalid(rt, name: str | None, causes: list[tuple[str, str]]) -> ApiError:
    """422 with one cause per (field, message)."""
    text = "; ".join(f"{f}: {m}" for f, m in causes)
    details = _details(rt, name)
    details["kind"] = rt.kind
    details["causes"] = [{"reason": "FieldValueInvalid", "message": m, "field": f}
                         for f, m in causes]
    return ApiError(422, f'{rt.kind} "{name or ""}" is invalid: {text}', "Invalid", details)


def expired(message: str = "too old resource version") -> ApiError:
    return ApiError(410, message, "Expired")


def bad_request(message: str) -> ApiError:
    return ApiError(400, message, "BadRequest")
