"""rules: e-mail normalisation and validation, the password length policy."""

import pytest

from auth.errors import InvalidInput
from mp3core.contract import is_email

from auth.rules import check_password, is_valid_email, normalize_email, validate_email


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(" Alice@Example.COM\t", "alice@example.com"), ("bob@example.com", "bob@example.com")],
)
def test_normalize(raw, expected):
    assert normalize_email(raw) == expected
    assert validate_email(raw) == expected


@pytest.mark.parametrize(
    "email",
    ["", "plain", "@example.com", "a@", "a@example", "a@b@example.com", "a b@example.com", "a@exa mple.com",
     "a@.example.com", "a@example.com.", "a\x00@example.com", "a" * 243 + "@example.com"],
)
def test_invalid_emails(email):
    assert not is_valid_email(email)
    with pytest.raises(InvalidInput, match="^email is not a valid address$"):
        validate_email(email)


@pytest.mark.parametrize("email", ["a@example.com", "first.last+tag@sub.example.co.uk", "o'neil@example.com"])
def test_valid_emails(email):
    assert is_valid_email(email)


@pytest.mark.parametrize(("length", "ok"), [(0, False), (7, False), (8, True), (1024, True), (1025, False)])
def test_password_length_policy(length, ok):
    if ok:
        check_password("p" * length)
    else:
        with pytest.raises(InvalidInput, match="^password must be 8 to 1024 characters long$"):
            check_password("p" * length)


@pytest.mark.parametrize("email", ["a,b@example.com", "a;b@example.com", "<a>@example.com", 'a"b@example.com',
                                   "a@exam'ple.com"])
def test_addresses_the_contract_refuses_are_refused_here_first(email):
    """The address becomes the job's owner in queue messages; one the consumers refuse must never get an
    account (its jobs could not be addressed)."""
    assert not is_email(email) and not is_valid_email(email)


@pytest.mark.parametrize("email", ["a@example.com", "first.last+tag@sub.example.co.uk", "o'neil@example.com"])
def test_every_address_accepted_here_is_one_the_contract_accepts(email):
    assert is_valid_email(email) and is_email(email)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("ａnn@example.com", "ann@example.com"), ("ＡＮＮ＠ＥＸＡＭＰＬＥ．ＣＯＭ", "ann@example.com"),
     ("Ann@Example.com", "ann@example.com"), ("\u3000ann@example.com", "ann@example.com"),
     ("ann@ｅxample.com", "ann@example.com")],
    ids=["full-width-letter", "all-full-width", "upper-case", "ideographic-space", "full-width-domain"],
)
def test_normalisation_is_nfkc_and_lower_case(raw, expected):
    assert validate_email(raw) == expected


@pytest.mark.parametrize(
    "raw",
    ["ann\u200b@example.com", "ann@example.com\u200b", "a\u200dnn@example.com", "\u202eann@example.com",
     "ann\u00ad@example.com", "ann\ufeff@example.com", "ann\x85@example.com", "ann\ue000@example.com"],
    ids=["zero-width-space", "trailing-zwsp", "zero-width-joiner", "bidi-override", "soft-hyphen", "bom",
         "nel-control", "private-use"],
)
def test_format_and_control_characters_are_refused(raw):
    with pytest.raises(InvalidInput, match="^email is not a valid address$"):
        validate_email(raw)


def test_accents_are_kept():
    """`ánn@` is another address than `ann@`: normalisation does not fold it (the account lookup decides)."""
    assert validate_email("Ánn@example.com") == "ánn@example.com"
