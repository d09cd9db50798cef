"""Idempotency-Key on POST /upload over HTTP: the header, the replay answer (the logic: test_accept_upload)."""

from __future__ import annotations

import pytest


def upload(post_upload, helpers, key: str | None, *, token: str = "alice-token", size: int = 3000):
    body = helpers.multipart([("file", "a.mp4", helpers.video_bytes(size))])
    headers = {} if key is None else {"Idempotency-Key": key}
    return post_upload(body, token=token, headers=headers)


def test_first_upload_with_a_key_is_stored_with_it(post_upload, helpers, jobs):
    response, _ = upload(post_upload, helpers, "order-42")
    assert response.status_code == 202
    job_id = response.get_json()["job_id"]
    assert response.get_json() == {"job_id": job_id, "status": "queued"}
    assert jobs.docs[job_id]["idempotency_key"] == "order-42"
    assert jobs.claims[(helpers.ALICE, "order-42")][0] == job_id


def test_repeat_answers_the_first_job_without_reading_the_body(post_upload, helpers, app, storage, jobs, publisher):
    first, _ = upload(post_upload, helpers, "order-42")
    job_id = first.get_json()["job_id"]
    jobs.docs[job_id]["status"] = "converting"  # the replay reports the job as it is now

    again, stream = upload(post_upload, helpers, "order-42", size=50_000)

    assert again.status_code == 202
    assert again.get_json() == {"job_id": job_id, "status": "converting", "idempotent_replay": True}
    assert stream.bytes_read == 0, "a replay read the body"
    assert len(storage.opened) == 1 and list(jobs.docs) == [job_id] and len(publisher.messages) == 1
    assert app.extensions["gateway"].metrics.registry.get_sample_value("gateway_idempotent_replays_total") == 1


def test_replay_wins_over_a_body_that_would_be_refused(post_upload, helpers, jobs):
    job_id = upload(post_upload, helpers, "k")[0].get_json()["job_id"]
    response, stream = post_upload(b"not multipart", content_type="text/plain", headers={"Idempotency-Key": "k"})
    assert response.status_code == 202
    assert response.get_json() == {"job_id": job_id, "status": "queued", "idempotent_replay": True}
    assert stream.bytes_read == 0


def test_key_of_a_deleted_job_makes_a_new_job(post_upload, helpers, client, jobs):
    old = upload(post_upload, helpers, "k")[0].get_json()["job_id"]
    assert client.delete(f"/jobs/{old}", headers={"Authorization": "Bearer alice-token"}).status_code == 204
    response, _ = upload(post_upload, helpers, "k")
    assert response.status_code == 202
    assert "idempotent_replay" not in response.get_json()
    assert list(jobs.docs) == [response.get_json()["job_id"]]


def test_key_is_checked_after_the_token(post_upload, helpers, jobs):
    response, _ = upload(post_upload, helpers, "k", token="nobody")
    assert response.status_code == 401
    assert jobs.lookups == []


KEY_ERROR = {"error": "Idempotency-Key must be 1 to 255 visible ASCII characters (no spaces)", "field": "Idempotency-Key"}


@pytest.mark.parametrize(
    "key",
    ["", "a" * 256, "with space", "tab\there", "caf\u00e9", "\x7f"],
    ids=["empty", "256-chars", "space", "tab", "latin-1", "del"],
)
def test_invalid_key_is_400_before_reading_the_body(post_upload, helpers, storage, jobs, key):
    response, stream = post_upload(
        helpers.multipart([("file", "a.mp4", helpers.video_bytes(100))]),
        environ={"HTTP_IDEMPOTENCY_KEY": key},
    )
    assert response.status_code == 400
    assert response.get_json() == KEY_ERROR
    assert stream.bytes_read == 0
    assert jobs.lookups == [] and storage.opened == []


@pytest.mark.parametrize("key", ["a", "a" * 255, "!~", "550e8400-e29b-41d4-a716-446655440000"])
def test_valid_keys(post_upload, helpers, jobs, key):
    response, _ = upload(post_upload, helpers, key)
    assert response.status_code == 202
    assert [job["idempotency_key"] for job in jobs.docs.values()] == [key]
