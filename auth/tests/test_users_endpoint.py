"""POST /users: admin-only user creation, body validation, duplicates."""

import base64
import json

import pytest

from auth import passwords


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_admin_creates_a_user_who_can_then_log_in(client, admin_token, users):
    response = client.post(
        "/users", headers=bearer(admin_token), json={"email": " Bob@Example.com", "password": "bob-password-1"}
    )

    assert response.status_code == 201
    assert response.get_json() == {"email": "bob@example.com", "admin": False}
    stored = users.rows["bob@example.com"]
    assert stored.password_hash.startswith("$argon2id$") and "bob-password-1" not in stored.password_hash
    assert passwords.verify(stored.password_hash, "bob-password-1")
    basic = base64.b64encode(b"bob@example.com:bob-password-1").decode()
    assert client.post("/login", headers={"Authorization": f"Basic {basic}"}).status_code == 200


def test_admin_can_create_an_admin(client, admin_token, users):
    response = client.post(
        "/users",
        headers=bearer(admin_token),
        json={"email": "root2@example.com", "password": "root2-password", "admin": True},
    )

    assert response.status_code == 201
    assert response.get_json() == {"email": "root2@example.com", "admin": True}
    assert users.rows["root2@example.com"].is_admin is True


def test_body_without_json_content_type_is_still_parsed(client, admin_token):
    response = client.post(
        "/users",
        headers=bearer(admin_token),
        data=json.dumps({"email": "dave@example.com", "password": "dave-password"}),
        content_type="text/plain",
    )

    assert response.status_code == 201


def test_duplicate_is_409(client, admin_token):
    response = client.post(
        "/users", headers=bearer(admin_token), json={"email": "ALICE@example.com", "password": "another-password"}
    )

    assert response.status_code == 409
    assert response.get_json() == {"error": "user already exists"}


@pytest.mark.parametrize(
    "email", ["ALICE@example.com", "ａlice@example.com", "álice@example.com"], ids=["upper-case", "full-width", "accent"]
)
def test_a_look_alike_of_an_existing_address_is_409(client, admin_token, users, email):
    before = dict(users.rows)

    response = client.post("/users", headers=bearer(admin_token), json={"email": email, "password": "another-password"})

    assert response.status_code == 409
    assert response.get_json() == {"error": "user already exists"}
    assert users.rows == before


def test_a_full_width_address_is_stored_normalised(client, admin_token, users):
    response = client.post("/users", headers=bearer(admin_token), json={"email": "ｂob@example.com", "password": "bob-password-1"})

    assert response.status_code == 201
    assert response.get_json() == {"email": "bob@example.com", "admin": False}
    assert "bob@example.com" in users.rows


def test_non_admin_is_403(client, alice_token, users):
    body = {"email": "eve@example.com", "password": "eve-password"}

    response = client.post("/users", headers=bearer(alice_token), json=body)

    assert response.status_code == 403
    assert response.get_json() == {"error": "admin token required"}
    assert "eve@example.com" not in users.rows


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "missing bearer token"),
        ({"Authorization": "Bearer not-a-jwt"}, "token is invalid"),
        ({"Authorization": "Basic YWRtaW46eA=="}, "Authorization scheme must be Bearer"),
    ],
)
def test_missing_or_bad_token_is_401(client, users, headers, message):
    response = client.post("/users", headers=headers, json={"email": "eve@example.com", "password": "eve-password"})

    assert response.status_code == 401
    assert response.get_json() == {"error": message}
    assert "eve@example.com" not in users.rows


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "body must be a JSON object with email and password"),
        (b"{not json", "body must be a JSON object with email and password"),
        (b"\xff\xfe", "body must be a JSON object with email and password"),
        (b"null", "body must be a JSON object with email and password"),
        (b'["a@example.com", "password1"]', "body must be a JSON object with email and password"),
        (b'"a@example.com"', "body must be a JSON object with email and password"),
        (b'{"password": "password1"}', "email must be a string"),
        (b'{"email": 42, "password": "password1"}', "email must be a string"),
        (b'{"email": null, "password": "password1"}', "email must be a string"),
        (b'{"email": "no-at-sign", "password": "password1"}', "email is not a valid address"),
        (b'{"email": "a@b", "password": "password1"}', "email is not a valid address"),
        (b'{"email": "a b@example.com", "password": "password1"}', "email is not a valid address"),
        (b'{"email": "a@@example.com", "password": "password1"}', "email is not a valid address"),
        (b'{"email": "a@example..com", "password": "password1"}', "email is not a valid address"),
        (b'{"email": "a\\u0000@example.com", "password": "password1"}', "email is not a valid address"),
        (b'{"email": "a\\u200b@example.com", "password": "password1"}', "email is not a valid address"),
        (json.dumps({"email": "a" * 243 + "@example.com", "password": "password1"}).encode(),
         "email is not a valid address"),
        (b'{"email": "a@example.com"}', "password must be a string"),
        (b'{"email": "a@example.com", "password": 12345678}', "password must be a string"),
        (b'{"email": "a@example.com", "password": "short"}', "password must be 8 to 1024 characters long"),
        (json.dumps({"email": "a@example.com", "password": "p" * 1025}).encode(),
         "password must be 8 to 1024 characters long"),
        (b'{"email": "a@example.com", "password": "password1", "admin": "true"}', "admin must be a boolean"),
        (b'{"email": "a@example.com", "password": "password1", "admin": 1}', "admin must be a boolean"),
        (b'{"email": "a@example.com", "password": "password1", "admin": null}', "admin must be a boolean"),
        (b'{"email": "a@example.com", "password": "password1", "is_admin": true}', "unknown field: is_admin"),
    ],
    ids=[
        "empty", "bad-json", "not-utf8", "null", "array", "string", "no-email", "email-int", "email-null",
        "email-no-at", "email-no-dot", "email-space", "email-two-at", "email-empty-label", "email-nul", "email-zwsp",
        "email-too-long", "no-password", "password-int", "password-short", "password-long", "admin-str",
        "admin-int", "admin-null", "unknown-field",
    ],
)
def test_invalid_bodies_are_400_naming_the_field(client, admin_token, users, body, message):
    before = dict(users.rows)

    response = client.post("/users", headers=bearer(admin_token), data=body, content_type="application/json")

    assert response.status_code == 400
    assert response.get_json() == {"error": message}
    assert users.rows == before


@pytest.mark.parametrize("length", [8, 1024])
def test_password_length_bounds_are_inclusive(client, admin_token, length):
    response = client.post(
        "/users", headers=bearer(admin_token), json={"email": f"len{length}@example.com", "password": "p" * length}
    )

    assert response.status_code == 201


def test_email_of_254_characters_is_accepted(client, admin_token):
    email = "a" * 242 + "@example.com"
    assert len(email) == 254

    response = client.post("/users", headers=bearer(admin_token), json={"email": email, "password": "password1"})

    assert response.status_code == 201


def test_oversized_body_is_413_json(client, admin_token):
    response = client.post(
        "/users", headers=bearer(admin_token), data=b"{" + b" " * (70 * 1024) + b"}", content_type="application/json"
    )

    assert response.status_code == 413
    assert response.get_json() == {"error": "The data value transmitted exceeds the capacity limit."}
