"""osfmilter.dovecot: the database URL, as Dovecot's SQL passdb writes it."""

from __future__ import annotations

from pathlib import Path

import pytest

from osfmilter.cli import main
from osfmilter.dovecot import DovecotSql, sql_connect
from osfmilter.errors import ConfigError


def test_an_sqlite_url_gives_the_absolute_path() -> None:
    assert sql_connect("sqlite:////var/lib/osfmilter/osfmilter.sqlite3") == DovecotSql(
        "sqlite", "/var/lib/osfmilter/osfmilter.sqlite3"
    )


@pytest.mark.parametrize(
    "url", ["sqlite://", "sqlite:///:memory:", "sqlite:///relative/osfmilter.sqlite3"]
)
def test_an_sqlite_url_dovecot_cannot_open_is_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="absolute path"):
        sql_connect(url)


def test_an_sqlite_path_that_needs_quoting_is_refused() -> None:
    with pytest.raises(ConfigError, match="cannot be written"):
        sql_connect("sqlite:////var/lib/osf milter/db.sqlite3")


def test_a_postgresql_url_gives_libpq_key_value_pairs() -> None:
    result = sql_connect("postgresql+psycopg://postgres@127.0.0.1:5432/test")
    assert result == DovecotSql("pgsql", "host=127.0.0.1 port=5432 dbname=test user=postgres")
    assert result.lines() == (
        "driver = pgsql\nconnect = host=127.0.0.1 port=5432 dbname=test user=postgres\n"
    )


def test_a_plain_postgresql_url_and_libpq_query_parameters() -> None:
    result = sql_connect("postgresql://dovecot_auth:s3cret@db.example:6432/osf?sslmode=require")
    assert result.connect == (
        "host=db.example port=6432 dbname=osf user=dovecot_auth password=s3cret sslmode=require"
    )


def test_a_unix_socket_directory_in_the_query_is_kept() -> None:
    result = sql_connect("postgresql+psycopg:///osf?host=/run/postgresql")
    assert result.connect == "dbname=osf host=/run/postgresql"


def test_a_password_with_quotes_spaces_and_hash_is_single_quoted_for_libpq() -> None:
    # "#" would start a comment in Dovecot's file unless it is inside quotes.
    result = sql_connect("postgresql://u:it%27s%20a%23b%5C@h/d")
    assert result.connect == r"host=h dbname=d user=u password='it\'s a#b\\'"


@pytest.mark.parametrize("url", ["mysql://u@h/d", "not a url"])
def test_other_urls_are_refused_without_echoing_them(url: str) -> None:
    with pytest.raises(ConfigError) as raised:
        sql_connect(url)
    assert url not in str(raised.value)


def test_the_command_prints_the_lines_for_the_configured_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "osfmilter.toml"
    config.write_text(f'state_dir = "{tmp_path}"\n')
    assert main(["--config", str(config), "sasl", "dovecot-sql"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == [
        "driver = sqlite",
        f"connect = {tmp_path}/osfmilter.sqlite3",
    ]
    config.write_text('[database]\nurl = "postgresql://osf:pw@db.internal:5432/osfmilter"\n')
    assert main(["--config", str(config), "sasl", "dovecot-sql"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == [
        "driver = pgsql",
        "connect = host=db.internal port=5432 dbname=osfmilter user=osf password=pw",
    ]


def test_the_command_refuses_a_database_dovecot_cannot_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "osfmilter.toml"
    config.write_text('[database]\nurl = "sqlite:///relative.db"\n')
    assert main(["--config", str(config), "sasl", "dovecot-sql"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("osfmilter: error: Dovecot needs the SQLite database as an absolute")
    assert len(err.splitlines()) == 1
