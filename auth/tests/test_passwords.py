"""passwords: argon2id parameters, verify outcomes, rehash detection."""

import pytest
from argon2 import PasswordHasher

from auth import passwords


def test_hash_is_argon2id_with_owasp_parameters():
    stored = passwords.hash_password("correct horse")

    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert passwords.hash_password("correct horse") != stored  # salted


@pytest.mark.parametrize(
    ("stored", "password", "expected"),
    [
        (passwords.hash_password("right-password"), "right-password", True),
        (passwords.hash_password("right-password"), "wrong-password", False),
        (passwords.hash_password("right-password"), "", False),
        ("not-a-phc-string", "right-password", False),
        ("$argon2id$v=19$m=19456,t=2,p=1$broken", "right-password", False),
    ],
    ids=["right", "wrong", "empty", "garbage-hash", "truncated-hash"],
)
def test_verify(stored, password, expected):
    assert passwords.verify(stored, password) is expected


def test_unknown_user_verification_always_fails_and_uses_a_stable_dummy_hash():
    assert passwords.verify_unknown_user("anything") is False
    assert passwords.dummy_hash() == passwords.dummy_hash()
    assert passwords.dummy_hash().startswith("$argon2id$v=19$m=19456,t=2,p=1$")


def test_needs_rehash():
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash("pw")

    assert passwords.needs_rehash(weak) is True
    assert passwords.needs_rehash(passwords.hash_password("pw")) is False

