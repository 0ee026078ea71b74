"""Dovecot's view of osfmilter's database: the SQL passdb's ``driver`` and ``connect``.

Postfix asks Dovecot to check SASL passwords (contrib/dovecot), and
Dovecot reads them from the database osfmilter's ``[database] url``
names. Dovecot does not speak SQLAlchemy URLs: its SQLite driver wants a
file path, its PostgreSQL driver a libpq ``key=value`` string.
:func:`sql_connect` turns the one into the other, so what an operator
writes into ``/etc/dovecot/osfmilter-sql.conf.ext`` is derived from the
milter's own setting rather than retyped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from osfmilter.errors import ConfigError

__all__ = ["DovecotSql", "sql_connect"]

# A libpq value that needs no quoting; anything else goes in single quotes.
_BARE = re.compile(r"[A-Za-z0-9_./:@+-]+")
# In a Dovecot .conf.ext file "#" starts a comment and quotes are taken
# off a value; a path with these (or white space) is refused, not guessed at.
_PATH_UNSAFE = re.compile(r"[\s#'\"\\]")


@dataclass(frozen=True)
class DovecotSql:
    """The two lines of a Dovecot SQL passdb file that say where the database is."""

    driver: str  # "sqlite" or "pgsql"
    connect: str

    def lines(self) -> str:
        """``driver = ...`` and ``connect = ...``, as the file writes them."""
        return f"driver = {self.driver}\nconnect = {self.connect}\n"


def _libpq_value(value: str) -> str:
    if _BARE.fullmatch(value):
        return value
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def sql_connect(url: str) -> DovecotSql:
    """Dovecot's ``driver`` and ``connect`` for an osfmilter ``[database] url``.

    ``sqlite:////var/lib/osfmilter/osfmilter.sqlite3`` gives the file's
    absolute path; ``postgresql+psycopg://user:pw@host:5432/db?sslmode=require``
    gives ``host=host port=5432 dbname=db user=user password=pw sslmode=require``
    (query parameters are libpq's own keywords, passed on as they are).
    ConfigError for a URL Dovecot cannot use: another database, an
    in-memory or relative SQLite path.
    """
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise ConfigError("database.url is not an SQLAlchemy URL") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database or ""
        if not database.startswith("/"):
            raise ConfigError(
                "Dovecot needs the SQLite database as an absolute path "
                "(database.url = 'sqlite:////var/lib/osfmilter/osfmilter.sqlite3')"
            )
        if _PATH_UNSAFE.search(database):
            raise ConfigError(
                f"{database!r}: a path with spaces, quotes, '#' or backslashes cannot be "
                "written into Dovecot's configuration as is"
            )
        return DovecotSql("sqlite", database)
    if backend == "postgresql":
        pairs: list[tuple[str, str]] = []
        if parsed.host:
            pairs.append(("host", parsed.host))
        if parsed.port is not None:
            pairs.append(("port", str(parsed.port)))
        if parsed.database:
            pairs.append(("dbname", parsed.database))
        if parsed.username:
            pairs.append(("user", parsed.username))
        if parsed.password is not None:
            pairs.append(("password", str(parsed.password)))
        for key, value in parsed.query.items():
            values = (value,) if isinstance(value, str) else value
            pairs.extend((key, item) for item in values)
        return DovecotSql("pgsql", " ".join(f"{key}={_libpq_value(v)}" for key, v in pairs))
    raise ConfigError(f"Dovecot reads the database on sqlite or postgresql, not {backend!r}")
