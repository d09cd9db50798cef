"""GET /jobs/<id> and GET /download: owners see theirs, admins see all, others get 404."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

JOB_ID = "0123456789abcdef0123456789abcdef"
MP3_FID = "65a1b2c3d4e5f60718293a4b"
CREATED = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def alice_job(jobs, helpers):
    jobs.docs[JOB_ID] = {
        "_id": JOB_ID,
        "owner": helpers.ALICE,
        "status": "done",
        "filename": "talk.mp4",
        "video_fid": "65a1b2c3d4e5f60718293a40",
        "mp3_fid": MP3_FID,
        "error": None,
        "attempts": 1,
        "created_at": CREATED,
        "updated_at": datetime(2025, 1, 2, 3, 5, 0),  # naive, as a non-tz-aware client returns it
        "notified_at": None,
    }
    return jobs.docs[JOB_ID]


# A first-iteration job: no options, progress, duration_s or expires_at in the document.
EXPECTED_VIEW = {
    "job_id": JOB_ID,
    "status": "done",
    "progress": 0,
    "mp3_fid": MP3_FID,
    "error": None,
    "filename": "talk.mp4",
    "duration_s": None,
    "options": {"bitrate": None, "quality": None, "channels": None, "sample_rate": None,
                "start": None, "end": None, "normalize": None, "cover": None},
    "created_at": "2025-01-02T03:04:05Z",
    "updated_at": "2025-01-02T03:05:00Z",
    "expires_at": None,
}


@pytest.mark.parametrize("token", ["alice-token", "admin-token"], ids=["owner", "admin"])
def test_job_view_for_owner_and_admin(client, alice_job, token):
    response = client.get(f"/jobs/{JOB_ID}", headers=bearer(token))
    assert response.status_code == 200
    assert response.get_json() == EXPECTED_VIEW  # exactly the public view: no owner, no attempts


@pytest.mark.parametrize(
    ("path", "token"),
    [
        (f"/jobs/{JOB_ID}", "bob-token"),
        ("/jobs/ffffffffffffffffffffffffffffffff", "alice-token"),
        ("/jobs/ffffffffffffffffffffffffffffffff", "admin-token"),
        ("/jobs/not-a-job-id", "alice-token"),
        (f"/jobs/{JOB_ID.upper()}", "alice-token"),
    ],
    ids=["other-users-job", "unknown-job", "unknown-job-admin", "malformed-id", "uppercase-id"],
)
def test_job_not_visible_is_404(client, alice_job, jobs, path, token):
    response = client.get(path, headers=bearer(token))
    assert response.status_code == 404
    assert response.get_json() == {"error": "no such job"}


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ({}, "missing Authorization header; send 'Bearer <token>'"),
        ({"Authorization": "Token abc"}, "malformed Authorization header; send 'Bearer <token>'"),
        (bearer("expired"), "invalid or expired token"),
    ],
    ids=["missing", "wrong-scheme", "invalid"],
)
@pytest.mark.parametrize("path", [f"/jobs/{JOB_ID}", f"/download?fid={MP3_FID}"])
def test_job_and_download_need_a_valid_token(client, alice_job, path, headers, error):
    response = client.get(path, headers=headers)
    assert response.status_code == 401
    assert response.get_json() == {"error": error}


@pytest.fixture
def alice_mp3(storage, helpers):
    data = bytes(range(256)) * 4000  # 1,024,000 bytes: several 256 KiB pieces
    storage.add_mp3(MP3_FID, filename="talk.mp3", owner=helpers.ALICE, data=data)
    return data


@pytest.mark.parametrize("token", ["alice-token", "admin-token"], ids=["owner", "admin"])
def test_download_streams_the_mp3(client, storage, alice_mp3, token):
    response = client.get(f"/download?fid={MP3_FID}", headers=bearer(token))

    assert response.status_code == 200
    assert response.is_streamed
    assert response.mimetype == "audio/mpeg"
    assert response.headers["Content-Length"] == str(len(alice_mp3))
    assert response.headers["Content-Disposition"] == 'attachment; filename="talk.mp3"'
    assert response.get_data() == alice_mp3
    [grid_out] = storage.grid_outs
    assert grid_out.closed
    # Read in bounded pieces, never the whole file at once.
    assert set(grid_out.read_sizes) == {256 * 1024}
    assert len(grid_out.read_sizes) == 5  # 4 pieces with data, then the empty read that ends it


FID_ERROR = {"error": "fid must be 24 lower-case hexadecimal characters"}


@pytest.mark.parametrize(
    "fid",
    ["", "123", "65a1b2c3d4e5f60718293a4", "65a1b2c3d4e5f60718293a4b0", "zza1b2c3d4e5f60718293a4b",
     "65a1b2c3d4e5f6071829 a4b", MP3_FID.upper()],
    ids=["empty", "short", "23-hex", "25-hex", "non-hex", "space", "upper-case"],
)
def test_download_malformed_fid_is_400(client, storage, alice_mp3, fid):
    response = client.get("/download", query_string={"fid": fid}, headers=bearer("alice-token"))
    assert response.status_code == 400
    assert response.get_json() == FID_ERROR
    assert storage.grid_outs == []


def test_download_without_fid_is_400(client):
    response = client.get("/download", headers=bearer("alice-token"))
    assert response.status_code == 400
    assert response.get_json() == FID_ERROR


@pytest.mark.parametrize(
    ("fid", "token"),
    [(MP3_FID, "bob-token"), ("ffffffffffffffffffffffff", "alice-token"), ("ffffffffffffffffffffffff", "admin-token")],
    ids=["other-users-file", "missing-file", "missing-file-admin"],
)
def test_download_not_visible_is_404(client, storage, alice_mp3, fid, token):
    response = client.get(f"/download?fid={fid}", headers=bearer(token))
    assert response.status_code == 404
    assert response.get_json() == {"error": "no such file"}
    assert all(g.closed for g in storage.grid_outs)  # the refused download's cursor was closed


@pytest.mark.parametrize(
    ("filename", "disposition"),
    [
        ("talk.mp3", 'attachment; filename="talk.mp3"'),
        ('say "hi".mp3', 'attachment; filename="say \\"hi\\".mp3"'),
        ("evil\r\nSet-Cookie: x=1.mp3", 'attachment; filename="evilSet-Cookie: x=1.mp3"'),
        ("café.mp3", "attachment; filename=\"cafe.mp3\"; filename*=UTF-8''caf%C3%A9.mp3"),
        ("日本.mp3", "attachment; filename=\"audio.mp3\"; filename*=UTF-8''%E6%97%A5%E6%9C%AC.mp3"),
        ("", 'attachment; filename="audio.mp3"'),
        # Normalising makes these dangerous: the two-dot leader and full-width solidus become "../".
        ("‥／‥／etc.mp3", "attachment; filename=\"audio.._.._etc.mp3\"; "
                           "filename*=UTF-8''%E2%80%A5%EF%BC%8F%E2%80%A5%EF%BC%8Fetc.mp3"),
        ("ａ＼ｂ.mp3", "attachment; filename=\"a_b.mp3\"; filename*=UTF-8''%EF%BD%81%EF%BC%BC%EF%BD%82.mp3"),
        ("․․", "attachment; filename=\"audio.mp3\"; filename*=UTF-8''%E2%80%A4%E2%80%A4"),
    ],
    ids=["plain", "quotes", "crlf-injection", "accented", "cjk", "empty", "fullwidth-dotdot-slash",
         "fullwidth-backslash", "one-dot-leaders"],
)
def test_download_filename_is_safely_quoted(client, storage, helpers, filename, disposition):
    storage.add_mp3(MP3_FID, filename=filename, owner=helpers.ALICE, data=b"ID3")
    response = client.get(f"/download?fid={MP3_FID}", headers=bearer("alice-token"))
    assert response.status_code == 200
    assert response.headers["Content-Disposition"] == disposition
