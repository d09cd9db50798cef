"""The converter's retention reaper against real FerretDB: expired MP3s and old failed videos really go."""

from __future__ import annotations

import threading
import uuid
from datetime import datetime, timedelta, timezone

import pytest

pytestmark = pytest.mark.integration

from bson import ObjectId  # noqa: E402
from gridfs import GridFSBucket  # noqa: E402

from prometheus_client import CollectorRegistry  # noqa: E402

from converter.jobs import Jobs  # noqa: E402
from converter.metrics import Metrics  # noqa: E402
from converter.reaper import Reaper  # noqa: E402
from converter.storage import Bucket  # noqa: E402

TTL = timedelta(hours=24)
RETENTION = timedelta(days=30)
SIZE = 600 * 1024  # three GridFS chunks (255 KiB each): every one of them must go


def put(mongo_db, bucket: str, job_id: str) -> str:
    data = bytes(range(256)) * (SIZE // 256)
    fid = GridFSBucket(mongo_db, bucket).upload_from_stream(f"{job_id}.bin", data, metadata={"job_id": job_id})
    assert mongo_db[f"{bucket}.chunks"].count_documents({"files_id": fid}) == 3
    return str(fid)


def stored(mongo_db, bucket: str, fid: str) -> tuple[int, int]:
    """(files documents, chunks) stored under fid."""
    oid = ObjectId(fid)
    files, chunks = mongo_db[f"{bucket}.files"], mongo_db[f"{bucket}.chunks"]
    return files.count_documents({"_id": oid}), chunks.count_documents({"files_id": oid})


def new_job(mongo_db, now: datetime, **fields) -> str:
    job_id = uuid.uuid4().hex
    doc = {"_id": job_id, "owner": "alice@example.com", "status": "done", "filename": "clip.mp4",
           "video_fid": None, "mp3_fid": None, "error": None, "attempts": 1, "created_at": now - timedelta(days=2),
           "updated_at": now - timedelta(days=2), "notified_at": now - timedelta(days=2), "progress": 100,
           "duration_s": 5.0, "expires_at": None, "options": None, "idempotency_key": None}
    doc.update(fields)
    mongo_db["jobs"].insert_one(doc)
    return job_id


def reaper_for(mongo_db, now: datetime, jobs: Jobs | None = None) -> Reaper:
    return Reaper(jobs=jobs or Jobs(mongo_db["jobs"], mp3_ttl=TTL), videos=Bucket(mongo_db, "videos"),
                  mp3s=Bucket(mongo_db, "mp3s"), ttl=TTL, job_retention=RETENTION, interval_s=3600,
                  metrics=Metrics.create(CollectorRegistry()), clock=lambda: now)


def passes_at_once(reapers: list[Reaper]) -> list[dict | None]:
    """One pass of every reaper, started together as replicas would; their counts (None: a pass failed)."""
    results: list[dict | None] = []
    start = threading.Barrier(len(reapers))

    def replica(reaper: Reaper) -> None:
        start.wait()
        results.append(reaper.run_once())

    threads = [threading.Thread(target=replica, args=(reaper,)) for reaper in reapers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def test_one_pass_deletes_expired_mp3s_and_old_failed_videos_and_keeps_the_rest(mongo_db):
    now = datetime.now(timezone.utc)
    expired = new_job(mongo_db, now, expires_at=now - timedelta(minutes=1))
    mongo_db["jobs"].update_one({"_id": expired}, {"$set": {"mp3_fid": (expired_mp3 := put(mongo_db, "mp3s", expired))}})
    fresh = new_job(mongo_db, now, expires_at=now + timedelta(hours=1))
    mongo_db["jobs"].update_one({"_id": fresh}, {"$set": {"mp3_fid": (fresh_mp3 := put(mongo_db, "mp3s", fresh))}})
    old_failed = new_job(mongo_db, now, status="failed", error="no audio", updated_at=now - TTL - timedelta(minutes=1))
    mongo_db["jobs"].update_one({"_id": old_failed}, {"$set": {"video_fid": (old_video := put(mongo_db, "videos", old_failed))}})
    new_failed = new_job(mongo_db, now, status="failed", error="no audio", updated_at=now - timedelta(hours=1))
    mongo_db["jobs"].update_one({"_id": new_failed}, {"$set": {"video_fid": (new_video := put(mongo_db, "videos", new_failed))}})

    assert reaper_for(mongo_db, now).run_once() == {"mp3": 1, "video": 1, "job": 0}

    assert stored(mongo_db, "mp3s", expired_mp3) == (0, 0)
    job = mongo_db["jobs"].find_one({"_id": expired})
    assert (job["status"], job["mp3_fid"]) == ("expired", None)
    assert job["updated_at"] >= now - timedelta(seconds=1)

    assert stored(mongo_db, "mp3s", fresh_mp3) == (1, 3)
    job = mongo_db["jobs"].find_one({"_id": fresh})
    assert (job["status"], job["mp3_fid"]) == ("done", fresh_mp3)

    assert stored(mongo_db, "videos", old_video) == (0, 0)
    job = mongo_db["jobs"].find_one({"_id": old_failed})
    assert (job["status"], job["video_fid"], job["error"]) == ("failed", None, "no audio")
    assert stored(mongo_db, "videos", new_video) == (1, 3)
    assert mongo_db["jobs"].find_one({"_id": new_failed})["video_fid"] == new_video

    # The next pass finds nothing left to do.
    assert reaper_for(mongo_db, now).run_once() == {"mp3": 0, "video": 0, "job": 0}


def test_replicas_reaping_at_once_leave_every_mp3_deleted_and_every_job_expired(mongo_db):
    now = datetime.now(timezone.utc)
    mp3s = {}
    for _ in range(4):
        job_id = new_job(mongo_db, now, expires_at=now - timedelta(minutes=5))
        mp3s[job_id] = put(mongo_db, "mp3s", job_id)
        mongo_db["jobs"].update_one({"_id": job_id}, {"$set": {"mp3_fid": mp3s[job_id]}})

    results = passes_at_once([reaper_for(mongo_db, now) for _ in range(3)])

    assert len(results) == 3 and None not in results  # no replica's pass failed
    # On MongoDB the conditional update lets exactly one replica count each expiry (sum == 4); FerretDB v1 does
    # not isolate conditional updates, so two racing replicas may both count one. The data is what matters:
    assert sum(r["mp3"] for r in results) >= 4
    for job_id, fid in mp3s.items():
        assert stored(mongo_db, "mp3s", fid) == (0, 0)
        assert mongo_db["jobs"].find_one({"_id": job_id})["status"] == "expired"


def test_final_jobs_past_retention_go_with_their_files_and_the_rest_stay(mongo_db):
    now = datetime.now(timezone.utc)
    old, recent = now - RETENTION - timedelta(minutes=1), now - RETENTION + timedelta(minutes=1)
    failed = new_job(mongo_db, now, status="failed", error="no audio", updated_at=old)
    video, planned = put(mongo_db, "videos", failed), put(mongo_db, "mp3s", failed)  # a failed attempt's MP3 under the plan
    mongo_db["jobs"].update_one({"_id": failed}, {"$set": {"video_fid": video, "mp3_fid_planned": planned}})
    expired = new_job(mongo_db, now, status="expired", updated_at=old)
    recent_failed = new_job(mongo_db, now, status="failed", error="no audio", updated_at=recent)
    recent_expired = new_job(mongo_db, now, status="expired", updated_at=recent)
    done = new_job(mongo_db, now, expires_at=now + timedelta(hours=1), updated_at=old)
    done_mp3 = put(mongo_db, "mp3s", done)
    mongo_db["jobs"].update_one({"_id": done}, {"$set": {"mp3_fid": done_mp3}})

    # The failed job's video goes in the video pass, the job and its planned MP3 in the job pass.
    assert reaper_for(mongo_db, now).run_once() == {"mp3": 0, "video": 1, "job": 2}

    assert mongo_db["jobs"].count_documents({"_id": {"$in": [failed, expired]}}) == 0
    assert stored(mongo_db, "videos", video) == (0, 0) and stored(mongo_db, "mp3s", planned) == (0, 0)
    assert {job["_id"] for job in mongo_db["jobs"].find({}, {"_id": 1})} == {recent_failed, recent_expired, done}
    assert stored(mongo_db, "mp3s", done_mp3) == (1, 3)
    assert reaper_for(mongo_db, now).run_once() == {"mp3": 0, "video": 0, "job": 0}


def test_replicas_reaping_at_once_delete_every_old_job_and_its_video_and_count_each_once(mongo_db):
    now = datetime.now(timezone.utc)
    videos = {}
    for _ in range(6):
        job_id = new_job(mongo_db, now, status="failed", error="no audio", updated_at=now - RETENTION - timedelta(hours=1))
        videos[job_id] = put(mongo_db, "videos", job_id)
        mongo_db["jobs"].update_one({"_id": job_id}, {"$set": {"video_fid": videos[job_id]}})
    # Every replica's job pass starts from the same read (the jobs with their videos), so all three race for
    # every job, whichever replica's video pass got there first.
    snapshot = Jobs(mongo_db["jobs"]).stale_final_jobs(now - RETENTION, 100)
    assert len(snapshot) == 6

    class ReadBeforeAnyoneActed(Jobs):
        first = True

        def stale_final_jobs(self, updated_before, limit):
            if self.first:
                self.first = False
                return snapshot
            return super().stale_final_jobs(updated_before, limit)

    results = passes_at_once([reaper_for(mongo_db, now, ReadBeforeAnyoneActed(mongo_db["jobs"], mp3_ttl=TTL))
                              for _ in range(3)])

    assert len(results) == 3 and None not in results  # no replica's pass failed
    assert sum(r["job"] for r in results) == 6  # delete_one's deleted_count is exact on FerretDB too
    assert mongo_db["jobs"].count_documents({}) == 0
    for fid in videos.values():
        assert stored(mongo_db, "videos", fid) == (0, 0)
