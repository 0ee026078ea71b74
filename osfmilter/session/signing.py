"""DKIM on the accept: whose key signs, the body hashed as it streams, the header at the end.

A message is signed when its From: authors are all in one verified domain
of the sending customer (the closest registered domain decides, so another
customer's subdomain is never signed, even where foreign domains are let
through) and that domain has an active key (docs/dkim.rst). The body goes
to the signer chunk by chunk, so no message is held in memory for it; the
signature is made at the accept, over the headers as the MTA relays them.
A signature that cannot be made leaves the message unsigned, logged and
counted: signing is never a reason to delay mail.
"""

from __future__ import annotations

import logging

from osfmilter.clock import Clock
from osfmilter.metrics import Metrics
from osfmilter.policy.context import Context
from osfmilter.session.services import MessageSigner, Signing

log = logging.getLogger("osfmilter.session")


class MessageSigning:
    """One session's signing, one transaction at a time (reset at every MAIL and end)."""

    def __init__(self, signing: Signing | None, metrics: Metrics, clock: Clock) -> None:
        self.signing, self.metrics, self.clock = signing, metrics, clock
        self.headers: list[tuple[str, str]] = []
        self.signer: MessageSigner | None = None

    def reset(self) -> None:
        self.headers, self.signer = [], None

    def header(self, name: str, value: str) -> None:
        if self.signing is not None:
            self.headers.append((name, value))

    def end_of_headers(self, context: Context) -> None:
        """Choose the key, now that the From: header is known and before the body comes."""
        self.signer = None
        if self.signing is None or context.tx.identity is None:
            return
        domain = own_signing_domain(context)
        if domain is not None:
            self.signer = self.signing.signer_for(context.identity.customer_id, domain)

    def body(self, chunk: bytes) -> None:
        if self.signer is not None:
            self.signer.body(chunk)

    def signature(self, queue_id: str) -> tuple[str, str] | None:
        """(DKIM-Signature, value) for the accept, or None when this message is not signed."""
        if self.signer is None:
            return None
        try:
            return self.signer.header(self.headers, int(self.clock.now().timestamp()))
        except Exception:  # an unsigned message still goes out
            log.exception("qid=%s not DKIM-signed: the signature failed", queue_id or "-")
            self.metrics.dkim_failures.labels("sign").inc()
            return None

    def signed(self) -> None:
        """The accept with our signature was committed."""
        if self.signer is not None:
            self.metrics.dkim_signatures.labels(self.signer.algorithm).inc()


def own_signing_domain(context: Context) -> str | None:
    """The customer's verified domain every From: author is in, or None."""
    authors = context.tx.header_from_domains
    if not authors:
        return None
    owners = {context.owner_of(domain) for domain in authors}
    if len(owners) != 1:
        return None  # no author, or authors in several domains: no one d= aligns them all
    [owner] = owners
    if owner is None or owner[0] != context.identity.customer_id:
        return None
    return owner[1]
