"""The stored password hashes are ones Debian's Dovecot verifies itself, and the reverse."""

from __future__ import annotations

import subprocess

import pytest

from osfmilter import passwords

pytestmark = pytest.mark.integration

DOVEADM = "/usr/bin/doveadm"


def doveadm_verifies(stored: str, password: str) -> bool:
    result = subprocess.run(
        [DOVEADM, "pw", "-t", stored, "-p", password],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.returncode == 0


@pytest.mark.parametrize("password", ["correct horse battery", "pässwörd ünd mehr", "x" * 1024])
def test_dovecot_verifies_what_osfmilter_stores(password: str) -> None:
    stored = passwords.hash_password(password)
    assert doveadm_verifies(stored, password)
    assert not doveadm_verifies(stored, password + "!")


def test_osfmilter_verifies_what_doveadm_makes() -> None:
    made = subprocess.run(
        [DOVEADM, "pw", "-s", "ARGON2ID", "-p", "correct horse battery"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    assert made.startswith("{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$"), made
    assert passwords.verify(made, "correct horse battery")
