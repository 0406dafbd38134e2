"""Password and secret hashing: bcrypt, with every byte of a long secret counting."""

from __future__ import annotations

from souverain.identity.service import check_secret, hash_secret


def test_right_secret_matches_and_wrong_one_does_not() -> None:
    hashed = hash_secret("correct horse battery", 4)
    assert hashed.startswith("$2b$04$")
    assert check_secret("correct horse battery", hashed)
    assert not check_secret("correct horse batterx", hashed)


def test_long_secrets_differing_after_72_bytes_are_not_interchangeable() -> None:
    base = "p" * 80
    hashed = hash_secret(base + "A", 4)
    assert check_secret(base + "A", hashed)
    assert not check_secret(base + "B", hashed)


def test_malformed_stored_hash_never_matches() -> None:
    assert not check_secret("anything", "not-a-bcrypt-hash")
