"""Unit tests for converter.reaper: what a pass deletes and keeps, replicas racing, errors, the thread."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from converter import reaper
from converter.metrics import Metrics
from prometheus_client import CollectorRegistry

METRICS = Metrics.create(CollectorRegistry())
REAPER_DELETIONS, REAPER_ERRORS = METRICS.reaper_deletions, METRICS.reaper_errors

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
TTL = timedelta(hours=24)
RETENTION = timedelta(days=30)
MP3_OLD, MP3_NEW = "65a1b2c3d4e5f60718290001", "65a1b2c3d4e5f60718290002"
VIDEO_OLD, VIDEO_NEW = "65a1b2c3d4e5f60718290003", "65a1b2c3d4e5f60718290004"


def job(job_id: str, **fields) -> dict:
    doc = {"_id": job_id.ljust(32, "0"), "owner": "alice@example.com", "status": "done", "video_fid": None,
           "mp3_fid": None, "expires_at": None, "updated_at": NOW - timedelta(days=3)}
    doc.update(fields)
    return doc


@pytest.fixture
def world(jobs, videos, mp3s):
    """Jobs in every state the reaper must tell apart, and their files."""
    jobs.docs.clear()
    for doc in (
        job("a", mp3_fid=MP3_OLD, expires_at=NOW - timedelta(seconds=1)),               # expired: reap
        job("b", mp3_fid=MP3_NEW, expires_at=NOW + timedelta(hours=1)),                 # not yet
        job("c", status="failed", video_fid=VIDEO_OLD, updated_at=NOW - TTL - timedelta(minutes=1)),  # reap
        job("d", status="failed", video_fid=VIDEO_NEW, updated_at=NOW - TTL + timedelta(minutes=1)),  # not yet
        job("e", status="queued", video_fid="65a1b2c3d4e5f60718290005", updated_at=NOW - timedelta(days=9)),
        job("f", status="converting", video_fid="65a1b2c3d4e5f60718290006", updated_at=NOW - timedelta(days=9)),
    ):
        jobs.docs[doc["_id"]] = doc
    for fid in (MP3_OLD, MP3_NEW):
        mp3s.files[fid] = {"data": b"ID3"}
    videos.files.clear()
    for fid in (VIDEO_OLD, VIDEO_NEW, "65a1b2c3d4e5f60718290005", "65a1b2c3d4e5f60718290006"):
        videos.files[fid] = {"data": b"video"}
    return jobs, videos, mp3s


def reap(jobs, videos, mp3s, job_retention=RETENTION, **kw):
    return reaper.reap_once(jobs=jobs, videos=videos, mp3s=mp3s, ttl=TTL, job_retention=job_retention, now=NOW,
                            metrics=METRICS, **kw)


def status(jobs, name):
    return jobs.docs[name.ljust(32, "0")]


def test_a_pass_deletes_expired_mp3s_and_old_failed_videos_only(world):
    jobs, videos, mp3s = world
    mp3_before = REAPER_DELETIONS.labels("mp3")._value.get()
    video_before = REAPER_DELETIONS.labels("video")._value.get()

    assert reap(jobs, videos, mp3s) == {"mp3": 1, "video": 1, "job": 0}

    assert (status(jobs, "a")["status"], status(jobs, "a")["mp3_fid"]) == ("expired", None)
    assert set(mp3s.files) == {MP3_NEW}
    assert (status(jobs, "b")["status"], status(jobs, "b")["mp3_fid"]) == ("done", MP3_NEW)
    assert status(jobs, "c")["video_fid"] is None and status(jobs, "c")["status"] == "failed"
    assert status(jobs, "d")["video_fid"] == VIDEO_NEW
    assert set(videos.files) == {VIDEO_NEW, "65a1b2c3d4e5f60718290005", "65a1b2c3d4e5f60718290006"}
    assert REAPER_DELETIONS.labels("mp3")._value.get() == mp3_before + 1
    assert REAPER_DELETIONS.labels("video")._value.get() == video_before + 1


def test_a_second_pass_finds_nothing(world):
    jobs, videos, mp3s = world
    reap(jobs, videos, mp3s)
    mp3s.calls.clear()
    assert reap(jobs, videos, mp3s) == {"mp3": 0, "video": 0, "job": 0}
    assert mp3s.calls == []


def test_racing_replicas_delete_each_file_and_record_it_once(world):
    jobs, videos, mp3s = world
    snapshot = jobs.expired_mp3s(NOW, 10)  # what both replicas read before either of them acted
    stale = iter([snapshot, snapshot])
    real = jobs.expired_mp3s
    jobs.expired_mp3s = lambda now, limit: next(stale, None) or real(now, limit)

    first = reap(jobs, videos, mp3s)
    second = reap(jobs, videos, mp3s)  # its delete is a no-op and its conditional update matches nothing

    assert (first["mp3"], second["mp3"]) == (1, 0)
    assert mp3s.calls.count(("delete", MP3_OLD)) == 2
    assert status(jobs, "a")["status"] == "expired" and set(mp3s.files) == {MP3_NEW}


def test_mp3_already_missing_still_expires_the_job(world):
    jobs, videos, mp3s = world
    del mp3s.files[MP3_OLD]  # e.g. a pass that died between the delete and the update
    assert reap(jobs, videos, mp3s)["mp3"] == 1
    assert status(jobs, "a")["status"] == "expired"


def test_job_changed_meanwhile_is_not_counted(world):
    jobs, videos, mp3s = world
    real = jobs.mark_expired

    def owner_deleted_it_first(job_id, mp3_fid):
        jobs.docs.pop(job_id)
        return real(job_id, mp3_fid)
    jobs.mark_expired = owner_deleted_it_first
    assert reap(jobs, videos, mp3s)["mp3"] == 0


def test_backlog_is_worked_off_in_batches(jobs, videos, mp3s, monkeypatch):
    monkeypatch.setattr(reaper, "BATCH", 2)
    jobs.docs.clear()
    for i in range(5):
        fid = f"65a1b2c3d4e5f607182900{i:02d}"
        jobs.docs[f"{i}".ljust(32, "0")] = job(f"{i}", mp3_fid=fid, expires_at=NOW - timedelta(minutes=i))
        mp3s.files[fid] = {"data": b"ID3"}
    assert reap(jobs, videos, mp3s)["mp3"] == 5
    assert jobs.calls.count("expired_mp3s") == 3 and mp3s.files == {}


def test_a_job_that_keeps_matching_cannot_loop_forever(jobs, videos, mp3s, monkeypatch):
    monkeypatch.setattr(reaper, "BATCH", 1)
    monkeypatch.setattr(reaper, "MAX_BATCHES", 3)
    stuck = {"_id": "s" * 32, "mp3_fid": MP3_OLD}
    jobs.expired_mp3s = lambda now, limit: [stuck]
    jobs.mark_expired = lambda job_id, fid: False
    assert reap(jobs, videos, mp3s)["mp3"] == 0
    assert mp3s.calls.count(("delete", MP3_OLD)) == 3


def test_stop_request_ends_the_pass_early(finished):
    jobs, videos, mp3s = finished
    assert reap(jobs, videos, mp3s, stopping=lambda: True) == {"mp3": 0, "video": 0, "job": 0}
    assert mp3s.calls == [] and videos.calls == [] and "delete_final" not in jobs.calls


OLD, RECENT = NOW - RETENTION - timedelta(minutes=1), NOW - RETENTION + timedelta(minutes=1)


@pytest.fixture
def finished(jobs, videos, mp3s):
    """Final jobs either side of the job retention, plus unfinished and done jobs far older than it."""
    jobs.docs.clear()
    videos.files.clear()
    for doc in (
        job("x", status="expired", video_fid=VIDEO_OLD, mp3_fid_planned=MP3_OLD, updated_at=OLD),  # reap, no files
        job("y", status="failed", video_fid=VIDEO_NEW, mp3_fid_planned=MP3_NEW, updated_at=OLD),   # reap with files
        job("z", status="failed", video_fid=None, updated_at=OLD),                                 # reap
        job("r", status="expired", updated_at=RECENT),                                              # not yet
        job("s", status="failed", updated_at=RECENT),                                               # not yet
        job("q", status="queued", video_fid="65a1b2c3d4e5f60718290005", updated_at=OLD),
        job("v", status="converting", updated_at=OLD),
        job("w", status="done", mp3_fid="65a1b2c3d4e5f60718290007", expires_at=NOW + timedelta(hours=1),
            updated_at=OLD),
    ):
        jobs.docs[doc["_id"]] = doc
    videos.files[VIDEO_NEW] = {"data": b"video"}  # a failed job's video (its expiry pass died halfway, say)
    videos.files["65a1b2c3d4e5f60718290005"] = {"data": b"video"}
    mp3s.files[MP3_NEW] = {"data": b"ID3"}  # what a failed attempt left under the planned id
    mp3s.files["65a1b2c3d4e5f60718290007"] = {"data": b"ID3"}
    return jobs, videos, mp3s


def left(jobs) -> set[str]:
    return {job_id.rstrip("0") for job_id in jobs.docs}


def test_final_jobs_past_retention_are_deleted_with_their_files(finished):
    jobs, videos, mp3s = finished
    before = REAPER_DELETIONS.labels("job")._value.get()

    assert reap(jobs, videos, mp3s) == {"mp3": 0, "video": 1, "job": 3}  # y's video goes in the video pass

    assert left(jobs) == {"r", "s", "q", "v", "w"}
    assert set(videos.files) == {"65a1b2c3d4e5f60718290005"}
    assert set(mp3s.files) == {"65a1b2c3d4e5f60718290007"}
    # Every file a deleted job named was deleted before the job (an expired job's are already gone: no-ops).
    assert ("delete", MP3_OLD) in mp3s.calls and ("delete", VIDEO_OLD) in videos.calls
    assert jobs.calls.index("delete_final") > jobs.calls.index("stale_final_jobs")
    assert REAPER_DELETIONS.labels("job")._value.get() == before + 3
    assert reap(jobs, videos, mp3s) == {"mp3": 0, "video": 0, "job": 0}


def test_files_are_deleted_before_the_job(finished):
    jobs, videos, mp3s = finished
    jobs.stale_failed_videos = lambda before, limit: []  # so only the job pass deletes y's video
    order = []
    real_final = jobs.delete_final

    def recording(bucket):
        real = bucket.delete

        def delete(fid):
            order.append(("file", fid))
            real(fid)
        return delete

    def delete_final(job_id, status, updated_before):
        order.append(("job", job_id.rstrip("0")))
        return real_final(job_id, status, updated_before)
    videos.delete, mp3s.delete, jobs.delete_final = recording(videos), recording(mp3s), delete_final

    assert reap(jobs, videos, mp3s)["job"] == 3
    assert order.index(("file", VIDEO_NEW)) < order.index(("job", "y"))
    assert order.index(("file", MP3_NEW)) < order.index(("job", "y"))
    assert VIDEO_NEW not in videos.files and MP3_NEW not in mp3s.files


def test_a_job_with_a_file_referenced_twice_deletes_it_once(finished):
    jobs, videos, mp3s = finished
    jobs.docs["y".ljust(32, "0")]["mp3_fid"] = MP3_NEW  # the same id stored as result and as planned
    reap(jobs, videos, mp3s)
    assert mp3s.calls.count(("delete", MP3_NEW)) == 1


def test_job_retention_counts_from_the_last_update(finished):
    jobs, videos, mp3s = finished
    assert reap(jobs, videos, mp3s, job_retention=RETENTION + timedelta(minutes=2))["job"] == 0
    assert reap(jobs, videos, mp3s)["job"] == 3
    assert reap(jobs, videos, mp3s, job_retention=RETENTION - timedelta(minutes=2))["job"] == 2  # r and s
    assert left(jobs) == {"q", "v", "w"}  # unfinished and done jobs stay, however old


def test_racing_replicas_delete_each_job_once(finished):
    jobs, videos, mp3s = finished
    snapshot = jobs.stale_final_jobs(NOW - RETENTION, 10)  # what both replicas read before either of them acted
    stale = iter([snapshot, snapshot])
    real = jobs.stale_final_jobs
    jobs.stale_final_jobs = lambda before, limit: next(stale, None) or real(before, limit)

    first, second = reap(jobs, videos, mp3s), reap(jobs, videos, mp3s)

    assert (first["job"], second["job"]) == (3, 0)  # the second one's files deletes are no-ops
    assert mp3s.calls.count(("delete", MP3_NEW)) == 2
    assert left(jobs) == {"r", "s", "q", "v", "w"}


def test_a_job_updated_since_it_was_read_is_kept(finished):
    jobs, videos, mp3s = finished
    real = jobs.delete_final

    def touched_first(job_id, status, updated_before):
        jobs.docs[job_id]["updated_at"] = NOW  # e.g. a late mark_failed with a new reason
        return real(job_id, status, updated_before)
    jobs.delete_final = touched_first

    assert reap(jobs, videos, mp3s)["job"] == 0
    assert {"x", "y", "z"} <= left(jobs)


def test_final_jobs_are_deleted_in_batches(jobs, videos, mp3s, monkeypatch):
    monkeypatch.setattr(reaper, "BATCH", 2)
    jobs.docs.clear()
    for i in range(5):
        doc = job(f"{i}", status="expired", updated_at=OLD - timedelta(minutes=i))
        jobs.docs[doc["_id"]] = doc
    assert reap(jobs, videos, mp3s)["job"] == 5
    assert jobs.calls.count("stale_final_jobs") == 3 and jobs.docs == {}


def make_reaper(jobs, videos, mp3s, interval_s=3600.0, monotonic=time.monotonic):
    return reaper.Reaper(jobs=jobs, videos=videos, mp3s=mp3s, ttl=TTL, interval_s=interval_s, metrics=METRICS,
                         job_retention=RETENTION, orphan_grace=timedelta(hours=6), orphan_sweep_s=3600, clock=lambda: NOW,
                         monotonic=monotonic)


NO_ORPHANS = {"orphan_video": 0, "orphan_mp3": 0}


def test_a_sweep_deletes_the_chunks_of_abandoned_uploads_in_both_buckets(videos, mp3s):
    videos.orphans, mp3s.orphans = ["v1", "v2"], ["m1"]
    before = {kind: REAPER_DELETIONS.labels(kind)._value.get() for kind in NO_ORPHANS}

    counts = reaper.sweep_orphans(videos=videos, mp3s=mp3s, written_before=NOW - timedelta(hours=6), metrics=METRICS)

    assert counts == {"orphan_video": 2, "orphan_mp3": 1} and videos.orphans == mp3s.orphans == []
    assert videos.calls == [("orphaned_files", NOW - timedelta(hours=6), reaper.ORPHAN_BATCH),
                            ("delete_orphans", ["v1", "v2"])]
    assert {kind: REAPER_DELETIONS.labels(kind)._value.get() - before[kind] for kind in NO_ORPHANS} == counts


def test_a_sweep_deletes_at_most_a_batch_per_bucket(videos, mp3s, monkeypatch):
    monkeypatch.setattr(reaper, "ORPHAN_BATCH", 2)
    videos.orphans = ["v1", "v2", "v3"]
    assert reaper.sweep_orphans(videos=videos, mp3s=mp3s, written_before=NOW, metrics=METRICS)["orphan_video"] == 2
    assert videos.orphans == ["v3"]  # the next sweep's


def test_nothing_found_deletes_nothing(videos, mp3s):
    assert reaper.sweep_orphans(videos=videos, mp3s=mp3s, written_before=NOW, metrics=METRICS) == NO_ORPHANS
    assert [call[0] for call in videos.calls + mp3s.calls] == ["orphaned_files", "orphaned_files"]


def test_orphans_are_swept_at_the_first_pass_then_once_per_sweep_interval(world):
    jobs, videos, mp3s = world
    clock = [0.0]
    r = make_reaper(jobs, videos, mp3s, monotonic=lambda: clock[0])

    def sweeps() -> int:
        return sum(call[0] == "orphaned_files" for call in videos.calls)

    assert r.run_once() == {"mp3": 1, "video": 1, "job": 0} and sweeps() == 1
    clock[0] = 3599.0
    assert r.run_once() == {"mp3": 0, "video": 0, "job": 0} and sweeps() == 1  # retention passes go on in between
    clock[0] = 3600.0
    videos.orphans = ["v1"]
    assert r.run_once() == {"mp3": 0, "video": 0, "job": 0, "orphan_video": 1} and sweeps() == 2
    assert ("orphaned_files", NOW - timedelta(hours=6), reaper.ORPHAN_BATCH) in videos.calls  # the grace period


def test_run_once_logs_and_counts_errors_instead_of_raising(world, caplog):
    jobs, videos, mp3s = world

    def down(*a):
        raise ConnectionError("MongoDB unavailable")
    jobs.expired_mp3s = down
    errors = REAPER_ERRORS._value.get()

    assert make_reaper(jobs, videos, mp3s).run_once() is None

    assert REAPER_ERRORS._value.get() == errors + 1
    assert "retention pass failed" in caplog.text and "MongoDB unavailable" in caplog.text


def test_run_once_creates_the_index_once(world):
    jobs, videos, mp3s = world
    r = make_reaper(jobs, videos, mp3s)
    assert r.run_once() == {"mp3": 1, "video": 1, "job": 0}
    assert r.run_once() == {"mp3": 0, "video": 0, "job": 0}
    assert jobs.calls.count("ensure_retention_index") == 1


def test_thread_runs_passes_survives_errors_and_stops(world):
    jobs, videos, mp3s = world
    passes = []
    real = jobs.expired_mp3s

    def flaky(now, limit):
        passes.append(now)
        if len(passes) == 1:
            raise ConnectionError("MongoDB unavailable")
        return real(now, limit)
    jobs.expired_mp3s = flaky

    r = make_reaper(jobs, videos, mp3s, interval_s=0.01).start()
    deadline = time.monotonic() + 5
    while status(jobs, "a")["status"] != "expired":
        assert time.monotonic() < deadline, "the reaper did not recover from the failed pass"
        time.sleep(0.01)
    r.stop()

    assert not any(t.name == "reaper" and t.is_alive() for t in threading.enumerate())
    assert len(passes) >= 2


def test_stop_interrupts_the_wait_between_passes(world):
    jobs, videos, mp3s = world
    r = make_reaper(jobs, videos, mp3s, interval_s=3600.0).start()
    deadline = time.monotonic() + 5
    while status(jobs, "a")["status"] != "expired":  # the first pass runs at start
        assert time.monotonic() < deadline, "no pass at start"
        time.sleep(0.01)
    started = time.monotonic()
    r.stop()
    assert time.monotonic() - started < 2.0
    assert not any(t.name == "reaper" and t.is_alive() for t in threading.enumerate())
