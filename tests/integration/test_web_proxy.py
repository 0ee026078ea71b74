"""``[web] forwarded_allow_ips``: whose X-Forwarded-For and -Proto ``osfmilter web`` believes.

A real ``osfmilter web`` process, asked over loopback as nginx would ask
it. What it believes shows in its access log (the client's address) and in
the absolute URL of a redirect (the scheme).
"""

from __future__ import annotations

import http.client
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.portal import WebProcess

pytestmark = pytest.mark.integration

CLIENT = "81.2.69.7"  # the browser's address, as the proxy saw it
FORWARDED = {"X-Forwarded-For": CLIENT, "X-Forwarded-Proto": "https"}


@pytest.fixture(params=["", 'forwarded_allow_ips = "127.0.0.1"\n'], ids=["default", "trusted"])
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


def access_lines(web: WebProcess, path: str) -> list[str]:
    return [line for line in web.log().splitlines() if f'"POST {path} HTTP/1.1"' in line]


def test_forwarded_headers_are_believed_only_from_a_trusted_proxy(
    web: tuple[WebProcess, bool],
) -> None:
    process, trusted = web
    auth = {"Authorization": f"Bearer {process.token('acme')}"}
    json_body = {"Content-Type": "application/json"}
    created = ask(
        process,
        "POST",
        "/api/v1/servers",
        {**auth, **json_body, **FORWARDED},
        '{"network": "81.2.69.0/28"}',
    )
    assert created.status == 201
    [line] = access_lines(process, "/api/v1/servers")
    client = re.search(r"(\S+):\d+ - \"POST", line)
    assert client, line
    assert client[1] == (CLIENT if trusted else "127.0.0.1"), line

    # A redirect's absolute URL carries the scheme the request is taken to have.
    moved = ask(process, "GET", "/api/v1/servers/", {**auth, **FORWARDED})
    assert moved.status == 307
    scheme = "https" if trusted else "http"
    assert moved.getheader("Location", "").startswith(f"{scheme}://127.0.0.1:{process.port}/")


def test_a_trusted_proxy_address_does_not_make_every_client_trusted(tmp_path: Path) -> None:
    """Trusting 10.9.9.9 does not trust the loopback client's own headers."""
    with WebProcess(tmp_path / "web", extra_web='forwarded_allow_ips = "10.9.9.9"\n') as web:
        moved = ask(web, "GET", "/api/v1/servers/", FORWARDED)
        assert moved.status == 307
        assert moved.getheader("Location", "").startswith("http://")
        assert re.search(r"127\.0\.0\.1:\d+ - \"GET /api/v1/servers/ HTTP/1.1\" 307", web.log())
