"""POST /upload: the happy path, every bad input, and rollback when a dependency fails."""

from __future__ import annotations

import pika.exceptions
import pymongo.errors
import pytest

from mp3core.errors import ServiceUnavailable

BOUNDARY = "test-boundary-7MA4YWxkTrZu0gW"
MP4_HEAD = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"


def assert_nothing_left(storage, jobs, publisher):
    assert storage.videos == {}, "a failed upload left a video (or partial chunks) behind"
    assert jobs.docs == {}
    assert publisher.messages == []


def test_upload_stores_video_creates_job_and_publishes(post_upload, helpers, storage, jobs, publisher):
    video = helpers.video_bytes(200_000)  # spans several 1 MiB-or-less reads and GridFS chunks
    body = helpers.multipart([("channels", None, b"1"), ("file", "holiday clip.mp4", video), ("bitrate", None, b"320")])

    response, _ = post_upload(body)

    assert response.status_code == 202
    job_id = response.get_json()["job_id"]
    assert response.get_json() == {"job_id": job_id, "status": "queued"}
    assert len(job_id) == 32 and int(job_id, 16) >= 0

    [writer] = storage.videos.values()
    assert bytes(writer.data) == video
    assert writer.closed and not writer.aborted
    assert writer.filename == "holiday clip.mp4"
    assert writer.metadata == {"owner": helpers.ALICE, "job_id": job_id, "content_type": "video/mp4"}

    job = jobs.docs[job_id]
    assert job["owner"] == helpers.ALICE
    assert job["status"] == "queued"
    assert job["filename"] == "holiday clip.mp4"
    assert job["video_fid"] == str(writer.file_id)
    assert job["mp3_fid"] is None and job["error"] is None and job["notified_at"] is None
    assert job["attempts"] == 0
    assert job["created_at"] == job["updated_at"] and job["created_at"].tzinfo is not None
    options = {"bitrate": 320, "quality": None, "channels": 1, "sample_rate": None,
               "start": None, "end": None, "normalize": None, "cover": None}
    assert job["options"] == options
    assert job["progress"] == 0 and job["duration_s"] is None and job["expires_at"] is None
    assert job["idempotency_key"] is None

    assert publisher.messages == [
        {
            "job_id": job_id,
            "video_fid": str(writer.file_id),
            "username": helpers.ALICE,
            "filename": "holiday clip.mp4",
            "options": options,
            "container": "video/mp4",  # recognised from the bytes: the converter reads it with that demuxer only
        }
    ]


def test_upload_accepts_chunked_body_without_content_length(post_upload, helpers, storage):
    video = helpers.video_bytes(5000)
    response, _ = post_upload(helpers.multipart([("file", "a.mkv", video)]), chunked=True)
    assert response.status_code == 202
    assert [bytes(w.data) for w in storage.videos.values()] == [video]


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        # As written in the header: backslashes are escaped inside a quoted-string.
        ("C:\\\\Users\\\\me\\\\talk.mp4", "talk.mp4"),
        ("../../etc/talk.mp4", "talk.mp4"),
        ("..", "video"),
        ("", "video"),
    ],
    ids=["windows-path", "relative-path", "dotdot", "empty"],
)
def test_upload_strips_client_path_from_filename(post_upload, helpers, jobs, sent, stored):
    response, _ = post_upload(helpers.multipart([("file", sent, helpers.video_bytes(100))]))
    assert response.status_code == 202
    assert [job["filename"] for job in jobs.docs.values()] == [stored]


@pytest.mark.parametrize(
    ("authorization", "error"),
    [
        (None, "missing Authorization header; send 'Bearer <token>'"),
        ("Basic YWxpY2U6c2VjcmV0", "malformed Authorization header; send 'Bearer <token>'"),
        ("Bearer", "malformed Authorization header; send 'Bearer <token>'"),
        ("Bearer    ", "malformed Authorization header; send 'Bearer <token>'"),
        ("Bearer two tokens", "malformed Authorization header; send 'Bearer <token>'"),
        ("Bearer not-a-known-token", "invalid or expired token"),
    ],
    ids=["missing", "basic-scheme", "no-token", "blank-token", "two-tokens", "invalid-token"],
)
def test_upload_rejects_bad_credentials_before_reading_the_body(
    post_upload, helpers, storage, jobs, publisher, authorization, error
):
    body = helpers.multipart([("file", "a.mp4", helpers.video_bytes(1000))])
    response, stream = post_upload(body, token=None, authorization=authorization)

    assert response.status_code == 401
    assert response.get_json() == {"error": error}
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert stream.bytes_read == 0, "the body was read before the token was checked"
    assert storage.opened == []
    assert_nothing_left(storage, jobs, publisher)


def test_upload_answers_503_when_auth_is_down(post_upload, helpers, auth, storage, jobs, publisher):
    auth.down = True
    response, stream = post_upload(helpers.multipart([("file", "a.mp4", helpers.video_bytes(100))]))
    assert response.status_code == 503
    assert response.get_json() == {"error": "the auth service is unavailable, try again later"}
    assert stream.bytes_read == 0
    assert_nothing_left(storage, jobs, publisher)


def test_upload_over_limit_content_length_is_413_without_reading(post_upload, helpers, settings, storage, jobs, publisher):
    video = helpers.video_bytes(settings.max_upload_bytes + 1)
    response, stream = post_upload(helpers.multipart([("file", "big.mp4", video)]))

    assert response.status_code == 413
    assert response.get_json() == {"error": "the upload is larger than 262144 bytes"}
    assert stream.bytes_read == 0, "the body was read although Content-Length was over the limit"
    assert storage.opened == [] and storage.bytes_written == 0
    assert_nothing_left(storage, jobs, publisher)


def test_upload_over_limit_streamed_body_is_413_and_partial_video_deleted(
    post_upload, helpers, settings, storage, jobs, publisher
):
    video = helpers.video_bytes(settings.max_upload_bytes * 3)
    response, stream = post_upload(helpers.multipart([("file", "big.mp4", video)]), chunked=True, max_read=4096)

    assert response.status_code == 413
    assert response.get_json() == {"error": "the upload is larger than 262144 bytes"}
    # It stopped reading soon after the limit instead of swallowing the whole body.
    assert stream.bytes_read <= settings.max_upload_bytes + 4096
    # The video had started to be stored (streaming, not buffering) and was aborted.
    assert len(storage.opened) == 1 and storage.opened[0].aborted
    assert storage.bytes_written > 0
    assert_nothing_left(storage, jobs, publisher)


def _video(size=300):
    return MP4_HEAD + b"\x00" * size


def _body(parts, boundary=BOUNDARY):
    out = bytearray()
    for name, filename, data in parts:
        out += b"--" + boundary.encode() + b"\r\n"
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        out += f"Content-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    return bytes(out + b"--" + boundary.encode() + b"--\r\n")


MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"

BAD_UPLOADS = [
    # (id, body, content type, status, error)
    ("no-file-part", _body([("bitrate", None, b"128")]), MULTIPART, 400, "no file part named 'file' in the form"),
    ("empty-form", _body([]), MULTIPART, 400, "no file part named 'file' in the form"),
    (
        "two-file-parts",
        _body([("file", "a.mp4", _video()), ("file", "b.mp4", _video())]),
        MULTIPART,
        400,
        "send exactly one file part named 'file', not several",
    ),
    (
        "file-part-wrong-name",
        _body([("video", "a.mp4", _video())]),
        MULTIPART,
        400,
        "unexpected file part 'video'; send one file part named 'file'",
    ),
    ("empty-file", _body([("file", "a.mp4", b"")]), MULTIPART, 400, "the uploaded file is empty"),
    (
        "not-a-video",
        _body([("file", "a.mp4", b"%PDF-1.7\n" + b"x" * 2000)]),
        MULTIPART,
        415,
        "the file is not a supported video or audio file",
    ),
    (
        "tiny-non-video",
        _body([("file", "a.mp4", b"G")]),
        MULTIPART,
        415,
        "the file is not a supported video or audio file",
    ),
    ("garbage-body", b"this is not multipart at all", MULTIPART, 400, "malformed multipart body"),
    (
        "truncated-body",
        _body([("file", "a.mp4", _video(5000))])[:-60],
        MULTIPART,
        400,
        "malformed multipart body",
    ),
    (
        "part-without-disposition",
        f"--{BOUNDARY}\r\nContent-Type: text/plain\r\n\r\nhi\r\n--{BOUNDARY}--\r\n".encode(),
        MULTIPART,
        400,
        "malformed multipart body",
    ),
    (
        "field-too-long",
        _body([("bitrate", None, b"9" * 1025), ("file", "a.mp4", _video())]),
        MULTIPART,
        400,
        {"error": "form field 'bitrate' is longer than 1024 bytes", "field": "bitrate"},
    ),
    (
        "field-not-utf8",
        _body([("bitrate", None, b"\xff\xfe"), ("file", "a.mp4", _video())]),
        MULTIPART,
        400,
        {"error": "form field 'bitrate' is not UTF-8 text", "field": "bitrate"},
    ),
    (
        "file-sent-as-text",
        _body([("file", None, b"clip.mp4")]),
        MULTIPART,
        400,
        {
            "error": "the 'file' part has no filename, so it is not a file upload (curl -F file=@clip.mp4)",
            "field": "file",
        },
    ),
    (
        "json-content-type",
        b'{"file": "x"}',
        "application/json",
        400,
        "the body must be multipart/form-data with one file part named 'file'",
    ),
    (
        "no-content-type",
        _body([("file", "a.mp4", _video())]),
        None,
        400,
        "the body must be multipart/form-data with one file part named 'file'",
    ),
    (
        "missing-boundary",
        _body([("file", "a.mp4", _video())]),
        "multipart/form-data",
        400,
        "the multipart boundary is missing or invalid",
    ),
    (
        "boundary-too-long",
        _body([("file", "a.mp4", _video())], boundary="b" * 71),
        "multipart/form-data; boundary=" + "b" * 71,
        400,
        "the multipart boundary is missing or invalid",
    ),
]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "error"),
    [case[1:] for case in BAD_UPLOADS],
    ids=[case[0] for case in BAD_UPLOADS],
)
def test_bad_upload_is_rejected_and_leaves_nothing(
    post_upload, storage, jobs, publisher, body, content_type, status, error
):
    response, _ = post_upload(body, content_type=content_type)

    assert response.status_code == status
    assert response.get_json() == (error if isinstance(error, dict) else {"error": error})
    assert_nothing_left(storage, jobs, publisher)
    # Whatever was started was aborted, never committed.
    assert all(w.aborted and not w.closed for w in storage.opened)


def test_second_file_part_aborts_the_first_video_already_streaming(post_upload, helpers, storage, jobs, publisher):
    body = helpers.multipart([("file", "a.mp4", helpers.video_bytes(50_000)), ("file", "b.mp4", helpers.video_bytes(10))])
    response, _ = post_upload(body, max_read=1000)

    assert response.status_code == 400
    assert response.get_json() == {"error": "send exactly one file part named 'file', not several"}
    assert len(storage.opened) == 1 and storage.opened[0].aborted
    assert_nothing_left(storage, jobs, publisher)


@pytest.mark.parametrize(
    "error",
    [
        ServiceUnavailable("the job queue is unavailable, try again later"),
        pika.exceptions.StreamLostError("connection reset"),
    ],
    ids=["publisher-gave-up", "raw-amqp-error"],
)
def test_publish_failure_is_503_and_rolls_back_job_and_video(post_upload, helpers, app, storage, jobs, publisher, error):
    publisher.error = error
    response, _ = post_upload(helpers.multipart([("file", "a.mp4", helpers.video_bytes(3000))]))

    assert response.status_code == 503
    assert response.get_json()["error"] in (
        "the job queue is unavailable, try again later",
        "a backing service is unavailable, try again later",
    )
    assert len(storage.opened) == 1 and storage.opened[0].closed  # it was stored, then deleted
    assert_nothing_left(storage, jobs, publisher)
    assert app.extensions["gateway"].metrics.registry.get_sample_value("gateway_publish_failures_total") == 1


def test_job_insert_failure_is_503_and_deletes_video(post_upload, helpers, storage, jobs, publisher):
    jobs.create_error = pymongo.errors.ServerSelectionTimeoutError("no primary")
    response, _ = post_upload(helpers.multipart([("file", "a.mp4", helpers.video_bytes(3000))]))

    assert response.status_code == 503
    assert response.get_json() == {"error": "a backing service is unavailable, try again later"}
    assert_nothing_left(storage, jobs, publisher)


def test_storage_failure_mid_stream_is_503_and_aborts(post_upload, helpers, storage, jobs, publisher):
    storage.fail_writes_after = 10_000
    response, _ = post_upload(helpers.multipart([("file", "a.mp4", helpers.video_bytes(40_000))]), max_read=2048)

    assert response.status_code == 503
    assert response.get_json() == {"error": "a backing service is unavailable, try again later"}
    assert storage.opened[0].aborted
    assert_nothing_left(storage, jobs, publisher)


def test_accepted_upload_counts_bytes_in_metrics(post_upload, helpers, client):
    video = helpers.video_bytes(12_345)
    assert post_upload(helpers.multipart([("file", "a.mp4", video)]))[0].status_code == 202
    text = client.get("/metrics").get_data(as_text=True)
    assert "gateway_upload_bytes_total 12345.0" in text
    assert 'gateway_http_requests_total{endpoint="/upload",method="POST",status="202"} 1.0' in text
