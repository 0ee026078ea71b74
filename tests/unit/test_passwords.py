"""SASL passwords: generated with enough randomness, checked, hashed for Dovecot."""

from __future__ import annotations

import re

import pytest

from osfmilter import passwords
from osfmilter.errors import UsageError


def test_a_generated_password_has_160_bits_in_characters_that_survive_copy_and_paste() -> None:
    password = passwords.generate()
    # 32 base32 characters carry 32 * 5 = 160 bits.
    assert re.fullmatch(r"[a-z2-7]{32}", password), password
    assert len({passwords.generate() for _ in range(50)}) == 50


def test_the_stored_form_is_dovecots_argon2id_with_one_lane() -> None:
    stored = passwords.hash_password("correct horse battery")
    assert stored.startswith("{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$"), stored
    assert "correct horse battery" not in stored


def test_each_hash_has_its_own_salt() -> None:
    assert passwords.hash_password("correct horse battery") != passwords.hash_password(
        "correct horse battery"
    )


def test_verify_accepts_the_password_and_nothing_else() -> None:
    stored = passwords.hash_password("correct horse battery")
    assert passwords.verify(stored, "correct horse battery")
    assert not passwords.verify(stored, "correct horse batterY")
    assert not passwords.verify(stored, "")


@pytest.mark.parametrize("stored", ["", "{SHA512-CRYPT}$6$x$y", "$argon2id$garbage", "{ARGON2ID}"])
def test_verify_refuses_other_schemes_and_garbage_without_raising(stored: str) -> None:
    assert not passwords.verify(stored, "correct horse battery")


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("short", "too short: at least 12"),
        ("x" * 11, "too short"),
        ("x" * 1025, "too long: at most 1024"),
        ("twelve chars\nmore", "line breaks"),
        ("twelve chars\r", "line breaks"),
        ("twelve chars\0", "NUL"),
    ],
)
def test_check_says_what_is_wrong(password: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        passwords.check(password)
    with pytest.raises(UsageError, match=message):
        passwords.hash_password(password)


def test_check_takes_the_bounds_and_any_other_character() -> None:
    for password in ("x" * 12, "x" * 1024, "pässwörd mit Leer zeichen", "tab\tinside it"):
        assert passwords.check(password) == password
