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
from osfmilter.dkim.keys import KeyFileError, KeyFiles, public_value
from osfmilter.dkim.signer import SIGNATURE_HEADER, Algorithm, SigningKey, signature_header
from osfmilter.errors import OsfError
from osfmilter.metrics import Metrics
from osfmilter.storage.registry import ActiveKey

log = logging.getLogger(__name__)

# Seconds before a key that could not be loaded is tried again.
RETRY_LOAD = 60.0


class ActiveKeys(Protocol):
    def find_dkim_key(self, customer_id: int, domain: str) -> ActiveKey | None:
        """The active key of the customer's verified domain (storage.registry)."""
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
        # By the dkim_keys row's id.
        self._loaded: dict[int, SigningKey] = {}
        self._failed_at: dict[int, float] = {}

    def signer_for(self, customer_id: int, domain: str) -> MessageSignature | None:
        found = self.keys.find_dkim_key(customer_id, domain)
        if found is None:
            return None
        key = self._key(domain, found)
        if key is None:
            self.metrics.dkim_failures.labels("key").inc()
            return None
        return MessageSignature(key)

    def _key(self, domain: str, active: ActiveKey) -> SigningKey | None:
        """The key of the row, loaded once; None (for a while) if its file does not hold it.

        Kept by the row's id, never by its selector alone: a domain removed
        and added again may have a new key under an old selector, and a node
        may hold a stale copy of the key directory.
        """
        with self._lock:
            if (key := self._loaded.get(active.id)) is not None:
                return key
            failed_at = self._failed_at.get(active.id)
            if failed_at is not None and self.clock.monotonic() - failed_at < RETRY_LOAD:
                return None
            try:
                key = self._load(domain, active)
            except (OsfError, ValueError) as exc:
                self._failed_at[active.id] = self.clock.monotonic()
                log.error(
                    "DKIM key %s of %s not loaded, its mail goes out unsigned: %s",
                    active.selector,
                    domain,
                    exc,
                )
                return None
            self._loaded[active.id] = key
            self._failed_at.pop(active.id, None)
            return key

    def _load(self, domain: str, active: ActiveKey) -> SigningKey:
        private = self.files.load(domain, active.selector)
        if public_value(private) != active.public_key:
            raise KeyFileError(
                f"key file {self.files.path(domain, active.selector)} holds another key than "
                "the one the database publishes (a stale copy of the key directory?)"
            )
        return SigningKey(domain, active.selector, cast(Algorithm, active.algorithm), private)
