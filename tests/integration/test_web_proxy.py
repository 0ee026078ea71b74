"""``[web] trusted_proxies``: whose X-Forwarded-For and -Proto a real ``osfmilter web`` believes.

Asked over loopback as nginx asks it (contrib/nginx/osfmilter-web.conf).
What it believes shows in the audit entry of an API change and in its
access log (the client's address), and in the portal's cookie, Secure only
when the request is taken to have come over https.
"""

from __future__ import annotations

import http.client
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from osfmilter.storage.schema import AuditEntry
from tests.harness.portal import WebProcess

pytestmark = pytest.mark.integration

CLIENT = "81.2.69.7"  # the browser's address, as the proxy saw it
FORWARDED = {"X-Forwarded-For": CLIENT, "X-Forwarded-Proto": "https"}


@pytest.fixture(
    params=["", 'trusted_proxies = ["127.0.0.1"]\n'], ids=["default", "trusting-loopback"]
)
def web(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[WebProcess, bool]]:
    with WebProcess(tmp_path / "web", extra_web=request.param) as web:
        web.cli("customer", "add", "acme")
        yield web, bool(request.param)


def ask(
    web: WebProcess, method: str, path: str, headers: dict[str, str], body: str = ""
) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", web.port, timeout=10)
    connection.request(method, path, body=body or None, headers=headers)
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def audit_addresses(web: WebProcess) -> list[str]:
    engine = create_engine(f"sqlite:///{web.workdir}/osfmilter.sqlite3")
    try:
        with engine.connect() as connection:
            return list(connection.scalars(select(AuditEntry.remote_addr)))
    finally:
        engine.dispose()


def test_forwarded_headers_are_believed_only_from_a_trusted_proxy(
    web: tuple[WebProcess, bool],
) -> None:
    process, trusted = web
    client = CLIENT if trusted else "127.0.0.1"
    headers = {
        "Authorization": f"Bearer {process.token('acme')}",
        "Content-Type": "application/json",
        **FORWARDED,
    }
    body = json.dumps({"network": "81.2.69.0/28"})
    assert ask(process, "POST", "/api/v1/servers", headers, body).status == 201
    assert audit_addresses(process) == [client]
    [line] = [line for line in process.log().splitlines() if '"POST /api/v1/servers' in line]
    assert re.search(rf"{re.escape(client)}:\d+ - \"POST /api/v1/servers HTTP/1.1\" 201", line)

    # The login form's cookie is Secure only when the request is known to be https.
    page = ask(process, "GET", "/login", FORWARDED)
    assert page.status == 200
    [cookie] = page.headers.get_all("Set-Cookie") or []
    assert ("; secure" in cookie.lower()) is trusted, cookie


def test_a_trusted_proxy_does_not_make_every_client_trusted(tmp_path: Path) -> None:
    """Trusting 10.9.9.9 does not believe the headers of a client on loopback."""
    with WebProcess(tmp_path / "web", extra_web='trusted_proxies = ["10.9.9.9"]\n') as web:
        web.cli("customer", "add", "acme")
        headers = {
            "Authorization": f"Bearer {web.token('acme')}",
            "Content-Type": "application/json",
            **FORWARDED,
        }
        body = json.dumps({"network": "81.2.69.16/28"})
        assert ask(web, "POST", "/api/v1/servers", headers, body).status == 201
        assert audit_addresses(web) == ["127.0.0.1"]
        [cookie] = ask(web, "GET", "/login", FORWARDED).headers.get_all("Set-Cookie") or []
        assert "secure" not in cookie.lower()
