"""The reaper against real FerretDB: chunks of uploads that never got their files document are deleted after the
grace period, and nothing else is."""

from __future__ import annotations

import os
import struct
import uuid
from datetime import datetime, timedelta, timezone

import pytest

pytestmark = pytest.mark.integration

from bson import ObjectId  # noqa: E402

from prometheus_client import CollectorRegistry  # noqa: E402

from converter.jobs import Jobs  # noqa: E402
from converter.metrics import Metrics  # noqa: E402
from converter.reaper import Reaper  # noqa: E402
from converter.storage import Bucket  # noqa: E402
from mp3core.gridchunks import ChunkWriter  # noqa: E402

GRACE = timedelta(hours=24)
CHUNK = 255 * 1024


def oid_at(when: datetime) -> ObjectId:
    """An ObjectId made at `when` (random otherwise, so ids made for one second stay unique)."""
    return ObjectId(struct.pack(">I", int(when.timestamp())) + os.urandom(8))


def upload(mongo_db, bucket: str, *, started: datetime, written: datetime, chunks: int = 3, finished: bool) -> ObjectId:
    """A file as ChunkWriter leaves it: its id made when the upload started, chunks inserted at `written`, and its
    files document only if the upload finished."""
    fid = oid_at(started)
    mongo_db[f"{bucket}.chunks"].insert_many([{"_id": oid_at(written), "files_id": fid, "n": n, "data": bytes(CHUNK)}
                                        for n in range(chunks)])
    if finished:
        mongo_db[f"{bucket}.files"].insert_one({"_id": fid, "length": chunks * CHUNK, "chunkSize": CHUNK,
                                          "uploadDate": written, "filename": "x", "metadata": {}})
    return fid


def chunks_of(mongo_db, bucket: str, fid: ObjectId) -> int:
    return mongo_db[f"{bucket}.chunks"].count_documents({"files_id": fid})


def reaper_for(mongo_db, now: datetime) -> Reaper:
    return Reaper(jobs=Jobs(mongo_db["jobs"]), videos=Bucket(mongo_db, "videos"), mp3s=Bucket(mongo_db, "mp3s"), ttl=timedelta(hours=24),
                  interval_s=3600, metrics=Metrics.create(CollectorRegistry()), orphan_grace=GRACE, clock=lambda: now)


@pytest.mark.parametrize("bucket", ["videos", "mp3s"])
def test_abandoned_uploads_older_than_the_grace_period_lose_their_chunks_and_nothing_else_does(mongo_db, bucket):
    now = datetime.now(timezone.utc)
    old, recent = now - GRACE - timedelta(minutes=5), now - GRACE + timedelta(minutes=5)
    abandoned = upload(mongo_db, bucket, started=old, written=old, finished=False)
    finished_long_ago = upload(mongo_db, bucket, started=old, written=old, finished=True)
    still_uploading = upload(mongo_db, bucket, started=recent, written=recent, finished=False)
    # The converter's retry of an MP3 whose id was planned long ago writes new chunks under the old id.
    retried_now = upload(mongo_db, bucket, started=old, written=now, finished=False)

    counts = reaper_for(mongo_db, now).run_once()

    kind = "orphan_video" if bucket == "videos" else "orphan_mp3"
    assert counts == {"mp3": 0, "video": 0, "job": 0, kind: 1}
    assert chunks_of(mongo_db, bucket, abandoned) == 0
    assert (chunks_of(mongo_db, bucket, finished_long_ago), chunks_of(mongo_db, bucket, still_uploading),
            chunks_of(mongo_db, bucket, retried_now)) == (3, 3, 3)
    assert mongo_db[f"{bucket}.files"].count_documents({"_id": finished_long_ago}) == 1


def test_a_file_written_by_chunkwriter_is_never_an_orphan(mongo_db):
    now = datetime.now(timezone.utc)
    writer = ChunkWriter(mongo_db["videos.files"], mongo_db["videos.chunks"], "clip.mp4", {"job_id": uuid.uuid4().hex})
    writer.write(bytes(2 * CHUNK + 10))
    bucket = Bucket(mongo_db, "videos")
    # Unfinished: an orphan once the grace period has passed (judged here from a clock a day ahead).
    assert bucket.orphaned_files(now + GRACE, 10) == [writer.file_id]
    assert bucket.orphaned_files(now - timedelta(minutes=1), 10) == []
    writer.close()
    assert bucket.orphaned_files(now + GRACE, 10) == []
    assert bucket.delete_orphans([writer.file_id]) == []  # checked again before deleting
    assert chunks_of(mongo_db, "videos", writer.file_id) == 3


def test_a_sweep_is_bounded_and_the_next_one_goes_on(mongo_db, monkeypatch):
    monkeypatch.setattr("converter.reaper.ORPHAN_BATCH", 2)
    now = datetime.now(timezone.utc)
    old = now - GRACE - timedelta(hours=1)
    abandoned = [upload(mongo_db, "videos", started=old, written=old, chunks=1, finished=False) for _ in range(3)]

    assert reaper_for(mongo_db, now).run_once()["orphan_video"] == 2
    assert sum(chunks_of(mongo_db, "videos", fid) for fid in abandoned) == 1
    assert reaper_for(mongo_db, now).run_once()["orphan_video"] == 1  # a new reaper sweeps at its first pass
    assert sum(chunks_of(mongo_db, "videos", fid) for fid in abandoned) == 0
