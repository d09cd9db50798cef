"""The upload use case without Flask: the job and message it makes, Idempotency-Key replays, rollbacks."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pika.exceptions
import pymongo.errors
import pytest
from mp3core import logs
from mp3core.contract import Options, VideoMessage, parse_video_message
from mp3core.errors import BadRequest, PayloadTooLarge, ServiceUnavailable

from gateway.limits import Quotas, UploadSlots
from gateway.metrics import Metrics
from gateway.upload import Accepted, Body, accept_upload

MAX_BYTES = 256 * 1024


@pytest.fixture
def metrics(jobs) -> Metrics:
    return Metrics.create(jobs.count_by_status)


@pytest.fixture
def quotas() -> Quotas:
    return Quotas(UploadSlots(3), max_jobs_in_flight=20, max_stored_bytes=1024 * 1024 * 1024)


@pytest.fixture
def accept(helpers, storage, jobs, publisher, metrics, quotas):
    """accept_upload on a multipart body of one video (plus `fields`); returns (result, the body stream)."""

    def call(key=None, *, owner=helpers.ALICE, size=3000, fields=(), body=None,
             content_type=f"multipart/form-data; boundary={helpers.BOUNDARY}"):
        if body is None:
            parts = [(name, None, value.encode()) for name, value in fields]
            body = helpers.multipart([*parts, ("file", "talk.mp4", helpers.video_bytes(size))])
        stream = helpers.TrackingStream(body)
        call.streams.append(stream)
        result = accept_upload(owner, key, Body(stream, content_type, len(body)), max_bytes=MAX_BYTES,
                               quotas=quotas, storage=storage, jobs=jobs, publisher=publisher, metrics=metrics)
        return result, stream

    call.streams = []  # every body given, also to calls that raised
    return call


def assert_nothing_left(storage, jobs, publisher):
    assert storage.videos == {} and jobs.docs == {} and publisher.messages == []


def test_the_published_message_is_what_the_converter_parses(accept, helpers, storage, jobs, publisher, metrics):
    result, _ = accept(fields=[("quality", "2"), ("channels", "1")], size=12_345)

    [writer] = storage.opened
    job = jobs.docs[result.job_id]
    assert result == Accepted(result.job_id, "queued")
    assert (job["owner"], job["status"], job["video_fid"], job["filename"]) == (
        helpers.ALICE, "queued", writer.file_id, "talk.mp4")
    [message] = publisher.messages
    assert parse_video_message(message) == VideoMessage(result.job_id, writer.file_id, helpers.ALICE, "talk.mp4",
                                                        Options(quality=2, channels=1), "video/mp4")
    assert job["options"] == message["options"]
    assert metrics.registry.get_sample_value("gateway_upload_bytes_total") == 12_345


def test_every_line_about_the_upload_carries_its_job_id(accept, capsys):
    logs.setup()
    result, _ = accept()
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    [queued] = [line for line in lines if line["msg"] == "upload queued"]
    assert queued["job_id"] == result.job_id
    assert {"ts", "level", "logger", "msg"} <= set(queued)


def test_a_repeated_key_is_answered_with_the_first_job_without_reading_the_body(accept, storage, jobs, publisher,
                                                                               metrics):
    first, _ = accept("order-42")
    jobs.docs[first.job_id]["status"] = "converting"  # the replay reports the job as it is now

    again, stream = accept("order-42", size=50_000)

    assert again == Accepted(first.job_id, "converting", replay=True)
    assert stream.bytes_read == 0
    assert len(storage.opened) == 1 and list(jobs.docs) == [first.job_id] and len(publisher.messages) == 1
    assert metrics.registry.get_sample_value("gateway_idempotent_replays_total") == 1


def test_a_replay_wins_over_a_body_that_would_be_refused(accept):
    first, _ = accept("k")
    again, stream = accept("k", body=b"x" * (MAX_BYTES + 1), content_type="text/plain")
    assert again == Accepted(first.job_id, "queued", replay=True)
    assert stream.bytes_read == 0


def test_the_same_key_of_another_user_or_another_key_is_a_new_job(accept, helpers, jobs):
    alice = accept("k")[0]
    bob = accept("k", owner=helpers.BOB)[0]
    other = accept("k2")[0]
    none = accept(None)[0]
    assert len({alice.job_id, bob.job_id, other.job_id, none.job_id}) == 4
    assert not any(result.replay for result in (alice, bob, other, none))
    assert len(jobs.docs) == 4


def test_a_key_older_than_the_window_makes_a_new_job(accept, helpers, jobs):
    old = accept("k")[0]
    jobs.claims[(helpers.ALICE, "k")] = (old.job_id, datetime.now(UTC) - timedelta(hours=24, seconds=1))

    new = accept("k")[0]

    assert not new.replay and new.job_id != old.job_id
    assert jobs.claims[(helpers.ALICE, "k")][0] == new.job_id


def test_a_concurrent_duplicate_that_missed_the_lookup_keeps_one_job(accept, storage, jobs, publisher):
    first = accept("k")[0]
    jobs.lookup_misses = True  # the second request's lookup ran before the first one's claim existed

    second, stream = accept("k", size=20_000)

    assert second == Accepted(first.job_id, "queued", replay=True)
    assert stream.bytes_read > 0  # this one did read and store its body (the race) ...
    assert list(jobs.docs) == [first.job_id]  # ... but its job was deleted again
    assert storage.deleted_videos == [storage.opened[1].file_id]  # its video too
    assert len(publisher.messages) == 1  # and it was never published


@pytest.mark.parametrize(
    "error",
    [ServiceUnavailable("the job queue is unavailable, try again later"),
     pika.exceptions.StreamLostError("connection reset")],
    ids=["publisher-gave-up", "raw-amqp-error"],
)
def test_a_publish_failure_undoes_everything_and_frees_the_key(accept, storage, jobs, publisher, metrics, error):
    publisher.error = error
    with pytest.raises(type(error)):
        accept("k")
    assert_nothing_left(storage, jobs, publisher)
    assert jobs.claims == {}
    assert metrics.registry.get_sample_value("gateway_publish_failures_total") == 1

    publisher.error = None
    retry, stream = accept("k")
    assert not retry.replay and stream.bytes_read > 0


@pytest.mark.parametrize("step", ["create", "claim_idempotency_key"])
def test_a_job_insert_or_key_claim_failure_deletes_the_video(accept, storage, jobs, publisher, step):
    def down(*args, **kwargs):
        raise pymongo.errors.AutoReconnect("connection reset")

    setattr(jobs, step, down)
    with pytest.raises(pymongo.errors.AutoReconnect):
        accept("k")
    assert storage.opened[0].closed  # it had been stored completely
    assert_nothing_left(storage, jobs, publisher)


def test_a_failed_rollback_still_raises_the_original_error(accept, storage, jobs, publisher):
    jobs.create_error = pymongo.errors.AutoReconnect("connection reset")
    storage.delete_error = pymongo.errors.AutoReconnect("still down")
    with pytest.raises(pymongo.errors.AutoReconnect, match="connection reset"):
        accept()
    assert publisher.messages == []


def test_a_lookup_failure_is_raised_before_the_body_is_read(accept, jobs, storage):
    def down(*args, **kwargs):
        raise ServiceUnavailable("MongoDB is unreachable")

    jobs.find_idempotent = down
    with pytest.raises(ServiceUnavailable):
        accept("k")
    [stream] = accept.streams
    assert stream.bytes_read == 0 and storage.opened == []


@pytest.mark.parametrize(
    ("body", "content_type", "error"),
    [
        (b"x" * (MAX_BYTES + 1), "multipart/form-data; boundary=b",
         PayloadTooLarge("the upload is larger than 262144 bytes")),
        (b"{}", "application/json",
         BadRequest("the body must be multipart/form-data with one file part named 'file'")),
        (b"", "multipart/form-data", BadRequest("the multipart boundary is missing or invalid")),
    ],
    ids=["too-large", "not-multipart", "no-boundary"],
)
def test_a_refused_body_is_not_read(accept, storage, jobs, publisher, body, content_type, error):
    with pytest.raises(type(error)) as caught:
        accept(body=body, content_type=content_type)
    assert caught.value.message == error.message
    [stream] = accept.streams
    assert stream.bytes_read == 0
    assert_nothing_left(storage, jobs, publisher)
