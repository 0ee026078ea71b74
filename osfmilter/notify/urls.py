"""Which webhook URLs may be registered: HTTPS, or plain HTTP on loopback or on purpose.

A customer's (``public_only``) must be HTTPS to a host that is not the
relay's own or an internal network: the sender checks what the name
resolves to again at each delivery (notify.webhook.post).
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from osfmilter.errors import InvalidInput

MAX_URL = 2000


def check_webhook_url(url: str, allow_http: bool = False, *, public_only: bool = False) -> str:
    """The URL as stored, or InvalidInput naming what is wrong with it."""
    text = url.strip()
    if not text or len(text) > MAX_URL or not text.isprintable() or " " in text:
        raise InvalidInput(f"webhook URL must be 1 to {MAX_URL} printable characters, no spaces")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise InvalidInput(f"{url!r} is not a URL: {exc}") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise InvalidInput(f"{url!r} is not an https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise InvalidInput(f"{url!r} holds a user name or password: the signature authenticates")
    if parts.fragment:
        raise InvalidInput(f"{url!r} has a #fragment, which is never sent")
    if port == 0:
        raise InvalidInput(f"{url!r}: port must be 1-65535")
    if public_only:
        _check_public(url, parts.scheme, parts.hostname)
    if parts.scheme == "http" and not allow_http and not is_loopback(parts.hostname):
        raise InvalidInput(
            f"{url!r} is plain http: use https (--allow-http sends notifications "
            "unencrypted on purpose)",
            f"{url!r} is plain http: use https",
        )
    return text


def _check_public(url: str, scheme: str, host: str) -> None:
    if scheme != "https":
        raise InvalidInput(f"{url!r} is plain http: use https")
    name = host.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        raise InvalidInput(f"{url!r} names this host: a webhook must be on a public address")
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return  # a name: the sender checks what it resolves to
    if not address.is_global:
        raise InvalidInput(
            f"{url!r} is not a public address: a webhook may not reach "
            "loopback, private or reserved networks"
        )


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
