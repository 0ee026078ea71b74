"""Config: defaults, one-line errors naming the key, unknown keys refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from osfmilter.config import CONFIG_ENV, Config, config_from_dict, load_config, parse_socket
from osfmilter.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "osfmilter.toml"
    path.write_text(text)
    return path


def test_no_file_gives_working_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    config = load_config()
    assert config.milter.socket == "inet:8894@127.0.0.1"
    assert config.database_url.startswith("sqlite:///")
    assert config.metrics.listen == ""
    assert config.plans.free.max_message_size == 52_428_800
    assert (config.plans.free.rate_known, config.plans.free.rate_unknown) == (100, 10)
    assert (config.plans.paid.rate_known, config.plans.paid.rate_unknown) == (1000, 1000)
    assert config.plans.paid.rate_suspicious == 10
    assert (config.plans.free.max_recipients_known, config.plans.paid.max_recipients_known) == (
        50,
        500,
    )


def test_environment_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONFIG_ENV, str(write(tmp_path, '[milter]\nsocket = "unix:/run/o.sock"\n')))
    assert load_config().milter.socket == "unix:/run/o.sock"


def test_partial_paid_plan_keeps_paid_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "[plans.paid]\nmax_recipients_known = 900\n"))
    assert config.plans.paid.max_recipients_known == 900
    assert config.plans.paid.rate_known == 1000
    assert config.plans.free.max_recipients_known == 50


# What each HOST:PORT setting refuses, and the one-line error it gives.
HOST_PORT_ERRORS = [
    *(
        (
            f"[clamav]\naddress = '{address}'\n",
            f"{address!r} is neither a unix socket path nor HOST:PORT",
        )
        for address in ("127.0.0.1", "clamd:", ":3310", "clamd:0", "clamd:65536", "clamd:x")
    ),
    *(
        (
            f"[spam]\nbackend = '{backend}'\naddress = '{address}'\n",
            f"address {address!r} does not suit backend {backend!r}",
        )
        for backend, address in (
            ("spamassassin", "127.0.0.1"),
            ("spamassassin", "http://127.0.0.1:783"),
            ("spamassassin", "spamd:99999"),
            ("rspamd", "http://127.0.0.1"),
            ("rspamd", "http://127.0.0.1:11333/checkv2"),
        )
    ),
    ("[spam]\nbackend = 'rspamd'\n", "backend 'rspamd' needs an address"),
    *(
        (f"[metrics]\nlisten = '{listen}'\n", f"listen {listen!r} is not IP:PORT")
        for listen in ("127.0.0.1", "localhost:9899", "localhost:0", ":9899")
    ),
    *(
        (f"[metrics]\nlisten = '{listen}'\n", f"listen {listen!r}: port must be 1-65535")
        for listen in ("127.0.0.1:", "127.0.0.1:0", "[::1]:65536", "127.0.0.1:x")
    ),
    ("[metrics]\nlisten = '192.0.2.1:9899'\n", "set metrics.allow_public_bind = true"),
]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[milter]\nsockett = 'x'\n", "unknown key 'milter.sockett'"),
        ("bogus = 1\n", "unknown key 'bogus'"),
        ("[milter]\nsocket = 'tcp:25'\n", "key 'milter.socket'"),
        ("[milter]\nsocket = 'inet:8894@192.0.2.1'\n", "allow_public_bind"),
        ("[plans.free]\nmax_recipients_known = 0\n", "key 'plans.free.max_recipients_known'"),
        ("[plans.gold]\nrate_known = 1\n", "unknown key 'plans.gold'"),
        ("[log]\nformat = 'xml'\n", "key 'log.format'"),
        ("[replies]\ncontact = '100% sure'\n", "key 'replies.contact'"),
        ("[milter\n", "invalid TOML"),
        ("[web]\nsession_hours = 0\n", "key 'web.session_hours'"),
        ("[web]\nsession_idle_minutes = 1\n", "key 'web.session_idle_minutes'"),
        ("[web]\nsession_hours = 1\nsession_idle_minutes = 61\n", "ends before it can idle out"),
        ("[web]\ntrusted_proxies = ['proxy.example']\n", "not an IP address or network"),
        *(
            (f"[database]\nurl = '{url}'\n", f"key 'database.url': {message}")
            for url, message in (
                ("postgresql://u:s3cret@h:abc/db", "its port is not a number from 1 to 65535"),
                ("postgresql://u:s3cret@h:99999/db", "its port is not a number from 1 to 65535"),
                ("postgresql://u:s3cret/db", "its port is not a number"),
                ("/var/lib/osfmilter/osfmilter.sqlite3", "not a database URL"),
            )
        ),
        *HOST_PORT_ERRORS,
    ],
)
def test_bad_config_is_one_line_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert message in str(info.value)
    assert "\n" not in str(info.value) and "s3cret" not in str(info.value)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nothere\.toml"):
        load_config(tmp_path / "nothere.toml")


def test_a_file_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "osfmilter.toml"
    path.write_bytes("[replies]\ncontact = 'Müller'\n".encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"config file {path}: not UTF-8 TOML"


def test_public_bind_needs_opt_in(tmp_path: Path) -> None:
    path = write(tmp_path, "[milter]\nsocket = 'inet:8894@0.0.0.0'\nallow_public_bind = true\n")
    assert load_config(path).milter.allow_public_bind


@pytest.mark.parametrize(
    ("spec", "family", "host", "port"),
    [
        ("inet:8894@127.0.0.1", "inet", "127.0.0.1", 8894),
        ("inet6:8894@[::1]", "inet6", "::1", 8894),
        ("unix:/run/osfmilter/milter.sock", "unix", None, None),
    ],
)
def test_libmilter_socket_syntax(
    spec: str, family: str, host: str | None, port: int | None
) -> None:
    parsed = parse_socket(spec)
    assert (parsed.family, parsed.host, parsed.port) == (family, host, port)


def test_example_config_in_contrib_is_valid() -> None:
    example = Path(__file__).parents[2] / "contrib" / "osfmilter.toml"
    assert isinstance(load_config(example), Config)


@pytest.mark.parametrize(
    "text",
    [
        "[clamav]\naddress = '/run/clamav/clamd.ctl'\n",
        "[clamav]\naddress = '127.0.0.1:3310'\n",
        "[clamav]\naddress = '[::1]:3310'\n",
        "[clamav]\naddress = 'clamd.internal:3310'\n",
        "[spam]\nbackend = 'spamassassin'\naddress = '127.0.0.1:783'\n",
        "[spam]\nbackend = 'rspamd'\naddress = 'http://127.0.0.1:11333/'\n",
        "[spam]\nbackend = 'rspamd'\naddress = '[::1]:11333'\n",
        "[metrics]\nlisten = '127.0.0.1:9899'\n",
        "[metrics]\nlisten = '[::1]:9899'\n",
    ],
)
def test_host_port_addresses(tmp_path: Path, text: str) -> None:
    assert isinstance(load_config(write(tmp_path, text)), Config)


@pytest.mark.parametrize("address", [":514", "loghost", "127.0.0.1:99999"])
def test_a_syslog_address_is_a_path_or_host_port(address: str) -> None:
    with pytest.raises(ConfigError, match="neither a unix socket path nor HOST:PORT"):
        config_from_dict({"log": {"syslog_address": address}})
    assert config_from_dict({"log": {"syslog_address": "127.0.0.1:514"}}).log.syslog_address


@pytest.mark.parametrize(
    "url",
    ["", "sqlite:///:memory:", "postgresql+psycopg://u:p/%40ss@[::1]:5432/db?sslmode=require"],
)
def test_a_database_url_sqlalchemy_reads_is_valid(url: str) -> None:
    assert config_from_dict({"database": {"url": url}}).database.url == url
