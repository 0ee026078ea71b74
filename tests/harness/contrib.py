"""The shipped Postfix settings (contrib/postfix), as a private test or demo Postfix runs them.

The end-to-end tests, the benchmarks and the quick start all run the
main.cf and master.cf options operators get, with only the paths that
name the operator's machine (certificate, Dovecot socket, milter socket)
pointed at their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.harness.tls import TestCertificate

__all__ = ["SaslWiring", "contrib_main_cf", "contrib_master_options"]

CONTRIB_POSTFIX = Path(__file__).parents[2] / "contrib" / "postfix"
CONTRIB_MAIN_CF = CONTRIB_POSTFIX / "main.cf"
CONTRIB_MASTER_CF = CONTRIB_POSTFIX / "master.cf"


@dataclass(frozen=True)
class SaslWiring:
    """What contrib's SASL and TLS settings point at on the operator's machine, for a test."""

    certificate: TestCertificate
    sasl_path: str  # smtpd_sasl_path: the Dovecot socket (DovecotAuth.postfix_sasl_path)


def contrib_master_options(service: str = "smtp") -> dict[str, str]:
    """The ``-o`` options contrib/postfix/master.cf gives a listener."""
    options: dict[str, str] = {}
    current = None
    for line in CONTRIB_MASTER_CF.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if not line.startswith((" ", "\t")):
            current = line.split()[0]
        elif current == service and line.split()[0] == "-o":
            key, _, value = line.split(None, 1)[1].partition("=")
            options[key] = value
    return options


def contrib_main_cf(sasl: SaslWiring | None = None) -> dict[str, str]:
    """The shipped main.cf snippet, so the tests run the configuration operators get.

    Its SASL and TLS settings name a certificate and a Dovecot socket that
    only a relay with ``sasl`` has: there they point at the test's own
    (and the smtp listener's master.cf options, smtpd_sasl_auth_enable,
    apply to the harness's listeners). Any other relay gets none of the
    ``smtpd_sasl_*``/``smtpd_tls_*`` keys: it runs without STARTTLS and
    AUTH, as before, and presents logins with XCLIENT.
    """
    settings = {}
    for line in CONTRIB_MAIN_CF.read_text().splitlines():
        if line.strip() and not line.startswith(("#", " ", "\t")):
            key, _, value = line.partition("=")
            settings[key.strip()] = value.strip()
    # The test's own milter socket replaces the example's.
    del settings["smtpd_milters"]
    if sasl is None:
        return {
            k: v for k, v in settings.items() if not k.startswith(("smtpd_sasl_", "smtpd_tls_"))
        }
    for key in ("smtpd_sasl_path", "smtpd_tls_cert_file", "smtpd_tls_key_file"):
        assert key in settings, f"contrib/postfix/main.cf no longer sets {key}"
    settings["smtpd_sasl_path"] = sasl.sasl_path
    settings.update(sasl.certificate.postfix_main_cf())
    settings.update(contrib_master_options("smtp"))
    return settings
