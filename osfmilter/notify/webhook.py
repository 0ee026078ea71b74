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
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import ssl
from collections.abc import Mapping
from urllib.parse import urlsplit

from osfmilter import __version__

SIGNATURE = "X-Osfmilter-Signature"
TIMESTAMP = "X-Osfmilter-Timestamp"
EVENT = "X-Osfmilter-Event"
# What a receiver's answer may be made of in our log and last_error.
MAX_ANSWER = 200


class DeliveryFailed(Exception):
    """One line naming why: the connection, the timeout, the receiver's status."""


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


def post(url: str, payload: bytes, request_headers: Mapping[str, str], timeout: float) -> int:
    """POST the body; the 2xx status, or DeliveryFailed."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(
            host, parts.port, timeout=timeout, context=ssl.create_default_context()
        )
    else:
        connection = http.client.HTTPConnection(host, parts.port, timeout=timeout)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
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
