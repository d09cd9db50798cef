"""Account changes through the gateway against the real auth: a password change and a deleted user revoke
every earlier token at once."""

from __future__ import annotations

import secrets
from urllib.parse import quote

import pytest
import requests

from tests.e2e.conftest import bearer

pytestmark = pytest.mark.e2e


def test_a_password_change_revokes_the_old_token_and_answers_a_fresh_one(stack):
    admin_token = stack.login(*stack.admin)
    email, password, token = stack.create_user(admin_token)
    new_password = secrets.token_urlsafe(12)

    wrong = requests.post(f"{stack.url}/users/me/password", headers=bearer(token), timeout=30,
                          json={"current_password": "not it at all", "new_password": new_password})
    assert wrong.status_code == 403 and wrong.json() == {"error": "current password is incorrect"}

    changed = requests.post(f"{stack.url}/users/me/password", headers=bearer(token), timeout=30,
                            json={"current_password": password, "new_password": new_password})
    assert changed.status_code == 200 and changed.headers["Content-Type"].startswith("text/plain")
    fresh = changed.text

    assert requests.get(f"{stack.url}/jobs", headers=bearer(token), timeout=30).status_code == 401
    assert requests.get(f"{stack.url}/jobs", headers=bearer(fresh), timeout=30).status_code == 200
    assert requests.post(f"{stack.url}/login", auth=(email, password), timeout=30).status_code == 401
    assert stack.login(email, new_password)


def test_a_deleted_user_s_token_stops_working_and_only_admins_delete(stack):
    admin_token = stack.login(*stack.admin)
    email, _, token = stack.create_user(admin_token)
    other, _, other_token = stack.create_user(admin_token)

    refused = requests.delete(f"{stack.url}/users/{quote(other)}", headers=bearer(token), timeout=30)
    assert refused.status_code == 403 and "error" in refused.json()

    deleted = requests.delete(f"{stack.url}/users/{quote(email)}", headers=bearer(admin_token), timeout=30)
    assert deleted.status_code == 204
    assert requests.get(f"{stack.url}/jobs", headers=bearer(token), timeout=30).status_code == 401
    again = requests.delete(f"{stack.url}/users/{quote(email)}", headers=bearer(admin_token), timeout=30)
    assert again.status_code == 404 and again.json() == {"error": "user not found"}
    assert requests.get(f"{stack.url}/jobs", headers=bearer(other_token), timeout=30).status_code == 200
