"""GET /jobs (pagination) and DELETE /jobs/<id>, and the second-iteration fields of the job view."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pymongo.errors
import pytest

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
VIDEO_FID = "65a1b2c3d4e5f60718293a40"
MP3_FID = "65a1b2c3d4e5f60718293a4b"


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def add_job(jobs, owner: str, n: int, **fields) -> dict:
    """A job created n minutes after T0, with id f"{n:032x}"."""
    job_id = f"{n:032x}"
    jobs.docs[job_id] = {
        "_id": job_id,
        "owner": owner,
        "status": "queued",
        "filename": f"clip{n}.mp4",
        "video_fid": None,
        "mp3_fid": None,
        "error": None,
        "attempts": 0,
        "created_at": T0 + timedelta(minutes=n),
        "updated_at": T0 + timedelta(minutes=n),
        "notified_at": None,
        "options": {"bitrate": None, "quality": None, "channels": None, "sample_rate": None,
                    "start": None, "end": None, "normalize": None, "cover": None},
        "progress": 0,
        "duration_s": None,
        "expires_at": None,
        "idempotency_key": None,
        **fields,
    }
    return jobs.docs[job_id]


# ---------------------------------------------------------------- job view


def test_job_view_shows_progress_options_duration_and_expiry(client, jobs, helpers):
    job = add_job(
        jobs,
        helpers.ALICE,
        1,
        status="done",
        progress=100,
        mp3_fid=MP3_FID,
        duration_s=12.48,
        options={"bitrate": None, "quality": 2, "channels": 1, "sample_rate": None},
        expires_at=datetime(2025, 3, 2, 12, 1, 0, 250000, tzinfo=UTC),
    )
    response = client.get(f"/jobs/{job['_id']}", headers=bearer("alice-token"))
    assert response.status_code == 200
    assert response.get_json() == {
        "job_id": job["_id"],
        "status": "done",
        "progress": 100,
        "mp3_fid": MP3_FID,
        "error": None,
        "filename": "clip1.mp4",
        "duration_s": 12.48,
        "options": {"bitrate": None, "quality": 2, "channels": 1, "sample_rate": None,
                    "start": None, "end": None, "normalize": None, "cover": None},
        "created_at": "2025-03-01T12:01:00Z",
        "updated_at": "2025-03-01T12:01:00Z",
        "expires_at": "2025-03-02T12:01:00.250000Z",
    }


@pytest.mark.parametrize(
    ("stored", "shown"),
    [(None, 0), (37, 37), (37.9, 37), (-5, 0), (150, 100), ("50", 0), (True, 0)],
    ids=["null", "int", "float", "negative", "over-100", "string", "bool"],
)
def test_job_view_progress_is_an_int_0_to_100(client, jobs, helpers, stored, shown):
    job = add_job(jobs, helpers.ALICE, 1, status="converting", progress=stored)
    assert client.get(f"/jobs/{job['_id']}", headers=bearer("alice-token")).get_json()["progress"] == shown


# ---------------------------------------------------------------- GET /jobs


def test_list_is_newest_first_and_only_the_callers(client, jobs, helpers):
    for n in (3, 1, 2):
        add_job(jobs, helpers.ALICE, n)
    add_job(jobs, helpers.BOB, 4)

    response = client.get("/jobs", headers=bearer("alice-token"))

    assert response.status_code == 200
    body = response.get_json()
    assert [job["filename"] for job in body["jobs"]] == ["clip3.mp4", "clip2.mp4", "clip1.mp4"]
    assert (body["limit"], body["offset"], body["total"]) == (20, 0, 3)
    assert set(body["jobs"][0]) == {
        "job_id", "status", "progress", "mp3_fid", "error", "filename", "duration_s", "options",
        "created_at", "updated_at", "expires_at",
    }  # the public view: no owner, fids of videos or counters


def test_list_pages_with_limit_and_offset(client, jobs, helpers):
    for n in range(1, 8):
        add_job(jobs, helpers.ALICE, n)

    pages = [
        client.get("/jobs", query_string={"limit": 3, "offset": offset}, headers=bearer("alice-token")).get_json()
        for offset in (0, 3, 6, 9)
    ]

    assert [[job["filename"] for job in page["jobs"]] for page in pages] == [
        ["clip7.mp4", "clip6.mp4", "clip5.mp4"],
        ["clip4.mp4", "clip3.mp4", "clip2.mp4"],
        ["clip1.mp4"],
        [],
    ]
    assert [(page["limit"], page["offset"], page["total"]) for page in pages] == [(3, 0, 7), (3, 3, 7), (3, 6, 7), (3, 9, 7)]


def test_admin_lists_only_their_own_jobs(client, jobs, helpers):
    add_job(jobs, helpers.ALICE, 1)
    add_job(jobs, helpers.ADMIN, 2)
    body = client.get("/jobs", headers=bearer("admin-token")).get_json()
    assert [job["filename"] for job in body["jobs"]] == ["clip2.mp4"]
    assert body["total"] == 1


def test_list_without_jobs_is_an_empty_page(client):
    response = client.get("/jobs?limit=100&offset=1000000", headers=bearer("bob-token"))
    assert response.status_code == 200
    assert response.get_json() == {"jobs": [], "limit": 100, "offset": 1000000, "total": 0}


LIMIT = "limit must be an integer from 1 to 100"
OFFSET = "offset must be an integer from 0 to 1000000"


@pytest.mark.parametrize(
    ("query", "error", "field"),
    [
        ("limit=0", LIMIT, "limit"),
        ("limit=101", LIMIT, "limit"),
        ("limit=-1", LIMIT, "limit"),
        ("limit=", LIMIT, "limit"),
        ("limit=ten", LIMIT, "limit"),
        ("limit=1.5", LIMIT, "limit"),
        ("limit=%2B5", LIMIT, "limit"),  # "+5"
        ("limit=%205", LIMIT, "limit"),  # " 5"
        ("limit=" + "9" * 40, LIMIT, "limit"),
        ("limit=%D9%A1", LIMIT, "limit"),  # Arabic-Indic one: int() would accept it
        ("offset=-1", OFFSET, "offset"),
        ("offset=1000001", OFFSET, "offset"),
        ("offset=x", OFFSET, "offset"),
        ("offset=" + "9" * 40, OFFSET, "offset"),
    ],
)
def test_list_bad_paging_is_400(client, query, error, field):
    response = client.get(f"/jobs?{query}", headers=bearer("alice-token"))
    assert response.status_code == 400
    assert response.get_json() == {"error": error, "field": field}


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ({}, "missing Authorization header; send 'Bearer <token>'"),
        ({"Authorization": "Basic YTpi"}, "malformed Authorization header; send 'Bearer <token>'"),
        (bearer("expired"), "invalid or expired token"),
    ],
    ids=["missing", "wrong-scheme", "invalid"],
)
@pytest.mark.parametrize(("method", "path"), [("GET", "/jobs"), ("DELETE", f"/jobs/{1:032x}")])
def test_list_and_delete_need_a_valid_token(client, jobs, helpers, method, path, headers, error):
    add_job(jobs, helpers.ALICE, 1)
    response = client.open(path, method=method, headers=headers)
    assert response.status_code == 401
    assert response.get_json() == {"error": error}
    assert f"{1:032x}" in jobs.docs


def test_list_when_mongodb_is_down_is_503(client, jobs):
    jobs.get_error = pymongo.errors.ServerSelectionTimeoutError("down")
    response = client.get("/jobs", headers=bearer("alice-token"))
    assert response.status_code == 503
    assert response.get_json() == {"error": "a backing service is unavailable, try again later"}


# ---------------------------------------------------------------- DELETE /jobs/<id>


@pytest.mark.parametrize("token", ["alice-token", "admin-token"], ids=["owner", "admin"])
def test_delete_removes_job_video_and_mp3(client, jobs, storage, helpers, token):
    job = add_job(jobs, helpers.ALICE, 1, status="done", video_fid=VIDEO_FID, mp3_fid=MP3_FID)
    other = add_job(jobs, helpers.ALICE, 2)
    storage.add_mp3(MP3_FID, filename="clip1.mp3", owner=helpers.ALICE, data=b"ID3")

    response = client.delete(f"/jobs/{job['_id']}", headers=bearer(token))

    assert response.status_code == 204
    assert response.get_data() == b""
    assert list(jobs.docs) == [other["_id"]]
    assert storage.deleted_videos == [VIDEO_FID]
    assert storage.deleted_mp3s == [MP3_FID]
    assert storage.mp3s == {}
    assert client.get(f"/jobs/{job['_id']}", headers=bearer(token)).status_code == 404


def test_delete_queued_job_has_no_mp3_to_delete(client, jobs, storage, helpers):
    job = add_job(jobs, helpers.ALICE, 1, video_fid=VIDEO_FID)
    assert client.delete(f"/jobs/{job['_id']}", headers=bearer("alice-token")).status_code == 204
    assert (storage.deleted_videos, storage.deleted_mp3s) == ([VIDEO_FID], [])
    assert jobs.docs == {}


def test_delete_releases_the_idempotency_key(client, jobs, helpers):
    job = add_job(jobs, helpers.ALICE, 1, idempotency_key="key-1")
    jobs.claims[(helpers.ALICE, "key-1")] = (job["_id"], T0)
    assert client.delete(f"/jobs/{job['_id']}", headers=bearer("alice-token")).status_code == 204
    assert jobs.claims == {}


ABC = f"{0xABC:032x}"  # has hex letters, so its upper-case form is a different, malformed id


@pytest.mark.parametrize(
    ("path", "token"),
    [
        (f"/jobs/{ABC}", "bob-token"),
        (f"/jobs/{9:032x}", "alice-token"),
        (f"/jobs/{9:032x}", "admin-token"),
        ("/jobs/not-a-job-id", "alice-token"),
        (f"/jobs/{ABC.upper()}", "alice-token"),
        (f"/jobs/{ABC}0", "alice-token"),
    ],
    ids=["other-users-job", "unknown-job", "unknown-job-admin", "malformed-id", "uppercase-id", "33-chars"],
)
def test_delete_not_visible_is_404_and_deletes_nothing(client, jobs, storage, helpers, path, token):
    add_job(jobs, helpers.ALICE, 0xABC, video_fid=VIDEO_FID)
    response = client.delete(path, headers=bearer(token))
    assert response.status_code == 404
    assert response.get_json() == {"error": "no such job"}
    assert list(jobs.docs) == [ABC]
    assert storage.deleted_videos == storage.deleted_mp3s == []


def test_delete_twice_is_404_the_second_time(client, jobs, helpers):
    job = add_job(jobs, helpers.ALICE, 1)
    assert client.delete(f"/jobs/{job['_id']}", headers=bearer("alice-token")).status_code == 204
    response = client.delete(f"/jobs/{job['_id']}", headers=bearer("alice-token"))
    assert response.status_code == 404
    assert response.get_json() == {"error": "no such job"}


def test_delete_when_mongodb_is_down_is_503_and_keeps_the_job(client, jobs, helpers):
    job = add_job(jobs, helpers.ALICE, 1)
    jobs.take_error = pymongo.errors.AutoReconnect("connection reset")
    response = client.delete(f"/jobs/{job['_id']}", headers=bearer("alice-token"))
    assert response.status_code == 503
    assert response.get_json() == {"error": "a backing service is unavailable, try again later"}
    assert job["_id"] in jobs.docs


def test_delete_whose_file_deletion_fails_is_503_and_logs_the_fids(client, jobs, storage, helpers, caplog):
    job = add_job(jobs, helpers.ALICE, 1, status="done", video_fid=VIDEO_FID, mp3_fid=MP3_FID)
    storage.delete_error = pymongo.errors.AutoReconnect("connection reset")
    with caplog.at_level(logging.ERROR, logger="gateway"):
        response = client.delete(f"/jobs/{job['_id']}", headers=bearer("alice-token"))
    assert response.status_code == 503
    assert response.get_json() == {"error": "a backing service is unavailable, try again later"}
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert (record.job_id, record.video_fid, record.mp3_fid) == (job["_id"], VIDEO_FID, MP3_FID)
