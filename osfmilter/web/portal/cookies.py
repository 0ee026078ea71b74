"""The portal's cookies: HttpOnly, SameSite=Lax, and Secure over TLS or when configured."""

from __future__ import annotations

from fastapi import Request, Response

from osfmilter.web.context import WebContext


def secure(request: Request, context: WebContext) -> bool:
    """Secure when the request came over https, or ``[web] cookie_secure`` says TLS is in front."""
    return request.url.scheme == "https" or context.config.web.cookie_secure


def set_cookie(
    response: Response,
    request: Request,
    context: WebContext,
    name: str,
    value: str,
    *,
    max_age: int | None = None,
    path: str = "/",
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=path,
        secure=secure(request, context),
        httponly=True,
        samesite="lax",
    )


def delete_cookie(
    response: Response, request: Request, context: WebContext, name: str, *, path: str = "/"
) -> None:
    response.delete_cookie(
        name, path=path, secure=secure(request, context), httponly=True, samesite="lax"
    )
