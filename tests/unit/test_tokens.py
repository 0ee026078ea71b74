"""API tokens: self-identifying, 160 random bits, a SHA-256 stored, checked in constant time."""

from __future__ import annotations

import hashlib
import re

import pytest

from osfmilter import tokens

FORMAT = re.compile(r"osf_([a-z2-7]{8})_([a-z2-7]{32})")


def test_a_token_is_greppable_names_its_row_and_carries_160_bits() -> None:
    made = tokens.generate()
    match = FORMAT.fullmatch(made.token)
    assert match is not None, made.token
    assert match[1] == made.prefix and not made.prefix.isdigit()
    # 32 base32 characters: 32 * 5 = 160 bits of secret.
    assert len(match[2]) * 5 >= 160
    assert len({tokens.generate().token for _ in range(50)}) == 50


def test_only_a_sha256_of_the_token_is_kept() -> None:
    made = tokens.generate()
    assert made.hash == hashlib.sha256(made.token.encode()).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", made.hash)
    secret = made.token.rsplit("_", 1)[1]
    assert secret not in made.hash and made.token not in made.hash


def test_parse_splits_a_well_formed_token_and_refuses_anything_else() -> None:
    made = tokens.generate()
    assert tokens.parse(made.token) == (made.prefix, made.token.rsplit("_", 1)[1])
    for bad in (
        "",
        made.token.upper(),
        made.token + "a",
        made.token[:-1],
        made.token.replace("osf_", "osx_"),
        f" {made.token}",
        f"{made.token}\n",
        "osf_abcdefgh_" + "1" * 32,  # 1 is not base32
    ):
        assert tokens.parse(bad) is None, bad


@pytest.mark.parametrize("change", [lambda t: t[:-1] + ("a" if t[-1] != "a" else "b"), str.upper])
def test_verify_accepts_the_token_and_nothing_else(change: object) -> None:
    made = tokens.generate()
    assert tokens.verify(made.hash, made.token)
    assert callable(change)
    assert not tokens.verify(made.hash, change(made.token))
    assert not tokens.verify(made.hash, "")


def test_a_principal_without_a_customer_is_the_operator() -> None:
    assert tokens.ApiPrincipal(1, "abc", None).is_operator
    assert not tokens.ApiPrincipal(2, "def", 7).is_operator
