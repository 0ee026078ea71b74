"""A self-signed certificate for a private Postfix's STARTTLS on loopback.

Made with ``cryptography`` in the test process: no openssl run, nothing
downloaded. Clients either trust :attr:`TestCertificate.cert_path` (it is
its own CA) or, as a customer's application on a self-signed relay would,
skip verification.
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["TestCertificate", "make_certificate"]


@dataclass(frozen=True)
class TestCertificate:
    """PEM files: the certificate and its key (mode 0600)."""

    cert_path: Path
    key_path: Path

    def postfix_main_cf(self) -> dict[str, str]:
        """The main.cf parameters that point Postfix's smtpd at these files."""
        return {
            "smtpd_tls_cert_file": str(self.cert_path),
            "smtpd_tls_key_file": str(self.key_path),
        }

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts this certificate only, for 127.0.0.1 or localhost."""
        return ssl.create_default_context(cafile=str(self.cert_path))


def make_certificate(
    directory: Path, names: tuple[str, ...] = ("localhost",), days: int = 30
) -> TestCertificate:
    """Write ``cert.pem`` and ``key.pem`` into ``directory``.

    A P-256 key; the certificate names 127.0.0.1, ::1 and ``names``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.now(UTC)
    alt_names: list[x509.GeneralName] = [x509.DNSName(name) for name in names]
    alt_names += [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / "cert.pem"
    key_path = directory / "key.pem"
    key_path.touch(mode=0o600)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    cert_path.chmod(0o644)
    return TestCertificate(cert_path, key_path)
