"""Who a client is, and whose a domain is: the registry, kept in memory while it stands.

Every message asks who sent it; the answer changes only when the registry
does (a server added, a state changed, a domain removed). Triggers raise
``registry_version`` on every such change, whoever makes it (migration
0005), so a lookup costs one read of that number while nothing changed,
and every process of every relay node sees a change at its next message.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from functools import cache
from typing import NamedTuple, TypeVar, cast

from osfmilter.addresses import IPAddress, address_key
from osfmilter.domains.rules import parents
from osfmilter.errors import UsageError
from osfmilter.model import Identity, IdentityKind, ServerState
from osfmilter.registration import normalize_domain
from osfmilter.storage.direct import Cursor, DirectSql, Statement

_VERSION = Statement("SELECT version FROM registry_version WHERE id = 1")
# The longest registered prefix that holds the address.
_SERVER_BY_ADDRESS = Statement("""
    SELECT s.id, s.network, s.state, c.id, c.name, c.plan
    FROM smtp_servers s JOIN customers c ON c.id = s.customer_id
    WHERE s.family = :family AND s.first_address <= :key AND s.last_address >= :key
    ORDER BY s.prefix_len DESC LIMIT 1
""")
_SASL_BY_LOGIN = Statement("""
    SELECT a.id, a.login, a.state, c.id, c.name, c.plan
    FROM sasl_accounts a JOIN customers c ON c.id = a.customer_id
    WHERE a.login = :login
""")
# The active key of a customer's own verified domain: never another customer's.
_ACTIVE_DKIM_KEY = Statement("""
    SELECT k.id, k.selector, k.algorithm, k.public_key
    FROM dkim_keys k JOIN scanned_domains d ON d.id = k.domain_id
    WHERE d.domain = :domain AND d.customer_id = :customer
      AND d.state = 'verified' AND k.state = 'active'
""")
# Only verified domains are the customer's: a pending one makes no sender known.
_CUSTOMER_DOMAINS = Statement(
    "SELECT domain FROM scanned_domains WHERE customer_id = :customer AND state = 'verified'"
)

# Distinct clients and domains remembered; one that is not registered is
# remembered too (as None), so a flood of strangers costs no lookups either.
CACHE_SIZE = 10_000

# ("login", login), ("v4"/"v6", address key), ("domain", name) or ("dkim", "customer domain")
_Key = tuple[str, str]
T = TypeVar("T")


class ActiveKey(NamedTuple):
    """A domain's active DKIM key as dkim_keys holds it (the private half is a file)."""

    id: int
    selector: str
    algorithm: str
    public_key: str  # the record's p=: the file's key must be its private half


class Registry:
    def __init__(self, sql: DirectSql, size: int = CACHE_SIZE) -> None:
        self.sql = sql
        self.size = size
        self._lock = threading.Lock()
        self._version: int | None = None
        # Identities and domain owners alike, under the one version.
        self._known: OrderedDict[_Key, object] = OrderedDict()
        # Per thread (a connection's callbacks run on one): the version its
        # current mail transaction first read, if it began one.
        self._transaction = threading.local()

    def begin_transaction(self) -> None:
        """A mail transaction starts on this thread: its lookups share one read of the version.

        The first lookup reads the version; the later ones of the same
        transaction (the sender's domain, the From: domains, the DKIM key)
        answer from memory while it still holds, without asking the database
        again. A change is seen at the next transaction, as before: at the
        next message.
        """
        self._transaction.version = None
        self._transaction.active = True

    def find_identity(self, client: IPAddress | None, login: str) -> Identity | None:
        """The SASL account for a login, else the longest registered prefix holding client.

        A login that is not registered does not fall back to the address: the
        MTA vouched for that account, and it is not ours.
        """
        if login:
            key: _Key = ("login", login)
        elif client is not None:
            key = (f"v{client.version}", address_key(client))
        else:
            return None
        return self._remembered(key, _look_up)

    def find_scanned_domain(self, domain: str) -> tuple[int, str] | None:
        """(customer id, verified domain) for a domain or its closest registered parent.

        Asked for every sender and recipient domain, so remembered like an
        identity: a stranger's domain costs one read of the version too.
        """
        name = _stored_form(domain)
        if name is None:
            return None  # not a domain name (a bare label, stray bytes): nobody's
        return self._remembered(("domain", name), _owner_of)

    def find_dkim_key(self, customer_id: int, domain: str) -> ActiveKey | None:
        """The active key of the customer's verified ``domain``, if it has one."""
        return self._remembered(("dkim", f"{customer_id} {domain}"), _active_key)

    def _remembered(self, key: _Key, look_up: Callable[[Cursor, _Key], T]) -> T:
        transaction = self._transaction
        read_at = getattr(transaction, "version", None)
        if read_at is not None:
            with self._lock:
                if read_at == self._version and key in self._known:
                    self._known.move_to_end(key)
                    return cast(T, self._known[key])
        version, found = self.sql.read(lambda cursor: self._find(cursor, key, look_up))
        if getattr(transaction, "active", False) and read_at is None:
            transaction.version = version
        with self._lock:
            if self._version == version:  # not outdated by a newer lookup meanwhile
                self._known[key] = found
                if len(self._known) > self.size:
                    self._known.popitem(last=False)
        return found

    def _find(
        self, cursor: Cursor, key: _Key, look_up: Callable[[Cursor, _Key], T]
    ) -> tuple[int, T]:
        """(the registry's version, the answer from the cache or else the tables)."""
        version = int(cursor.execute(_VERSION).one()[0])
        with self._lock:
            if self._version is None or version > self._version:
                self._known.clear()
                self._version = version
            if version == self._version and key in self._known:
                self._known.move_to_end(key)
                # The key's kind fixes the value's type: look_up made it.
                return version, cast(T, self._known[key])
        return version, look_up(cursor, key)


def _stored_form(domain: str) -> str | None:
    """The domain as scanned_domains holds it (A-labels), or None if it is not a domain name.

    A header's domain is whatever the client wrote: undecodable bytes come
    as surrogates, which no database driver takes.
    """
    try:
        return normalize_domain(domain)
    except UsageError:
        return None


def _active_key(cursor: Cursor, key: _Key) -> ActiveKey | None:
    customer, _, domain = key[1].partition(" ")
    row = cursor.execute(_ACTIVE_DKIM_KEY, {"customer": int(customer), "domain": domain}).first()
    if row is None:
        return None
    key_id, selector, algorithm, public_key = row
    return ActiveKey(int(key_id), str(selector), str(algorithm), str(public_key))


def _owner_of(cursor: Cursor, key: _Key) -> tuple[int, str] | None:
    candidates = [key[1], *parents(key[1])]
    names = {f"d{i}": name for i, name in enumerate(candidates)}
    rows = cursor.execute(_domains_among(len(candidates)), names).all()
    if not rows:
        return None
    # The longest match: a subdomain registered on its own wins.
    customer_id, found = max(rows, key=lambda row: len(row[1]))
    return int(customer_id), str(found)


@cache
def _domains_among(count: int) -> Statement:
    """Scanned domains among ``count`` candidates (a recipient domain and its parents)."""
    marks = ", ".join(f":d{i}" for i in range(count))  # placeholders only
    return Statement(
        "SELECT customer_id, domain FROM scanned_domains"  # noqa: S608
        f" WHERE domain IN ({marks}) AND state = 'verified'"
    )


def _look_up(cursor: Cursor, key: _Key) -> Identity | None:
    kind_of_key, value = key
    if kind_of_key == "login":
        kind = IdentityKind.SASL
        row = cursor.execute(_SASL_BY_LOGIN, {"login": value}).first()
    else:
        kind = IdentityKind.SERVER
        family = 4 if kind_of_key == "v4" else 6
        row = cursor.execute(_SERVER_BY_ADDRESS, {"family": family, "key": value}).first()
    if row is None:
        return None
    identity_id, name, state, customer_id, customer, plan = row
    domains = cursor.execute(_CUSTOMER_DOMAINS, {"customer": customer_id}).all()
    return Identity(
        kind=kind,
        id=int(identity_id),
        name=str(name),
        customer_id=int(customer_id),
        customer=str(customer),
        plan=str(plan),
        state=ServerState(state),
        scanned_domains=frozenset(str(domain) for (domain,) in domains),
    )
