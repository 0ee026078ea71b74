"""Which webhook URLs a customer may register: HTTPS, or plain HTTP on loopback or on purpose."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from osfmilter.errors import InvalidInput

MAX_URL = 2000


def check_webhook_url(url: str, allow_http: bool = False) -> str:
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
    if parts.scheme == "http" and not allow_http and not is_loopback(parts.hostname):
        raise InvalidInput(
            f"{url!r} is plain http: use https (--allow-http sends notifications "
            "unencrypted on purpose)",
            f"{url!r} is plain http: use https",
        )
    return text


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
