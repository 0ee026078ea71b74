"""Key pairs, their records, and the private key files: modes, atomic writes, no path escapes."""

from __future__ import annotations

import base64
import contextlib
import os
import stat
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import load_der_public_key

from osfmilter.dkim.keys import KeyFileError, KeyFiles, generate, parse_record, record_text
from osfmilter.dkim.signer import Algorithm
from osfmilter.errors import ConfigError, UsageError


def test_rsa_key_public_half_is_der_subject_public_key_info() -> None:
    generated = generate("rsa-sha256")
    public = load_der_public_key(base64.b64decode(generated.public_key))
    assert public.key_size == 2048  # type: ignore[union-attr]
    assert generated.private_pem.startswith(b"-----BEGIN PRIVATE KEY-----")


def test_ed25519_public_half_is_the_raw_32_bytes() -> None:
    generated = generate("ed25519-sha256")
    assert len(base64.b64decode(generated.public_key)) == 32


def test_rsa_bits_out_of_range_are_refused() -> None:
    with pytest.raises(UsageError, match="1024 to 8192"):
        generate("rsa-sha256", rsa_bits=512)


def test_record_text_and_parse_record() -> None:
    assert record_text("rsa-sha256", "AB") == "v=DKIM1; k=rsa; p=AB"
    assert record_text("ed25519-sha256", "CD") == "v=DKIM1; k=ed25519; p=CD"
    assert parse_record("v=DKIM1;k=rsa;  p=AB CD\t EF ; ") == {
        "v": "DKIM1",
        "k": "rsa",
        "p": "ABCDEF",
    }
    with pytest.raises(ValueError, match="not tag=value"):
        parse_record("v=DKIM1; garbage")
    with pytest.raises(ValueError, match="appears twice"):
        parse_record("v=DKIM1; p=AB; p=CD")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_makes_a_0700_directory_and_0600_files(tmp_path: Path) -> None:
    old = os.umask(0)  # the modes must not depend on a permissive umask
    try:
        files = KeyFiles(tmp_path / "state" / "dkim")
        path = files.write("Example.COM.", "OSF202612", b"pem")
    finally:
        os.umask(old)
    assert path == tmp_path / "state" / "dkim" / "osf202612._domainkey.example.com.pem"
    assert mode(path.parent) == 0o700 and mode(path) == 0o600
    assert path.read_bytes() == b"pem"
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary left


def test_write_never_replaces_a_key(tmp_path: Path) -> None:
    files = KeyFiles(tmp_path)
    files.write("example.com", "s1", b"first")
    with pytest.raises(KeyFileError, match="already exists"):
        files.write("example.com", "s1", b"second")
    assert files.path("example.com", "s1").read_bytes() == b"first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s1._domainkey.example.com.pem"]


def test_the_file_is_never_readable_by_others_while_it_is_written(tmp_path: Path) -> None:
    # Watch the directory while a large file is written: every name that
    # appears, the temporary one included, has mode 0600 from the start.
    files = KeyFiles(tmp_path)
    seen: dict[str, int] = {}
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            for entry in os.scandir(tmp_path):
                with contextlib.suppress(FileNotFoundError):
                    bits = stat.S_IMODE(entry.stat().st_mode)
                    seen[entry.name] = seen.get(entry.name, 0) | bits

    old = os.umask(0)
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for i in range(20):
            files.write("example.com", f"s{i}", b"x" * 2_000_000)
    finally:
        done.set()
        watcher.join()
        os.umask(old)
    assert seen and all(bits == 0o600 for bits in seen.values()), seen


def test_an_interrupted_write_leaves_no_key_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(KeyFileError, match="No space left on device"):
        KeyFiles(tmp_path).write("example.com", "s1", b"pem")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("domain", "selector", "message"),
    [
        ("example.com", "../../etc/passwd", "not a valid selector"),
        ("example.com", "a/b", "not a valid selector"),
        ("example.com", ".hidden", "not a valid selector"),
        ("example.com", "-x", "not a valid selector"),
        ("example.com", "", "not a valid selector"),
        ("example.com", "a" * 64, "not a valid selector"),
        ("example.com", "sel.sub", "not a valid selector"),
        ("../example.com", "s1", "not a valid domain"),
        ("example.com/../../x", "s1", "not a valid domain"),
        ("/etc", "s1", "not a valid domain"),
        ("exa_mple.com", "s1", "not a valid domain"),
    ],
)
def test_a_path_outside_the_directory_cannot_be_named(
    tmp_path: Path, domain: str, selector: str, message: str
) -> None:
    files = KeyFiles(tmp_path / "dkim")
    for call in (files.path, files.load, files.remove):
        with pytest.raises(UsageError, match=message):
            call(domain, selector)
    with pytest.raises(UsageError, match=message):
        files.write(domain, selector, b"pem")
    assert not (tmp_path / "dkim").exists()


@pytest.mark.parametrize("algorithm", ["rsa-sha256", "ed25519-sha256"])
def test_load_gives_back_the_key(tmp_path: Path, algorithm: Algorithm) -> None:
    generated = generate(algorithm)
    files = KeyFiles(tmp_path)
    files.write("example.com", "s1", generated.private_pem)
    key = files.load("example.com", "s1")
    expected = RSAPrivateKey if algorithm == "rsa-sha256" else Ed25519PrivateKey
    assert isinstance(key, expected)


def test_load_of_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"s1\._domainkey\.example\.com\.pem does not exist"):
        KeyFiles(tmp_path).load("example.com", "s1")


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not a key",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    ],
)
def test_load_of_a_file_without_a_key_is_one_line(tmp_path: Path, content: bytes) -> None:
    path = KeyFiles(tmp_path).write("example.com", "s1", content)
    with pytest.raises(KeyFileError) as error:
        KeyFiles(tmp_path).load("example.com", "s1")
    assert str(error.value) == f"key file {path} holds no unencrypted PEM private key"


def test_load_of_another_kind_of_key_is_refused(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    KeyFiles(tmp_path).write("example.com", "s1", pem)
    with pytest.raises(KeyFileError, match="neither an RSA nor an Ed25519 key"):
        KeyFiles(tmp_path).load("example.com", "s1")


def test_load_of_an_unreadable_file(tmp_path: Path) -> None:
    # A directory in the key's place: unreadable as a file, even for root.
    KeyFiles(tmp_path).path("example.com", "s1").mkdir()
    with pytest.raises(KeyFileError, match=r"cannot read key file .*: Is a directory"):
        KeyFiles(tmp_path).load("example.com", "s1")


def test_remove(tmp_path: Path) -> None:
    files = KeyFiles(tmp_path)
    files.write("example.com", "s1", b"x")
    files.remove("example.com", "s1")
    files.remove("example.com", "s1")  # already gone: nothing to do
    assert list(tmp_path.iterdir()) == []


def test_remove_that_fails_is_a_key_file_error(tmp_path: Path) -> None:
    KeyFiles(tmp_path).path("example.com", "s1").mkdir()
    with pytest.raises(KeyFileError, match=r"cannot remove key file .*s1\._domainkey"):
        KeyFiles(tmp_path).remove("example.com", "s1")


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    files = KeyFiles(tmp_path / "dkim")
    path = files.write("example.com", "s1", generate("ed25519-sha256").private_pem)
    path.chmod(0o640)
    with pytest.raises(KeyFileError, match="readable by others"):
        files.load("example.com", "s1")
    path.chmod(0o600)
    files.load("example.com", "s1")


def test_root_writes_the_key_for_the_owner_of_the_key_directory(tmp_path: Path) -> None:
    directory = tmp_path / "dkim"
    directory.mkdir(mode=0o700)
    # As root (CI): the directory is the milter's user's ("nobody" here), and so is the key.
    owner = (65534, 65534) if os.geteuid() == 0 else (os.geteuid(), os.getegid())
    if os.geteuid() == 0:
        os.chown(directory, *owner)
    path = KeyFiles(directory).write("example.com", "s1", generate("ed25519-sha256").private_pem)
    assert (path.stat().st_uid, path.stat().st_gid) == owner
    assert path.stat().st_mode & 0o777 == 0o600
