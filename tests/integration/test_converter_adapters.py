"""The converter's adapters against real FerretDB: every Jobs transition and the GridFS Bucket."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

pytestmark = pytest.mark.integration

from bson import ObjectId  # noqa: E402
from gridfs import GridFSBucket  # noqa: E402

from converter.jobs import Jobs  # noqa: E402
from converter.storage import Bucket, MissingFile  # noqa: E402

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=timezone.utc)
TTL = timedelta(hours=6)
SIZE = 700 * 1024  # three GridFS chunks


@pytest.fixture
def jobs(mongo_db) -> Jobs:
    return Jobs(mongo_db["jobs"], clock=lambda: NOW, mp3_ttl=TTL)


def insert(mongo_db, **fields) -> str:
    job_id = uuid.uuid4().hex
    doc = {"_id": job_id, "owner": "alice@example.com", "status": "queued", "filename": "clip.mp4",
           "video_fid": str(ObjectId()), "mp3_fid": None, "error": None, "attempts": 0, "progress": 0,
           "created_at": NOW - timedelta(hours=1), "updated_at": NOW - timedelta(hours=1), "expires_at": None}
    doc.update(fields)
    mongo_db["jobs"].insert_one(doc)
    return job_id


def test_start_attempt_counts_attempts_and_skips_finished_or_missing_jobs(mongo_db, jobs):
    job_id = insert(mongo_db)
    first = jobs.start_attempt(job_id)
    assert first["status"] == "converting" and first["attempts"] == 1 and first["updated_at"] == NOW
    assert jobs.start_attempt(job_id)["attempts"] == 2  # a redelivery of a converting job counts again
    for status in ("done", "failed", "expired"):
        assert jobs.start_attempt(insert(mongo_db, status=status)) is None
    assert jobs.start_attempt(uuid.uuid4().hex) is None


def test_plan_mp3_fid_keeps_the_first_candidate(mongo_db, jobs):
    job_id = insert(mongo_db)
    first, second = str(ObjectId()), str(ObjectId())
    assert jobs.plan_mp3_fid(job_id, first) == first
    assert jobs.plan_mp3_fid(job_id, second) == first
    assert jobs.plan_mp3_fid(uuid.uuid4().hex, first) is None


def test_set_duration_and_progress_only_ever_rises(mongo_db, jobs):
    job_id = insert(mongo_db)
    assert jobs.set_duration(job_id, 12.5) is True
    assert jobs.set_progress(job_id, 40) is True
    assert jobs.set_progress(job_id, 10) is True  # a retry starting ffmpeg over must not lower it
    assert jobs.get(job_id)["progress"] == 40 and jobs.get(job_id)["duration_s"] == 12.5
    gone = uuid.uuid4().hex
    assert jobs.set_duration(gone, 1.0) is False and jobs.set_progress(gone, 5) is False


def test_mark_done_sets_the_result_progress_and_expiry(mongo_db, jobs):
    job_id = insert(mongo_db, status="converting", error="an earlier attempt's error")
    fid = str(ObjectId())
    assert jobs.mark_done(job_id, fid) == "done"
    job = jobs.get(job_id)
    assert (job["status"], job["mp3_fid"], job["error"], job["progress"]) == ("done", fid, None, 100)
    assert job["expires_at"] == NOW + TTL and job["updated_at"] == NOW
    assert jobs.mark_done(job_id, fid) == "done"  # a retry whose first reply was lost, or another attempt
    assert jobs.mark_done(uuid.uuid4().hex, fid) is None


@pytest.mark.parametrize("status", ["failed", "expired"])
def test_mark_done_leaves_a_job_another_attempt_ended_as_it_is(mongo_db, jobs, status):
    # Two attempts at one job (a redelivery while the first still ran): one gave up, the other finishes later.
    job_id = insert(mongo_db, status=status, error="gave up after 3 attempts", progress=40)
    assert jobs.mark_done(job_id, str(ObjectId())) == status
    job = jobs.get(job_id)
    assert (job["status"], job["error"], job["progress"], job.get("mp3_fid")) == (
        status, "gave up after 3 attempts", 40, None)


def test_mark_failed_leaves_done_and_expired_jobs_alone(mongo_db, jobs):
    converting = insert(mongo_db, status="converting")
    assert jobs.mark_failed(converting, "no audio") is True
    assert (jobs.get(converting)["status"], jobs.get(converting)["error"]) == ("failed", "no audio")
    for status in ("done", "expired"):
        job_id = insert(mongo_db, status=status)
        assert jobs.mark_failed(job_id, "late failure") is False
        assert jobs.get(job_id)["status"] == status
    assert jobs.mark_failed(uuid.uuid4().hex, "gone") is False


def test_mark_failed_on_a_failed_job_keeps_the_first_reason_and_time(mongo_db, jobs):
    # A redelivery after a crash before the failure was announced, or an overlapping attempt that failed too.
    failed_at = NOW - timedelta(minutes=5)
    job_id = insert(mongo_db, status="failed", error="the video has no audio stream", updated_at=failed_at)
    assert jobs.mark_failed(job_id, "gave up after 3 attempts") is True  # failed: it may be announced again
    job = jobs.get(job_id)
    assert (job["status"], job["error"], job["updated_at"]) == ("failed", "the video has no audio stream", failed_at)


def test_retention_queries_and_conditional_updates(mongo_db, jobs):
    jobs.ensure_retention_index()
    jobs.ensure_retention_index()  # every replica may create it
    old_fid, new_fid = str(ObjectId()), str(ObjectId())
    expired = insert(mongo_db, status="done", mp3_fid=old_fid, expires_at=NOW - timedelta(minutes=1))
    insert(mongo_db, status="done", mp3_fid=new_fid, expires_at=NOW + timedelta(hours=1))
    assert jobs.expired_mp3s(NOW, 10) == [{"_id": expired, "mp3_fid": old_fid}]
    assert jobs.mark_expired(expired, new_fid) is False  # not the MP3 it holds
    assert jobs.mark_expired(expired, old_fid) is True
    assert jobs.get(expired)["status"] == "expired" and jobs.get(expired)["mp3_fid"] is None
    assert jobs.mark_expired(expired, old_fid) is False and jobs.expired_mp3s(NOW, 10) == []

    video = str(ObjectId())
    stale = insert(mongo_db, status="failed", video_fid=video, updated_at=NOW - timedelta(days=2))
    insert(mongo_db, status="failed", video_fid=str(ObjectId()), updated_at=NOW)
    assert jobs.stale_failed_videos(NOW - timedelta(days=1), 10) == [{"_id": stale, "video_fid": video}]
    assert jobs.forget_video(stale, str(ObjectId())) is False
    assert jobs.forget_video(stale, video) is True
    job = jobs.get(stale)
    assert job["video_fid"] is None and job["updated_at"] == NOW - timedelta(days=2)


def test_stale_final_jobs_and_conditional_delete(mongo_db, jobs):
    jobs.ensure_retention_index()
    cutoff = NOW - timedelta(days=30)
    owner = f"{uuid.uuid4().hex}@example.com"  # the collection is shared: look only at this test's jobs
    video, planned = str(ObjectId()), str(ObjectId())
    failed = insert(mongo_db, owner=owner, status="failed", video_fid=video, mp3_fid_planned=planned,
                    updated_at=cutoff - timedelta(minutes=2))
    expired = insert(mongo_db, owner=owner, status="expired", updated_at=cutoff - timedelta(minutes=1))
    kept = {insert(mongo_db, owner=owner, status="failed", updated_at=cutoff + timedelta(minutes=1)),
            insert(mongo_db, owner=owner, status="expired", updated_at=cutoff + timedelta(minutes=1)),
            insert(mongo_db, owner=owner, status="done", updated_at=cutoff - timedelta(days=9)),
            insert(mongo_db, owner=owner, status="queued", updated_at=cutoff - timedelta(days=9))}

    found = [job for job in jobs.stale_final_jobs(cutoff, 1000) if job["_id"] in (failed, expired)]
    assert found[0] == {"_id": failed, "status": "failed", "video_fid": video, "mp3_fid": None,
                        "mp3_fid_planned": planned}
    assert (found[1]["_id"], found[1]["status"]) == (expired, "expired")  # oldest first
    assert not kept & {job["_id"] for job in jobs.stale_final_jobs(cutoff, 1000)}

    assert jobs.delete_final(failed, "expired", cutoff) is False  # not in that state
    assert jobs.delete_final(expired, "expired", cutoff - timedelta(minutes=2)) is False  # not that old
    assert jobs.delete_final(failed, "failed", cutoff) is True
    assert jobs.delete_final(failed, "failed", cutoff) is False  # a second replica deletes nothing
    assert jobs.get(failed) is None and jobs.get(expired) is not None
    assert {job["_id"] for job in mongo_db["jobs"].find({"owner": owner})} == kept | {expired}


def stored(mongo_db, bucket: str, fid: str) -> tuple[int, int]:
    oid = ObjectId(fid)
    return mongo_db[f"{bucket}.files"].count_documents({"_id": oid}), mongo_db[f"{bucket}.chunks"].count_documents({"files_id": oid})


def test_bucket_round_trip_readable_by_any_gridfs_client(mongo_db, tmp_path):
    data = bytes(range(256)) * (SIZE // 256)
    fid = str(GridFSBucket(mongo_db, "videos").upload_from_stream("in.mp4", data))
    videos, mp3s = Bucket(mongo_db, "videos"), Bucket(mongo_db, "mp3s")
    assert videos.download_to(fid, tmp_path / "video") == len(data)
    assert (tmp_path / "video").read_bytes() == data

    mp3_fid = str(ObjectId())
    mp3s.replace(mp3_fid, "in.mp3", tmp_path / "video", {"owner": "alice@example.com"}, fresh=True)
    out = GridFSBucket(mongo_db, "mp3s").open_download_stream(ObjectId(mp3_fid))
    assert out.filename == "in.mp3" and out.metadata == {"owner": "alice@example.com"} and out.read() == data
    with pytest.raises(MissingFile):
        videos.download_to(str(ObjectId()), tmp_path / "none")


def test_replace_overwrites_what_an_interrupted_attempt_left(mongo_db, tmp_path):
    mp3s, fid = Bucket(mongo_db, "mp3s"), str(ObjectId())
    # An attempt that died mid-upload: chunks but no files document.
    mongo_db["mp3s.chunks"].insert_many([{"files_id": ObjectId(fid), "n": n, "data": b"x" * 10} for n in range(5)])
    src = tmp_path / "a.mp3"
    src.write_bytes(b"y" * SIZE)
    mp3s.replace(fid, "a.mp3", src, {})
    assert stored(mongo_db, "mp3s", fid) == (1, 3)
    assert GridFSBucket(mongo_db, "mp3s").open_download_stream(ObjectId(fid)).read() == b"y" * SIZE


def test_delete_removes_the_file_and_tolerates_leftovers_and_missing_files(mongo_db, tmp_path):
    videos = Bucket(mongo_db, "videos")
    fid = str(GridFSBucket(mongo_db, "videos").upload_from_stream("v.mp4", b"z" * SIZE))
    videos.delete(fid)
    assert stored(mongo_db, "videos", fid) == (0, 0)
    videos.delete(fid)  # again: a redelivery
    orphan = str(ObjectId())
    mongo_db["videos.chunks"].insert_one({"files_id": ObjectId(orphan), "n": 0, "data": b"x"})
    videos.delete(orphan)
    assert stored(mongo_db, "videos", orphan) == (0, 0)
