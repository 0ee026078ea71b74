"""The portal's failures as HTML pages; the API's stay JSON (osfmilter.web.errors).

One set of handlers serves the whole application: a request under
``/api/`` gets the API's JSON answer, any other one a page.
"""

from __future__ import annotations

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from osfmilter.errors import ConflictError, DependencyError, InvalidInput, UsageError
from osfmilter.web import errors as api_errors
from osfmilter.web.portal import headers, render

NOT_FOUND = "There is no such page, or it is not yours."


class PortalError(Exception):
    """An answer other than success, as a page with a status and one sentence."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class LoginRequired(Exception):
    """No live session: see the login page (``url``, with ``?next=`` to come back)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


def not_found() -> PortalError:
    """The answer for a missing object and for another customer's alike."""
    return PortalError(404, NOT_FOUND)


def is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _page(request: Request, status: int, message: str) -> Response:
    return render.error_page(request, status, message)


async def _portal_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PortalError)
    return _page(request, exc.status, exc.message)


async def _login_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)
    return RedirectResponse(exc.url, status_code=303)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if is_api(request):
        return await api_errors.http_error(request, exc)
    if exc.status_code == 404:
        return _page(request, 404, NOT_FOUND)
    if exc.status_code == 405:
        return _page(request, 405, "This page cannot be used that way.")
    return _page(request, exc.status_code, "The request could not be answered.")


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    if is_api(request):
        return await api_errors.validation_error(request, exc)
    # A malformed id in the path names no object: not found, as a missing one.
    if any(error.get("loc", ("",))[0] == "path" for error in exc.errors()):
        return _page(request, 404, NOT_FOUND)
    return _page(request, 422, "The form was incomplete or too long; please fill it in again.")


async def _usage_error(request: Request, exc: Exception) -> Response:
    # A refusal a page did not turn into its form's message itself.
    assert isinstance(exc, UsageError)
    if is_api(request):
        return await api_errors.usage_error(request, exc)
    if isinstance(exc, InvalidInput | ConflictError):
        return _page(request, 422, exc.public)
    # A plain UsageError's text is the command line's, and may name anything.
    return _page(request, 422, "That cannot be done.")


async def _dependency_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DependencyError)
    if is_api(request):
        return await api_errors.dependency_error(request, exc)
    api_errors.log.warning(
        "%s %s: %s error: %s", request.method, request.url.path, exc.backend, exc
    )
    return _page(request, 503, f"The {exc.backend} is unavailable. Please try again later.")


async def _internal_error(request: Request, exc: Exception) -> Response:
    # Starlette answers this outside every middleware, so the security
    # headers are added here.
    if is_api(request):
        response: Response = await api_errors.internal_error(request, exc)
    else:
        api_errors.log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        response = _page(request, 500, "Something went wrong on our side. Please try again.")
    for name, value in headers.ALWAYS.items():
        response.headers.setdefault(name, value)
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def install(app: FastAPI) -> None:
    """The portal's handlers, after (and over) the API's: they hand API paths back to those."""
    app.add_exception_handler(PortalError, _portal_error)
    app.add_exception_handler(LoginRequired, _login_required)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(UsageError, _usage_error)
    app.add_exception_handler(DependencyError, _dependency_error)
    app.add_exception_handler(Exception, _internal_error)
