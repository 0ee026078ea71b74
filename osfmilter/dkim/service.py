"""The milter's signing keys: a customer's active key for its verified domain, loaded once.

Which key is active comes from the registry (a read of its version per
message, like an identity); the private key is read from its file the
first time and kept. A key that cannot be loaded (its file missing or
unreadable on this node) leaves that domain's mail unsigned, logged and
counted, and is tried again a minute later: signing never delays mail.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Protocol, cast

from osfmilter.clock import Clock
from osfmilter.dkim.canonical import RelaxedBodyHash
from osfmilter.dkim.keys import KeyFiles
from osfmilter.dkim.signer import SIGNATURE_HEADER, Algorithm, SigningKey, signature_header
from osfmilter.errors import OsfError
from osfmilter.metrics import Metrics

log = logging.getLogger(__name__)

# Seconds before a key that could not be loaded is tried again.
RETRY_LOAD = 60.0


class ActiveKeys(Protocol):
    def find_dkim_key(self, customer_id: int, domain: str) -> tuple[str, str] | None:
        """(selector, algorithm) of the active key of the customer's verified domain."""
        ...


class MessageSignature:
    """One message's signature: the body hashed as it streams, the header made at the end."""

    def __init__(self, key: SigningKey) -> None:
        self.key = key
        self._body = RelaxedBodyHash()

    @property
    def algorithm(self) -> str:
        return self.key.algorithm

    def body(self, chunk: bytes) -> None:
        self._body.update(chunk)

    def header(self, headers: Sequence[tuple[str, str]], timestamp: int) -> tuple[str, str]:
        value = signature_header(headers, self._body.digest(), self.key, timestamp)
        # libmilter takes a folded value's lines joined by LF alone; relaxed
        # canonicalization reads both alike, so the signature holds.
        return SIGNATURE_HEADER, value.replace("\r\n", "\n")


class DkimService:
    def __init__(self, keys: ActiveKeys, files: KeyFiles, metrics: Metrics, clock: Clock) -> None:
        self.keys, self.files, self.metrics, self.clock = keys, files, metrics, clock
        self._lock = threading.Lock()
        self._loaded: dict[tuple[str, str], SigningKey] = {}
        self._failed_at: dict[tuple[str, str], float] = {}

    def signer_for(self, customer_id: int, domain: str) -> MessageSignature | None:
        found = self.keys.find_dkim_key(customer_id, domain)
        if found is None:
            return None
        selector, algorithm = found
        key = self._key(domain, selector, cast(Algorithm, algorithm))
        if key is None:
            self.metrics.dkim_failures.labels("key").inc()
            return None
        return MessageSignature(key)

    def _key(self, domain: str, selector: str, algorithm: Algorithm) -> SigningKey | None:
        name = (domain, selector)
        with self._lock:
            if (key := self._loaded.get(name)) is not None:
                return key
            failed_at = self._failed_at.get(name)
            if failed_at is not None and self.clock.monotonic() - failed_at < RETRY_LOAD:
                return None
            try:
                key = SigningKey(domain, selector, algorithm, self.files.load(domain, selector))
            except (OsfError, ValueError) as exc:
                self._failed_at[name] = self.clock.monotonic()
                log.error(
                    "DKIM key %s of %s not loaded, its mail goes out unsigned: %s",
                    selector,
                    domain,
                    exc,
                )
                return None
            self._loaded[name] = key
            self._failed_at.pop(name, None)
            return key
