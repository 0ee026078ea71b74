"""Every failure answered as JSON ``{"error": "..."}``, with a status that means what it says.

401 no, malformed, unknown or revoked token (with ``WWW-Authenticate:
Bearer``); 403 an operator's endpoint asked with a customer's token; 404 not
found, or another customer's; 409 a conflict (an overlapping network); 422
invalid input, naming the field; 429 too many requests (with
``Retry-After``); 503 the database or DNS is unreachable; 500 anything
else, without a traceback (that goes to the log, never the request's
headers or body).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from osfmilter.errors import ConflictError, DependencyError, InvalidInput, UsageError

log = logging.getLogger("osfmilter.web")


class ApiError(Exception):
    """An answer other than success, raised by an endpoint or a dependency."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


def not_found(what: str) -> ApiError:
    """The answer for a missing object and for another customer's alike."""
    return ApiError(404, f"{what} not found")


def invalid(field: str, message: str) -> ApiError:
    return ApiError(422, f"{field}: {message}")


def forbidden() -> ApiError:
    """A customer's token on an endpoint of the operator's (never on an object's id: 404)."""
    return ApiError(403, "this endpoint needs an operator token")


def too_many_requests(wait: float) -> ApiError:
    """429 with Retry-After: the whole seconds until the next request is free (at least 1)."""
    seconds = max(1, math.ceil(wait))
    return ApiError(429, f"too many requests; retry in {seconds} s", {"Retry-After": str(seconds)})


def error_body(message: str) -> dict[str, str]:
    return {"error": message}


def _json(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(message), status_code=status, headers=dict(headers or {}))


def describe_validation(errors: Sequence[Any]) -> str:
    """The first problem FastAPI found, as ``field: message``."""
    if not errors:
        return "request: invalid"
    error = errors[0]
    # ("body", "network"), ("query", "customer"), ("path", "server_id"), ("body",) ...
    loc = [str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path")]
    field = ".".join(loc) or "body"
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    return f"{field}: {message}"


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return _json(exc.status, exc.message, exc.headers)


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    # Starlette's own: an unknown path (404), a method the path lacks (405).
    assert isinstance(exc, StarletteHTTPException)
    message = "not found" if exc.status_code == 404 else str(exc.detail)
    return _json(exc.status_code, message, exc.headers)


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return _json(422, describe_validation(exc.errors()))


async def usage_error(request: Request, exc: Exception) -> JSONResponse:
    # The storage layer's refusals: a conflict, input refused, or any other one-line UsageError.
    if isinstance(exc, ConflictError):
        return _json(409, exc.public)
    if isinstance(exc, InvalidInput):
        return _json(422, exc.public)
    return _json(422, str(exc))


async def dependency_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DependencyError)
    log.warning("%s %s: %s error: %s", request.method, request.url.path, exc.backend, exc)
    return _json(503, f"{exc.backend} unavailable, try again later")


async def internal_error(request: Request, exc: Exception) -> JSONResponse:
    # The traceback to the log (one line, escaped); the client learns nothing of it.
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return _json(500, "internal error")


def install(app: FastAPI) -> None:
    """Every error handler, on one application."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(UsageError, usage_error)
    app.add_exception_handler(DependencyError, dependency_error)
    app.add_exception_handler(Exception, internal_error)
