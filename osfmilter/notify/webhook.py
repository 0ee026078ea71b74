"""A notification as a signed webhook POST (README.rst, 'Notifications').

The body is JSON: ``{"id", "type", "time", "customer", "identity",
"details"}``. ``X-Osfmilter-Timestamp`` is the time of sending in Unix
seconds, and ``X-Osfmilter-Signature`` is ``sha256=`` and the hex
HMAC-SHA256, keyed with the webhook's secret (its text, as ``webhook add``
printed it), of the timestamp, a dot and the body: a receiver that checks
the signature and rejects old timestamps cannot be fed a replayed request.

The standard library's http.client sends it: one request, a timeout, and
no redirect is followed (a 3xx is a failure), so a receiver cannot send the
signed body elsewhere.

A customer's webhook (``public_only``) may not reach the relay's own or an
internal network: the host is resolved first, every address it has must be
global, and the connection goes to the checked address itself (TLS still
verifies the host name), so a name that resolves elsewhere a moment later
(DNS rebinding) cannot redirect it.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import json
import socket
import ssl
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from osfmilter import __version__

SIGNATURE = "X-Osfmilter-Signature"
TIMESTAMP = "X-Osfmilter-Timestamp"
EVENT = "X-Osfmilter-Event"
# What a receiver's answer may be made of in our log and last_error.
MAX_ANSWER = 200


class DeliveryFailed(Exception):
    """One line naming why: the connection, the timeout, the receiver's status."""


# socket.getaddrinfo's shape, so tests can resolve names without DNS.
Resolver = Callable[..., Sequence[tuple[Any, Any, Any, Any, tuple[Any, ...]]]]
# socket.create_connection's shape: where the checked address is connected to.
Connect = Callable[[tuple[str, int], float], socket.socket]


def body(
    event_id: str,
    notice_type: str,
    time: str,
    customer: str,
    identity: str,
    details: Mapping[str, object],
) -> bytes:
    document = {
        "id": event_id,
        "type": notice_type,
        "time": time,
        "customer": customer,
        "identity": identity,
        "details": dict(details),
    }
    return json.dumps(document, sort_keys=True, ensure_ascii=False).encode("utf-8")


def signature(secret: str, timestamp: int, payload: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256(secret, "<timestamp>." + body)."""
    signed = f"{timestamp}.".encode("ascii") + payload
    return "sha256=" + hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def headers(event_id: str, secret: str, timestamp: int, payload: bytes) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": f"osfmilter/{__version__}",
        EVENT: event_id,
        TIMESTAMP: str(timestamp),
        SIGNATURE: signature(secret, timestamp, payload),
    }


def post(
    url: str,
    payload: bytes,
    request_headers: Mapping[str, str],
    timeout: float,
    *,
    public_only: bool = True,
    resolve: Resolver = socket.getaddrinfo,
    connect: Connect = socket.create_connection,
) -> int:
    """POST the body; the 2xx status, or DeliveryFailed."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    connection: http.client.HTTPConnection
    if https:
        context = ssl.create_default_context()
        connection = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
    else:
        connection = http.client.HTTPConnection(host, port, timeout=timeout)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        if public_only:
            address = public_address(host, port, resolve)
            sock = connect((address, port), timeout)
            if https:
                sock = context.wrap_socket(sock, server_hostname=host)
            connection.sock = sock
        connection.request("POST", target, body=payload, headers=dict(request_headers))
        response = connection.getresponse()
        answer = response.read(MAX_ANSWER)
    except TimeoutError:
        raise DeliveryFailed(f"no answer from {host} within {timeout:g} s") from None
    except (OSError, http.client.HTTPException) as exc:
        raise DeliveryFailed(f"{host}: {exc or type(exc).__name__}") from None
    finally:
        connection.close()
    if 200 <= response.status < 300:
        return response.status
    text = " ".join(answer.decode("utf-8", "replace").split())[:MAX_ANSWER]
    if 300 <= response.status < 400:
        raise DeliveryFailed(f"{host} answered {response.status}: redirects are not followed")
    raise DeliveryFailed(f"{host} answered {response.status} {response.reason} {text}".rstrip())


def public_address(host: str, port: int, resolve: Resolver = socket.getaddrinfo) -> str:
    """The address to connect to, when every address the host resolves to is global.

    One that is not (loopback, private, link-local, reserved) is DeliveryFailed,
    even when another is public: which one a client picks is not ours to trust.
    """
    try:
        infos = resolve(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError) as exc:
        raise DeliveryFailed(f"{host}: cannot resolve: {exc}") from None
    addresses = [str(info[4][0]) for info in infos]
    if not addresses:
        raise DeliveryFailed(f"{host}: resolves to no address")
    for text in addresses:
        address = ipaddress.ip_address(text.split("%", 1)[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if not address.is_global:
            raise DeliveryFailed(
                f"{host} resolves to {text}, not a public address: refused, not sent"
            )
    return addresses[0]
