"""An authoritative DNS server on loopback for SPF tests, built on dnslib.

Zones are given as BIND-style text, and :meth:`DnsServer.serve` changes
the zone of a running server. It counts the queries it answers (so a
test can prove caching), and names listed in ``silent`` get no answer at all
(a nameserver that does not respond: SPF temperror). A negative answer
carries the SOA of the name's zone, when the zone text has one.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from typing import Any

from dnslib import QTYPE, RCODE, RR
from dnslib.server import BaseResolver, DNSHandler, DNSServer

from tests.harness.ports import free_port
from tests.harness.service import Service


class _ZoneResolver(BaseResolver):  # type: ignore[misc]
    def __init__(
        self, zone: str, silent: set[str], queries: Counter[tuple[str, str]], lock: threading.Lock
    ) -> None:
        self.records = RR.fromZone(zone)
        self.silent = silent
        self.queries = queries
        self.lock = lock

    def resolve(self, request: Any, handler: Any) -> Any:
        question = request.q
        name = str(question.qname).rstrip(".").lower()
        qtype = QTYPE[question.qtype]
        with self.lock:
            self.queries[(name, qtype)] += 1
        if any(_within(name, s) for s in self.silent):
            return None  # dnslib sends nothing back
        reply = request.reply()
        reply.header.aa = 1
        exists = False
        for record in self.records:
            if str(record.rname).rstrip(".").lower() == name:
                exists = True
                if record.rtype == question.qtype:
                    reply.add_answer(record)
        if not exists:
            reply.header.rcode = RCODE.NXDOMAIN
        if not reply.rr and (soa := self._zone_soa(name)) is not None:
            reply.add_auth(soa)  # its MINIMUM is the negative answer's TTL (RFC 2308)
        return reply

    def _zone_soa(self, name: str) -> Any:
        """The SOA record of the closest zone the name is in, if the zone text has one."""
        zones = [
            r
            for r in self.records
            if r.rtype == QTYPE.SOA and _within(name, str(r.rname).rstrip(".").lower())
        ]
        return max(zones, key=lambda r: len(str(r.rname)), default=None)


def _within(name: str, zone: str) -> bool:
    return name == zone or name.endswith("." + zone)


class _Handler(DNSHandler):  # type: ignore[misc]
    def handle(self) -> None:
        # A silent name: the resolver returned no reply, so none is sent.
        with contextlib.suppress(AttributeError):
            super().handle()


class DnsServer(Service):
    def __init__(self, zone: str, silent: set[str] | None = None) -> None:
        self.port = free_port()
        self.queries: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        resolver = self._resolver = _ZoneResolver(zone, silent or set(), self.queries, self._lock)
        self._servers = [
            DNSServer(
                resolver,
                port=self.port,
                address="127.0.0.1",
                tcp=tcp,
                logger=_Quiet(),
                handler=_Handler,
            )
            for tcp in (False, True)
        ]

    @property
    def nameserver(self) -> str:
        return f"127.0.0.1:{self.port}"

    def serve(self, zone: str) -> None:
        """Answer from another zone from now on (a record published or removed)."""
        self._resolver.records = RR.fromZone(zone)

    def count(self, name: str, qtype: str = "TXT") -> int:
        with self._lock:
            return self.queries[(name, qtype)]

    def start(self) -> None:
        for server in self._servers:
            server.start_thread()

    def stop(self) -> None:
        for server in self._servers:
            server.stop()
            server.server.server_close()


class _Quiet:
    """dnslib logs every request by default."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None
