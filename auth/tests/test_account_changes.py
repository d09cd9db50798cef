"""DELETE /users/<email> (admin) and POST /users/me/password: tokens of a deleted user, or from before a
password change, are refused afterwards."""

import base64
import json

import jwt
import pytest

from auth import passwords

SECRET = "unit-test-jwt-secret-0123456789abcdef"
REVOKED = {"error": "token has been revoked"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def basic(email: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{email}:{password}".encode()).decode()}


def login(client, email, password):
    response = client.post("/login", headers=basic(email, password))
    assert response.status_code == 200
    return response.get_data(as_text=True)


# --- DELETE /users/<email> ---


def test_admin_deletes_a_user_whose_tokens_are_then_refused(client, users, admin_token, alice_token):
    response = client.delete("/users/alice@example.com", headers=bearer(admin_token))

    assert (response.status_code, response.data) == (204, b"")
    assert "alice@example.com" not in users.rows
    validate = client.post("/validate", headers=bearer(alice_token))
    assert (validate.status_code, validate.get_json()) == (401, REVOKED)
    assert client.post("/login", headers=basic("alice@example.com", "alice-password-1")).status_code == 401


def test_a_deleted_admins_token_can_no_longer_create_users(client, users, admin_token):
    created = client.post("/users", headers=bearer(admin_token),
                          json={"email": "root2@example.com", "password": "root2-password", "admin": True})
    assert created.status_code == 201
    root2_token = login(client, "root2@example.com", "root2-password")
    assert client.delete("/users/root2@example.com", headers=bearer(admin_token)).status_code == 204

    response = client.post("/users", headers=bearer(root2_token), json={"email": "x@example.com", "password": "x-password"})

    assert (response.status_code, response.get_json()) == (401, REVOKED)
    assert "x@example.com" not in users.rows


def test_a_recreated_user_does_not_inherit_the_old_accounts_tokens(client, admin_token, alice_token):
    assert client.delete("/users/alice@example.com", headers=bearer(admin_token)).status_code == 204
    recreated = client.post("/users", headers=bearer(admin_token),
                            json={"email": "alice@example.com", "password": "alice-password-2"})
    assert recreated.status_code == 201

    response = client.post("/validate", headers=bearer(alice_token))

    assert (response.status_code, response.get_json()) == (401, REVOKED)


@pytest.mark.parametrize(
    ("path", "status", "body"),
    [
        ("/users/ALICE@Example.com", 204, None),
        ("/users/alice%40example.com", 204, None),
        ("/users/ａlice@example.com", 204, None),
        ("/users/álice@example.com", 404, {"error": "user not found"}),  # the collation's match is not alice
        ("/users/alice%E2%80%8B@example.com", 404, {"error": "user not found"}),  # zero-width space
        ("/users/nobody@example.com", 404, {"error": "user not found"}),
        ("/users/not-an-email", 404, {"error": "user not found"}),
        ("/users/admin@example.com", 409, {"error": "an admin cannot delete their own account"}),
    ],
    ids=["upper-case", "percent-encoded", "full-width", "accent", "zero-width-space", "unknown", "not-an-email",
         "self"],
)
def test_delete_addresses_exactly_one_account(client, users, admin_token, path, status, body):
    response = client.delete(path, headers=bearer(admin_token))

    assert response.status_code == status
    if body is None:
        assert "alice@example.com" not in users.rows
    else:
        assert response.get_json() == body
        assert {"alice@example.com", "admin@example.com"} <= set(users.rows)


@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [({}, 401, "missing bearer token"), ({"Authorization": "Bearer not-a-jwt"}, 401, "token is invalid"),
     ("alice", 403, "admin token required")],
    ids=["no-token", "bad-token", "not-admin"],
)
def test_delete_needs_an_admin_token(client, users, alice_token, headers, status, message):
    headers = bearer(alice_token) if headers == "alice" else headers

    response = client.delete("/users/alice@example.com", headers=headers)

    assert (response.status_code, response.get_json()) == (status, {"error": message})
    assert "alice@example.com" in users.rows


# --- POST /users/me/password ---


def change(client, token, current, new):
    return client.post("/users/me/password", headers=bearer(token),
                       json={"current_password": current, "new_password": new})


def test_password_change_revokes_earlier_tokens_and_returns_a_fresh_one(client, users, alice_token):
    other_session = login(client, "alice@example.com", "alice-password-1")

    response = change(client, alice_token, "alice-password-1", "alice-password-2")

    assert response.status_code == 200 and response.mimetype == "text/plain"
    fresh = response.get_data(as_text=True)
    assert jwt.decode(fresh, SECRET, algorithms=["HS256"], audience="mp3converter")["ver"] == 1
    for old in (alice_token, other_session):
        validate = client.post("/validate", headers=bearer(old))
        assert (validate.status_code, validate.get_json()) == (401, REVOKED)
    assert client.post("/validate", headers=bearer(fresh)).status_code == 200
    assert passwords.verify(users.rows["alice@example.com"].password_hash, "alice-password-2")
    assert client.post("/login", headers=basic("alice@example.com", "alice-password-1")).status_code == 401
    assert client.post("/login", headers=basic("alice@example.com", "alice-password-2")).status_code == 200


def test_a_wrong_current_password_changes_nothing(client, users, alice_token):
    before = users.rows["alice@example.com"]

    response = change(client, alice_token, "wrong-password", "alice-password-2")

    assert (response.status_code, response.get_json()) == (403, {"error": "current password is incorrect"})
    assert users.rows["alice@example.com"] == before
    assert client.post("/validate", headers=bearer(alice_token)).status_code == 200


def test_guesses_at_the_current_password_count_against_the_login_limit(client, alice_token):
    for _ in range(3):  # FakeThrottle: 3 failures per user
        assert change(client, alice_token, "wrong-password", "alice-password-2").status_code == 403

    right = change(client, alice_token, "alice-password-1", "alice-password-2")
    by_login = client.post("/login", headers=basic("alice@example.com", "alice-password-1"))

    assert (right.status_code, right.get_json()) == (429, {"error": "too many failed logins, try again later"})
    assert by_login.status_code == 429


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "body must be a JSON object with current_password and new_password"),
        (b"[]", "body must be a JSON object with current_password and new_password"),
        (b'{"new_password": "password-2"}', "current_password must be a string"),
        (b'{"current_password": 1, "new_password": "password-2"}', "current_password must be a string"),
        (b'{"current_password": "alice-password-1"}', "new_password must be a string"),
        (b'{"current_password": "alice-password-1", "new_password": "short"}',
         "password must be 8 to 1024 characters long"),
        (json.dumps({"current_password": "alice-password-1", "new_password": "p" * 1025}).encode(),
         "password must be 8 to 1024 characters long"),
        (b'{"current_password": "alice-password-1", "new_password": "password-2", "email": "x@example.com"}',
         "unknown field: email"),
    ],
    ids=["empty", "array", "no-current", "current-int", "no-new", "new-short", "new-long", "unknown-field"],
)
def test_invalid_password_change_bodies_are_400(client, users, alice_token, body, message):
    before = users.rows["alice@example.com"]

    response = client.post("/users/me/password", headers=bearer(alice_token), data=body,
                           content_type="application/json")

    assert (response.status_code, response.get_json()) == (400, {"error": message})
    assert users.rows["alice@example.com"] == before


@pytest.mark.parametrize(
    ("headers", "message"),
    [({}, "missing bearer token"), ({"Authorization": "Bearer not-a-jwt"}, "token is invalid")],
    ids=["no-token", "bad-token"],
)
def test_password_change_needs_a_token(client, headers, message):
    response = client.post("/users/me/password", headers=headers,
                           json={"current_password": "alice-password-1", "new_password": "alice-password-2"})

    assert (response.status_code, response.get_json()) == (401, {"error": message})


def test_a_revoked_token_cannot_change_the_password_again(client, alice_token):
    assert change(client, alice_token, "alice-password-1", "alice-password-2").status_code == 200

    response = change(client, alice_token, "alice-password-2", "alice-password-3")

    assert (response.status_code, response.get_json()) == (401, REVOKED)
