"""DKIM key pairs: making them, the TXT record of the public half, the private key files.

One PEM file per domain and selector (``SEL._domainkey.DOMAIN.pem``) in the
key directory, mode 0600 in a directory of mode 0700: only the milter's
user may read them.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from osfmilter.dkim.signer import Algorithm
from osfmilter.errors import ConfigError, UsageError
from osfmilter.registration import normalize_domain

_SELECTOR = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
# RFC 8301: verifiers refuse RSA keys under 1024 bits.
RSA_BITS = range(1024, 8193)
KEY_TYPES = {"rsa-sha256": "rsa", "ed25519-sha256": "ed25519"}


class KeyFileError(ConfigError):
    """A private key file is missing, unreadable or holds no usable key."""


@dataclass(frozen=True)
class GeneratedKey:
    private_pem: bytes
    public_key: str  # the record's p= value


def generate(algorithm: Algorithm, rsa_bits: int = 2048) -> GeneratedKey:
    private: RSAPrivateKey | Ed25519PrivateKey
    if algorithm == "rsa-sha256":
        if rsa_bits not in RSA_BITS:
            raise UsageError(f"an RSA key has 1024 to 8192 bits, not {rsa_bits}")
        private = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    else:
        private = ed25519.Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return GeneratedKey(pem, public_value(private))


def public_value(private: RSAPrivateKey | Ed25519PrivateKey) -> str:
    """The record's p= for a private key: base64 of the DER SubjectPublicKeyInfo (RSA)
    or of the raw 32 bytes (Ed25519, RFC 8463)."""
    if isinstance(private, RSAPrivateKey):
        public = private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    else:
        public = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
    return base64.b64encode(public).decode("ascii")


def record_text(algorithm: Algorithm, public_key: str) -> str:
    """The TXT record to publish at ``SEL._domainkey.DOMAIN``."""
    return f"v=DKIM1; k={KEY_TYPES[algorithm]}; p={public_key}"


def parse_record(text: str) -> dict[str, str]:
    """A tag=value list (RFC 6376, section 3.2): tags and values stripped of whitespace.

    p= loses its inner whitespace too (base64 may be folded). A part
    without ``=``, or a tag given twice (RFC 6376 makes that invalid),
    raises ValueError.
    """
    tags: dict[str, str] = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        tag, equals, value = part.partition("=")
        if not equals or not tag.strip():
            raise ValueError(f"{part.strip()!r} is not tag=value")
        tag = tag.strip()
        if tag in tags:
            raise ValueError(f"tag {tag}= appears twice")
        tags[tag] = "".join(value.split()) if tag == "p" else value.strip()
    return tags


def check_selector(text: str) -> str:
    selector = text.strip().lower()
    if not _SELECTOR.match(selector):
        raise UsageError(
            f"{text!r} is not a valid selector (letters, digits and '-', "
            "not first, at most 63 characters)"
        )
    return selector


class KeyFiles:
    """The private keys in one directory; a domain or selector can name no other path."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, domain: str, selector: str) -> Path:
        # Neither part can hold '/' or start with '.', and '_domainkey' is
        # in no normalized domain, so each pair has one name of its own.
        name = f"{check_selector(selector)}._domainkey.{normalize_domain(domain)}.pem"
        return self.directory / name

    def write(self, domain: str, selector: str, pem: bytes) -> Path:
        """Write a new key file; an existing one is never replaced."""
        path = self.path(domain, selector)
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise KeyFileError(
                f"cannot make key directory {self.directory}: {exc.strerror or exc}"
            ) from None
        try:
            _write_new(path, pem)
        except FileExistsError:
            raise KeyFileError(f"key file {path} already exists; nothing was changed") from None
        except OSError as exc:
            raise KeyFileError(f"cannot write key file {path}: {exc.strerror or exc}") from None
        return path

    def load(self, domain: str, selector: str) -> RSAPrivateKey | Ed25519PrivateKey:
        """The private key; refused if the file is readable by others than its owner."""
        path = self.path(domain, selector)
        try:
            mode = path.stat().st_mode
            data = path.read_bytes()
        except FileNotFoundError:
            raise KeyFileError(f"key file {path} does not exist") from None
        except OSError as exc:
            raise KeyFileError(f"cannot read key file {path}: {exc.strerror or exc}") from None
        if mode & 0o077:
            # As OpenDKIM's RequireSafeKeys: a key others could read is no secret.
            raise KeyFileError(
                f"key file {path} is readable by others (mode {mode & 0o777:o}); chmod 600 it"
            )
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise KeyFileError(f"key file {path} holds no unencrypted PEM private key") from None
        if not isinstance(key, RSAPrivateKey | Ed25519PrivateKey):
            raise KeyFileError(f"key file {path} holds neither an RSA nor an Ed25519 key")
        return key

    def remove(self, domain: str, selector: str) -> None:
        path = self.path(domain, selector)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise KeyFileError(f"cannot remove key file {path}: {exc.strerror or exc}") from None


def _write_new(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file ``path``, mode 0600 from the first moment.

    A temporary file is written and synced, then linked to its name: the key
    appears whole or not at all, and link (unlike rename) fails when the
    name is taken.
    """
    # Random as well: a file a crashed run of the same pid left is not this one.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    descriptor = os.open(temporary, flags, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)  # whatever the umask did
            _owned_like_directory(handle.fileno(), path.parent)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
    _sync_directory(path.parent)


def _owned_like_directory(descriptor: int, directory: Path) -> None:
    """Run by root (``sudo osfmilter dkim keygen``): the file gets the key directory's owner.

    The milter runs as its own user and must read the file; the directory
    belongs to that user (``StateDirectory=`` in the systemd unit).
    """
    if os.geteuid() != 0:
        return
    owner = directory.stat()
    if owner.st_uid != 0:
        os.fchown(descriptor, owner.st_uid, owner.st_gid)


def _sync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
