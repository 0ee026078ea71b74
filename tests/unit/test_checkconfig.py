"""check-config: fail-open settings, Postfix around the milter, clamd's limits."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from osfmilter.checkconfig import _same_socket, lint, parse_size, reservation_lifetime
from osfmilter.cli import main
from osfmilter.config import config_from_dict, parse_socket


def write_settled(path: Path, text: str) -> None:
    """Write a Postfix file as an operator's is: not in the last two seconds.

    postconf reads a file younger than that again every 0.3 s until it is
    older (Postfix's load_file), which would cost each test two seconds.
    """
    path.write_text(text)
    an_hour_ago = time.time() - 3600
    os.utime(path, (an_hour_ago, an_hour_ago))


def postfix_dir(tmp_path: Path, **settings: str) -> str:
    directory = tmp_path / "postfix"
    directory.mkdir()
    write_settled(directory / "main.cf", "".join(f"{k} = {v}\n" for k, v in settings.items()))
    return str(directory)


def clamd_conf(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "clamd.conf"
    path.write_text(text)
    return path


GOOD_POSTFIX = {"message_size_limit": "62914560", "milter_default_action": "tempfail"}
GOOD_CLAMD = "StreamMaxLength 51M\nMaxFileSize 64M\nMaxScanSize 200M\n"
# For the cases about Postfix: no clamd, and that on purpose (else it is an error of its own).
UNSCANNED = {"milter": {"fail_open_acknowledged": True}}


def errors(findings: list) -> list[str]:  # type: ignore[type-arg]
    return [f"{f.subject}: {f.text}" for f in findings if f.severity == "error"]


def test_a_sound_setup_has_no_errors(tmp_path: Path) -> None:
    config = config_from_dict({"clamav": {"address": "/run/clamav/clamd.ctl"}})
    findings = lint(config, postfix_dir(tmp_path, **GOOD_POSTFIX), clamd_conf(tmp_path, GOOD_CLAMD))
    assert errors(findings) == []
    assert {f.subject for f in findings if f.severity == "ok"} == {"postfix", "clamd"}


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"message_size_limit": "52428800"}, "postfix message_size_limit"),
        ({"message_size_limit": "10240000"}, "postfix message_size_limit"),
        ({"milter_default_action": "accept"}, "relayed unchecked"),
        ({"milter_default_action": "reject"}, "refused for good"),
    ],
)
def test_postfix_problems(tmp_path: Path, settings: dict[str, str], problem: str) -> None:
    directory = postfix_dir(tmp_path, **{**GOOD_POSTFIX, **settings})
    found = errors(lint(config_from_dict(UNSCANNED), directory))
    assert len(found) == 1 and problem in found[0]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        # The message itself, without the headroom.
        ("StreamMaxLength 50M\nMaxFileSize 64M\nMaxScanSize 200M\n", "StreamMaxLength"),
        ("StreamMaxLength\t40M\nMaxFileSize\t64M\nMaxScanSize\t200M\n", "StreamMaxLength"),
        ("MaxFileSize 64M\nMaxScanSize 200M\n", "StreamMaxLength"),  # default 25M
        ("StreamMaxLength 51M\nMaxScanSize 200M\n", "MaxFileSize"),
        ("StreamMaxLength 51M\nMaxFileSize 25M\nMaxScanSize 200M\n", "MaxFileSize"),
    ],
)
def test_clamd_limits_below_the_message_limit(tmp_path: Path, text: str, problem: str) -> None:
    config = config_from_dict({"clamav": {"address": "/run/clamav/clamd.ctl"}})
    found = errors(lint(config, postfix_dir(tmp_path, **GOOD_POSTFIX), clamd_conf(tmp_path, text)))
    assert len(found) == 1 and problem in found[0]


@pytest.mark.parametrize("separator", [" ", "\t", " \t  "])
def test_stream_limit_is_the_message_as_sent_plus_headroom(tmp_path: Path, separator: str) -> None:
    """The limit counts the encoded message clamd is streamed: no base64 factor on top.

    clamd takes any whitespace between a key and its value.
    """
    config = config_from_dict({"clamav": {"address": "/run/clamav/clamd.ctl"}})
    text = "".join(
        f"{key}{separator}{value}\n"
        for key, value in (
            ("StreamMaxLength", "51M"),
            ("MaxFileSize", "50M"),
            ("MaxScanSize", "50M"),
        )
    )
    findings = lint(config, postfix_dir(tmp_path, **GOOD_POSTFIX), clamd_conf(tmp_path, text))
    assert errors(findings) == []


def test_alert_exceeds_max_covers_the_file_limits_but_not_the_stream(tmp_path: Path) -> None:
    config = config_from_dict({"clamav": {"address": "/run/clamav/clamd.ctl"}})
    text = "StreamMaxLength 51M\nMaxFileSize 1M\nMaxScanSize 1M\nAlertExceedsMax yes\n"
    assert (
        errors(lint(config, postfix_dir(tmp_path, **GOOD_POSTFIX), clamd_conf(tmp_path, text)))
        == []
    )


def test_fail_open_needs_acknowledgement(tmp_path: Path) -> None:
    pf = postfix_dir(tmp_path, **GOOD_POSTFIX)
    open_config = {
        "spam": {"backend": "spamassassin", "address": "127.0.0.1:783", "on_error": "accept"},
        "clamav": {"address": "/run/clamav/clamd.ctl"},
    }
    found = errors(lint(config_from_dict(open_config), pf, clamd_conf(tmp_path, GOOD_CLAMD)))
    assert len(found) == 1 and found[0].startswith("[spam] on_error")
    assert "fail_open_acknowledged" in found[0]
    acknowledged = {**open_config, "milter": {"fail_open_acknowledged": True}}
    findings = lint(config_from_dict(acknowledged), pf, clamd_conf(tmp_path, GOOD_CLAMD))
    assert errors(findings) == [] and any(f.severity == "warning" for f in findings)


def test_scanning_off_is_fail_open(tmp_path: Path) -> None:
    """No [clamav] address relays every message unscanned: refused like on_error = "accept"."""
    pf = postfix_dir(tmp_path, **GOOD_POSTFIX)
    found = errors(lint(config_from_dict({}), pf))
    assert len(found) == 1 and found[0].startswith("[clamav] address: empty")
    assert "fail_open_acknowledged" in found[0]
    findings = lint(config_from_dict(UNSCANNED), pf)
    assert errors(findings) == []
    assert [f.subject for f in findings if f.severity == "warning"] == ["[clamav] address"]


def test_scanning_off_is_no_fail_open_in_inbound_mode(tmp_path: Path) -> None:
    """The inbound instance scans nothing whatever its [clamav] says: nothing to refuse."""
    findings = lint(config_from_dict({"mode": "inbound"}), postfix_dir(tmp_path, **GOOD_POSTFIX))
    assert errors(findings) == [] and not any("clamav" in f.subject for f in findings)


def test_sizes() -> None:
    assert [parse_size(t) for t in ("25M", "100k", "2G", "4096", "junk")] == [
        25 * 1024**2,
        100 * 1024,
        2 * 1024**3,
        4096,
        0,
    ]


def test_command_refuses_scanning_off(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "osfmilter.toml"
    config.write_text('[clamav]\naddress = ""\n')
    good_pf = postfix_dir(tmp_path, **GOOD_POSTFIX)
    assert main(["--config", str(config), "check-config", "--postfix-config", good_pf]) == 2
    assert "error: [clamav] address: empty: virus scanning is off" in capsys.readouterr().out
    config.write_text('[milter]\nfail_open_acknowledged = true\n[clamav]\naddress = ""\n')
    assert main(["--config", str(config), "check-config", "--postfix-config", good_pf]) == 0
    assert "warning: [clamav] address" in capsys.readouterr().out


def test_command_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "osfmilter.toml"
    config.write_text('[clamav]\naddress = "/run/clamav/clamd.ctl"\n')
    bad = clamd_conf(tmp_path, "StreamMaxLength 25M\n")
    good_pf = postfix_dir(tmp_path, **GOOD_POSTFIX)
    assert (
        main(
            [
                "--config",
                str(config),
                "check-config",
                "--postfix-config",
                good_pf,
                "--clamd-config",
                str(bad),
            ]
        )
        == 2
    )
    assert "error: clamd StreamMaxLength" in capsys.readouterr().out


@pytest.mark.parametrize(
    "text",
    [
        '[database]\nurl = "postgresql://osf:s3cret@127.0.0.1:1/db"\n',
        '[rates]\nredis_url = "redis://:s3cret@127.0.0.1:6379/0"\n',
        '[rates]\nredis_url = "redis://osf:s3cret@127.0.0.1:6379/0"\n',
        '[rates]\nredis_url = "rediss://127.0.0.1:6379/0?password=s3cret"\n',
    ],
)
def test_world_readable_password_is_warned_about(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    text: str,
) -> None:
    config = tmp_path / "osfmilter.toml"
    config.write_text(text)
    config.chmod(0o644)
    main(["--config", str(config), "check-config"])
    assert any(
        "world-readable" in r.getMessage() and "s3cret" not in r.getMessage()
        for r in caplog.records
    )
    caplog.clear()
    config.chmod(0o640)
    main(["--config", str(config), "check-config"])
    assert not any("world-readable" in r.getMessage() for r in caplog.records)


def test_urls_without_a_password_draw_no_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    config = tmp_path / "osfmilter.toml"
    config.write_text(
        '[rates]\nredis_url = "redis://osf@127.0.0.1:6379/0"\n'
        '[database]\nurl = "postgresql://osf@127.0.0.1:1/db"\n'
    )
    config.chmod(0o644)
    main(["--config", str(config), "check-config"])
    assert not any("world-readable" in r.getMessage() for r in caplog.records)


def test_clamd_config_given_with_scanning_off_is_said_unchecked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "osfmilter.toml"
    config.write_text("[milter]\nfail_open_acknowledged = true\n")
    good_pf = postfix_dir(tmp_path, **GOOD_POSTFIX)
    command = [
        "--config",
        str(config),
        "check-config",
        "--postfix-config",
        good_pf,
        "--clamd-config",
    ]
    assert main([*command, str(clamd_conf(tmp_path, "StreamMaxLength 1M\n"))]) == 0
    out = capsys.readouterr().out
    assert "not checked against the message limit: [clamav] address is empty" in out
    assert "StreamMaxLength" not in out  # its limits concern no one
    assert main([*command, str(tmp_path / "missing.conf")]) == 2
    assert "error: clamd:" in capsys.readouterr().out


@pytest.mark.parametrize("address", ["", "/run/clamav/clamd.ctl"])
@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("Example\n" + GOOD_CLAMD, "clamd Example"),
        ("StreamMaxLength lots\nMaxFileSize 64M\nMaxScanSize 200M\n", "not a size"),
        ("Stream-Max-Length 51M\n" + GOOD_CLAMD, "not an option name"),
    ],
)
def test_clamd_config_that_clamd_would_refuse(
    tmp_path: Path, address: str, text: str, problem: str
) -> None:
    """clamd will not start with these, whether or not osfmilter uses it."""
    config = config_from_dict({**UNSCANNED, "clamav": {"address": address}})
    found = errors(lint(config, postfix_dir(tmp_path, **GOOD_POSTFIX), clamd_conf(tmp_path, text)))
    assert len(found) == 1 and problem in found[0], found


# The wiring guard: an inbound instance accepts everything -------------------

INBOUND = {"mode": "inbound", "milter": {"socket": "inet:8895@127.0.0.1"}}
# contrib/postfix/main.cf's way: Postfix lets every client try, the milter decides.
MILTER_GATED = "check_client_access static:OK, reject"


def postfix_with_listeners(tmp_path: Path, master: str, **main_cf: str) -> str:
    directory = postfix_dir(tmp_path, **GOOD_POSTFIX, **main_cf)
    write_settled(Path(directory) / "master.cf", master)
    return directory


def listener_errors(config: dict, directory: str) -> list[str]:  # type: ignore[type-arg]
    return [
        e
        for e in errors(lint(config_from_dict(config), directory))
        if e.startswith("postfix listener")
    ]


def test_inbound_instance_on_a_milter_gated_listener_is_an_open_relay(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = postfix_with_listeners(
        tmp_path,
        "2525 inet n - y - - smtpd\n",
        smtpd_milters="inet:127.0.0.1:8895",
        smtpd_relay_restrictions=MILTER_GATED,
        smtpd_recipient_restrictions="permit",
    )
    config = tmp_path / "inbound.toml"
    config.write_text('mode = "inbound"\n[milter]\nsocket = "inet:8895@127.0.0.1"\n')
    assert main(["--config", str(config), "check-config", "--postfix-config", directory]) == 2
    out = [line for line in capsys.readouterr().out.splitlines() if line.startswith("error:")]
    assert len(out) == 1 and out[0].startswith(
        "error: postfix listener 2525/inet: lets clients relay (check_client_access in"
    )
    assert "inbound mode" in out[0] and "open relay" in out[0]


def test_each_instance_on_its_own_listener_passes(tmp_path: Path) -> None:
    """The MX refuses relaying itself; the customers' port is gated by the outbound milter."""
    master = (
        "smtp inet n - y - - smtpd\n"
        "  -o smtpd_milters={inet:127.0.0.1:8895,default_action=accept}\n"
        "2525 inet n - y - - smtpd -o smtpd_milters=inet:127.0.0.1:8894\n"
        f"  -o {{smtpd_relay_restrictions={MILTER_GATED}}}\n"
        "  -o smtpd_recipient_restrictions=permit\n"
    )
    directory = postfix_with_listeners(
        tmp_path,
        master,
        smtpd_relay_restrictions="permit_mynetworks, permit_sasl_authenticated, "
        "reject_unauth_destination",
    )
    findings = lint(config_from_dict(INBOUND), directory)
    assert listener_errors(INBOUND, directory) == []
    assert [f.subject for f in findings if f.severity == "ok" and "listener" in f.subject] == [
        "postfix listener smtp/inet"
    ]
    outbound = {"milter": {"socket": "inet:8894@127.0.0.1"}, **UNSCANNED}
    assert errors(lint(config_from_dict(outbound), directory)) == []


@pytest.mark.parametrize(
    ("options", "culprit"),
    [
        # Customers' SASL logins relay through Postfix's own permit.
        ("-o smtpd_sasl_auth_enable=yes", "permit_sasl_authenticated"),
        # A sender table can say OK for any client.
        (
            "-o smtpd_relay_restrictions=check_sender_access,hash:/x,reject_unauth_destination",
            "check_sender_access",
        ),
    ],
)
def test_inbound_instance_on_a_listener_that_relays_for_some_clients(
    tmp_path: Path, options: str, culprit: str
) -> None:
    directory = postfix_with_listeners(
        tmp_path,
        f"submission inet n - y - - smtpd {options}\n",
        smtpd_milters="unix:/run/osfmilter/in/milter.sock",
        smtpd_relay_restrictions="permit_sasl_authenticated, reject_unauth_destination",
    )
    config = {"mode": "inbound", "milter": {"socket": "unix:/run/osfmilter/in/milter.sock"}}
    # (The SASL listener's missing TLS is an error of its own.)
    found = [e for e in listener_errors(config, directory) if "lets clients relay" in e]
    assert len(found) == 1 and f"({culprit} in" in found[0], found


def test_listeners_unknown_without_master_cf(tmp_path: Path) -> None:
    directory = postfix_dir(tmp_path, **GOOD_POSTFIX)
    findings = lint(config_from_dict(INBOUND), directory)
    assert [(f.severity, f.text) for f in findings if f.subject == "postfix listeners"] == [
        ("warning", f"not checked: no {directory}/master.cf")
    ]


def test_a_reservation_shorter_than_a_transaction_may_last_is_warned_about() -> None:
    assert reservation_lifetime(config_from_dict({})) == []  # 900 s = 600 + 300
    short = reservation_lifetime(config_from_dict({"rates": {"reservation_ttl": 600}}))
    assert [(f.severity, f.subject) for f in short] == [("warning", "[rates] reservation_ttl")]
    assert "600 s is shorter than a transaction may last" in short[0].text
    longer_mta = config_from_dict({"milter": {"timeout": 1200}})
    assert "raise it to at least 1500" in reservation_lifetime(longer_mta)[0].text


@pytest.mark.parametrize(
    ("socket", "spec", "same"),
    [
        ("inet:8894@127.0.0.1", "inet:127.0.0.1:8894", True),
        ("inet:8894@127.0.0.1", "inet:localhost:8894", True),
        ("inet:8894@0.0.0.0", "inet:127.0.0.1:8894", True),
        ("inet6:8894@[::1]", "inet:[::1]:8894", True),
        ("inet:8894@127.0.0.1", "inet:127.0.0.1:8895", False),
        ("inet:8894@127.0.0.1", "inet:127.0.0.2:8894", False),
        ("inet:8894@127.0.0.1", "inet:127.0.0.1:x", False),
        ("inet:8894@127.0.0.1", "inet:127.0.0.1", False),
        ("inet:8894@0.0.0.0", "inet::8894", False),
        ("inet:8894@127.0.0.1", "unix:/run/osfmilter.sock", False),
        ("unix:/run/osfmilter.sock", "unix:/run/osfmilter.sock", True),
    ],
)
def test_postfix_milter_spec_reaches_the_socket(socket: str, spec: str, same: bool) -> None:
    assert _same_socket(parse_socket(socket), spec) is same


# SASL: passwords only over TLS, checked by Dovecot ---------------------------

SASL_LISTENER = "2525 inet n - n - - smtpd -o smtpd_sasl_auth_enable=yes\n"


@pytest.fixture
def sasl_main_cf(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A sound SASL wiring: certificate files, and a listening Dovecot auth socket."""
    (tmp_path / "relay.crt").write_text("certificate")
    (tmp_path / "relay.key").write_text("key")
    with socket.socket(socket.AF_UNIX) as auth:
        auth.bind(str(tmp_path / "auth"))
        auth.listen()
        yield {
            "smtpd_sasl_type": "dovecot",
            "smtpd_sasl_path": str(tmp_path / "auth"),
            "smtpd_tls_security_level": "may",
            "smtpd_tls_cert_file": str(tmp_path / "relay.crt"),
            "smtpd_tls_key_file": str(tmp_path / "relay.key"),
            "smtpd_tls_auth_only": "yes",
            "smtpd_client_auth_rate_limit": "30",
        }


def sasl_findings(
    tmp_path: Path, main_cf: dict[str, str], master: str = SASL_LISTENER
) -> list[tuple[str, str]]:
    directory = postfix_with_listeners(tmp_path, master, **main_cf)
    return [
        (f.severity, f.text)
        for f in lint(config_from_dict(UNSCANNED), directory)
        if f.subject.startswith("postfix listener ")
    ]


OK_STARTTLS = ("ok", "AUTH only after STARTTLS, checked by dovecot")


def problems(findings: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The errors and warnings (a listener with only warnings is still said to be ok)."""
    return [finding for finding in findings if finding[0] != "ok"]


def test_a_sound_sasl_listener_is_ok(tmp_path: Path, sasl_main_cf: dict[str, str]) -> None:
    assert sasl_findings(tmp_path, sasl_main_cf) == [OK_STARTTLS]


@pytest.mark.parametrize(
    ("master", "changes", "ok"),
    [
        # Port 465: TLS from the first byte, so AUTH is never in clear.
        (
            "465 inet n - n - - smtpd -o smtpd_tls_wrappermode=yes -o smtpd_sasl_auth_enable=yes\n",
            {"smtpd_tls_security_level": "none", "smtpd_tls_auth_only": "no"},
            ("ok", "AUTH on TLS only, checked by dovecot"),
        ),
        # TLS required before anything.
        (
            SASL_LISTENER,
            {"smtpd_tls_security_level": "encrypt", "smtpd_tls_auth_only": "no"},
            OK_STARTTLS,
        ),
        # The older parameter for "may".
        (SASL_LISTENER, {"smtpd_tls_security_level": "", "smtpd_use_tls": "yes"}, OK_STARTTLS),
    ],
)
def test_auth_that_is_always_under_tls_needs_no_auth_only(
    tmp_path: Path,
    sasl_main_cf: dict[str, str],
    master: str,
    changes: dict[str, str],
    ok: tuple[str, str],
) -> None:
    assert sasl_findings(tmp_path, {**sasl_main_cf, **changes}, master) == [ok]


@pytest.mark.parametrize(
    "master",
    [
        # Booleans are case-insensitive to Postfix.
        "2525 inet n - n - - smtpd -o smtpd_sasl_auth_enable=Yes\n",
        # The command given by its full path.
        "2525 inet n - n - - /usr/lib/postfix/sbin/smtpd -o smtpd_sasl_auth_enable=yes\n",
    ],
)
def test_every_spelling_of_a_sasl_listener_is_judged(
    tmp_path: Path, sasl_main_cf: dict[str, str], master: str
) -> None:
    [(severity, text)] = sasl_findings(
        tmp_path, {**sasl_main_cf, "smtpd_tls_auth_only": "no"}, master
    )
    assert severity == "error" and text.startswith("offers AUTH without TLS"), text


@pytest.mark.parametrize(
    ("changes", "finding"),
    [
        (
            {"smtpd_tls_auth_only": "no"},
            ("error", "offers AUTH without TLS: passwords would cross the network in clear"),
        ),
        (
            {"smtpd_tls_security_level": "none"},
            ("error", "has SASL but smtpd_tls_security_level is 'none': no client can start TLS"),
        ),
        (
            {"smtpd_tls_cert_file": "", "smtpd_tls_key_file": ""},
            ("error", "offers TLS without a certificate"),
        ),
        (
            {"smtpd_tls_cert_file": "/nonexistent/relay.crt"},
            ("error", "smtpd_tls_cert_file /nonexistent/relay.crt does not exist"),
        ),
        (
            {"smtpd_tls_chain_files": "/nonexistent/chain.pem"},
            ("error", "smtpd_tls_chain_files /nonexistent/chain.pem does not exist"),
        ),
        (
            {"smtpd_sasl_type": "cyrus"},
            ("warning", "smtpd_sasl_type is 'cyrus': osfmilter's passwords are checked by Dovecot"),
        ),
        (
            {"smtpd_sasl_path": "private/auth"},
            ("warning", "no Dovecot auth socket at "),
        ),
        (
            {"smtpd_client_auth_rate_limit": "0"},
            ("warning", "smtpd_client_auth_rate_limit is 0: nothing slows down password guessing"),
        ),
    ],
)
def test_each_sasl_mistake_is_named(
    tmp_path: Path,
    sasl_main_cf: dict[str, str],
    changes: dict[str, str],
    finding: tuple[str, str],
) -> None:
    [(severity, text)] = problems(sasl_findings(tmp_path, {**sasl_main_cf, **changes}))
    assert (severity, text[: len(finding[1])]) == finding, text


def test_a_chrooted_smtpd_finds_even_an_absolute_sasl_path_under_the_queue_directory(
    tmp_path: Path, sasl_main_cf: dict[str, str]
) -> None:
    queue = tmp_path / "spool"
    queue.mkdir()
    changes = {"smtpd_sasl_path": str(tmp_path / "auth"), "queue_directory": str(queue)}
    chrooted = "2525 inet n - y - - smtpd -o smtpd_sasl_auth_enable=yes\n"
    [(_, text)] = problems(sasl_findings(tmp_path, {**sasl_main_cf, **changes}, chrooted))
    assert text.startswith(f"no Dovecot auth socket at {queue}{tmp_path}/auth:"), text


def test_a_relative_sasl_path_is_under_the_queue_directory(
    tmp_path: Path, sasl_main_cf: dict[str, str]
) -> None:
    queue = tmp_path / "spool"
    (queue / "private").mkdir(parents=True)
    changes = {"smtpd_sasl_path": "private/auth", "queue_directory": str(queue)}
    [(_, text)] = problems(sasl_findings(tmp_path, {**sasl_main_cf, **changes}))
    assert text == (
        f"no Dovecot auth socket at {queue}/private/auth: every login fails until Dovecot "
        "runs with contrib/dovecot's configuration"
    )


def test_a_listener_without_sasl_is_not_judged_for_it(
    tmp_path: Path, sasl_main_cf: dict[str, str]
) -> None:
    directory = postfix_with_listeners(
        tmp_path, "2525 inet n - n - - smtpd\n", **{**sasl_main_cf, "smtpd_tls_auth_only": "no"}
    )
    assert not any("listener" in f.subject for f in lint(config_from_dict(UNSCANNED), directory))


def test_the_command_refuses_sasl_in_clear(
    tmp_path: Path, sasl_main_cf: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    directory = postfix_with_listeners(
        tmp_path, SASL_LISTENER, **{**sasl_main_cf, "smtpd_tls_auth_only": "no"}
    )
    config = tmp_path / "osfmilter.toml"
    config.write_text("[milter]\nfail_open_acknowledged = true\n")
    assert main(["--config", str(config), "check-config", "--postfix-config", directory]) == 2
    assert "error: postfix listener 2525/inet: offers AUTH without TLS" in capsys.readouterr().out
