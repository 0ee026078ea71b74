"""Who a client is: registered servers and SASL accounts, kept in memory while they stand.

Every message asks who sent it; the answer changes only when the registry
does (a server added, a state changed, a domain removed). Triggers raise
``registry_version`` on every such change, whoever makes it (migration
0005), so a lookup costs one read of that number while nothing changed,
and every process of every relay node sees a change at its next message.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from functools import cache

from osfmilter.addresses import IPAddress, address_key
from osfmilter.model import Identity, IdentityKind, ServerState
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
# Only verified domains are the customer's: a pending one makes no sender known.
_CUSTOMER_DOMAINS = Statement(
    "SELECT domain FROM scanned_domains WHERE customer_id = :customer AND state = 'verified'"
)

# Distinct clients remembered; an address that is not registered is
# remembered too (as None), so a flood of strangers costs no lookups either.
CACHE_SIZE = 10_000

_Key = tuple[str, str]  # ("login", login) or ("v4"/"v6", address key)


class Registry:
    def __init__(self, sql: DirectSql, size: int = CACHE_SIZE) -> None:
        self.sql = sql
        self.size = size
        self._lock = threading.Lock()
        self._version: int | None = None
        self._known: OrderedDict[_Key, Identity | None] = OrderedDict()

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
        version, identity = self.sql.read(lambda cursor: self._find(cursor, key))
        with self._lock:
            if self._version == version:  # not outdated by a newer lookup meanwhile
                self._known[key] = identity
                if len(self._known) > self.size:
                    self._known.popitem(last=False)
        return identity

    def _find(self, cursor: Cursor, key: _Key) -> tuple[int, Identity | None]:
        """(the registry's version, the identity from the cache or else the tables)."""
        version = int(cursor.execute(_VERSION).one()[0])
        with self._lock:
            if self._version is None or version > self._version:
                self._known.clear()
                self._version = version
            if version == self._version and key in self._known:
                self._known.move_to_end(key)
                return version, self._known[key]
        return version, _look_up(cursor, key)

    def find_scanned_domain(self, domain: str) -> tuple[int, str] | None:
        """(customer id, scanned domain) for a recipient domain or its parent domains."""
        labels = domain.split(".")
        candidates = [".".join(labels[i:]) for i in range(len(labels) - 1)]
        if not candidates:
            return None
        names = {f"d{i}": name for i, name in enumerate(candidates)}
        rows = self.sql.read(
            lambda cursor: cursor.execute(_domains_among(len(candidates)), names).all()
        )
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
