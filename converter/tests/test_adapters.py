"""Unit tests for the MongoDB adapters against fake pymongo objects: streaming, cleanup, retry on outages."""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
from bson import ObjectId
from gridfs.errors import NoFile
from pymongo.errors import AutoReconnect, OperationFailure

from converter import jobs as jobs_module
from converter import storage

FID = "65a1b2c3d4e5f60718293a4b"
REPO = Path(__file__).resolve().parents[2]


def test_gridfs_module_is_identical_in_gateway_and_converter():
    ours, theirs = REPO / "converter" / "converter" / "gridchunks.py", REPO / "gateway" / "gateway" / "gridchunks.py"
    assert ours.read_bytes() == theirs.read_bytes(), "gridchunks.py drifted: diff the two copies"


class FakeGridOut(io.BytesIO):
    def __init__(self, data: bytes, reads: list[int]) -> None:
        super().__init__(data)
        self.reads = reads

    def read(self, size=-1):
        self.reads.append(size)
        return super().read(size)


class FakeGridFSBucket:
    def __init__(self) -> None:
        self.files: dict[ObjectId, bytes] = {}
        self.orphan_chunks: set[ObjectId] = set()
        self.reads: list[int] = []
        self.upload_error: Exception | None = None
        self.calls: list[str] = []

    def open_download_stream(self, oid):
        if oid not in self.files:
            raise NoFile(oid)
        return FakeGridOut(self.files[oid], self.reads)

    def upload_from_stream_with_id(self, oid, filename, source, metadata=None):
        self.calls.append("upload")
        first = source.read(10)
        if self.upload_error:
            self.orphan_chunks.add(oid)  # like pymongo: chunks written before the failure stay behind
            raise self.upload_error
        self.files[oid] = first + source.read()

    def delete(self, oid):
        self.calls.append("delete")
        self.orphan_chunks.discard(oid)
        if self.files.pop(oid, None) is None:
            raise NoFile(oid)


@pytest.fixture(autouse=True)
def instant_retries(monkeypatch):
    """tenacity would really sleep between retries; record the waits instead."""
    waits: list[float] = []
    for fn in (storage.Bucket.download_to, storage.Bucket._store, storage.Bucket.delete,
               jobs_module.Jobs.get, jobs_module.Jobs.start_attempt):
        monkeypatch.setattr(fn.retry, "sleep", waits.append)
    return waits


def test_download_streams_in_mib_chunks(tmp_path):
    bucket = FakeGridFSBucket()
    data = b"x" * (2 * storage.CHUNK_BYTES + 5)
    bucket.files[ObjectId(FID)] = data
    dst = tmp_path / "video"

    assert storage.Bucket(bucket).download_to(FID, dst) == len(data)

    assert dst.read_bytes() == data
    assert set(bucket.reads) == {storage.CHUNK_BYTES}


def test_download_of_missing_file(tmp_path):
    with pytest.raises(storage.MissingFile):
        storage.Bucket(FakeGridFSBucket()).download_to(FID, tmp_path / "video")


def test_replace_removes_leftovers_first(tmp_path):
    bucket = FakeGridFSBucket()
    bucket.files[ObjectId(FID)] = b"partial from a crashed attempt"
    src = tmp_path / "a.mp3"
    src.write_bytes(b"ID3 new content")

    storage.Bucket(bucket).replace(FID, "a.mp3", src, {"owner": "a@b.c", "job_id": "j"})

    assert bucket.files == {ObjectId(FID): b"ID3 new content"}
    assert bucket.calls == ["delete", "upload"]


def test_fresh_store_skips_the_delete_but_its_retry_does_not(tmp_path):
    bucket = FakeGridFSBucket()
    src = tmp_path / "a.mp3"
    src.write_bytes(b"ID3 new content")

    storage.Bucket(bucket).replace(FID, "a.mp3", src, {}, fresh=True)
    assert bucket.calls == ["upload"]

    # A failed try whose cleanup fails too: the retry must delete what it left before uploading again.
    bucket = FakeGridFSBucket()
    bucket.upload_error = AutoReconnect("connection lost mid-upload")
    cleanup_failures = iter([AutoReconnect("still down")])
    real_delete = bucket.delete

    def delete(oid):
        failure = next(cleanup_failures, None)
        if failure:
            bucket.calls.append("delete (failed)")
            raise failure
        real_delete(oid)

    bucket.delete = delete
    uploads = iter([True, False])
    real_upload = bucket.upload_from_stream_with_id

    def upload(*args, **kwargs):
        if not next(uploads):
            bucket.upload_error = None
        real_upload(*args, **kwargs)

    bucket.upload_from_stream_with_id = upload
    storage.Bucket(bucket).replace(FID, "a.mp3", src, {}, fresh=True)
    assert bucket.calls == ["upload", "delete (failed)", "delete", "upload"]
    assert bucket.orphan_chunks == set() and bucket.files == {ObjectId(FID): b"ID3 new content"}


def test_failed_upload_leaves_no_orphan_chunks(tmp_path):
    bucket = FakeGridFSBucket()
    bucket.upload_error = OperationFailure("write failed")
    src = tmp_path / "a.mp3"
    src.write_bytes(b"ID3 new content")

    with pytest.raises(OperationFailure):
        storage.Bucket(bucket).replace(FID, "a.mp3", src, {})

    assert bucket.orphan_chunks == set() and bucket.files == {}


def test_delete_of_missing_file_is_fine():
    bucket = FakeGridFSBucket()
    storage.Bucket(bucket).delete(FID)
    assert bucket.calls == ["delete"]


def test_mongodb_outage_is_retried_with_backoff(instant_retries):
    class Flaky:
        def __init__(self):
            self.calls = 0

        def find_one(self, query):
            self.calls += 1
            if self.calls < 3:
                raise AutoReconnect("connection refused")
            return {"_id": query["_id"]}

    collection = Flaky()
    assert jobs_module.Jobs(collection).get("j") == {"_id": "j"}
    assert collection.calls == 3 and instant_retries == [1, 2]


def test_other_database_errors_are_not_retried(instant_retries):
    class Broken:
        def find_one_and_update(self, *a, **kw):
            raise OperationFailure("not authorized")

    with pytest.raises(OperationFailure):
        jobs_module.Jobs(Broken()).start_attempt("j")
    assert instant_retries == []


# --- Jobs: what each new write sends (the real semantics run against FerretDB in tests/integration) -------

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


class Recording:
    """A pymongo collection that records calls; `matched` is the matched_count of the next updates."""

    def __init__(self, matched: int = 1, found: list | None = None) -> None:
        self.matched, self.found = matched, found or []
        self.calls: list[tuple] = []

    def update_one(self, query, update):
        self.calls.append(("update_one", query, update))
        return SimpleNamespace(matched_count=self.matched)

    def find(self, query, projection, sort, limit):
        self.calls.append(("find", query, projection, sort, limit))
        return iter(self.found)

    def create_index(self, keys):
        self.calls.append(("create_index", keys))


def jobs_on(collection):
    return jobs_module.Jobs(collection, clock=lambda: NOW, mp3_ttl=timedelta(hours=6))


def test_mark_done_sets_progress_100_and_expiry_after_the_ttl():
    collection = Recording()
    assert jobs_on(collection).mark_done("j", FID) is True
    assert collection.calls == [("update_one", {"_id": "j"}, {"$set": {
        "status": "done", "mp3_fid": FID, "error": None, "progress": 100,
        "expires_at": NOW + timedelta(hours=6), "updated_at": NOW}})]


@pytest.mark.parametrize("method", ["mark_done", "set_duration", "set_progress"])
def test_writes_report_a_deleted_job(method):
    args = {"mark_done": (FID,), "set_duration": (12.5,), "set_progress": (40,)}[method]
    assert getattr(jobs_on(Recording(matched=0)), method)("j", *args) is False


def test_progress_only_ever_rises():
    collection = Recording()
    jobs_on(collection).set_progress("j", 40)
    assert collection.calls == [("update_one", {"_id": "j"}, {"$max": {"progress": 40}})]


def test_set_duration():
    collection = Recording()
    jobs_on(collection).set_duration("j", 12.5)
    assert collection.calls == [("update_one", {"_id": "j"}, {"$set": {"duration_s": 12.5}})]


def test_mark_failed_leaves_done_and_expired_jobs_alone():
    collection = Recording()
    jobs_on(collection).mark_failed("j", "no audio")
    assert collection.calls[0][1] == {"_id": "j", "status": {"$nin": ["done", "expired"]}}


def test_expired_mp3s_query():
    collection = Recording(found=[{"_id": "j", "mp3_fid": FID}])
    assert jobs_on(collection).expired_mp3s(NOW, 10) == [{"_id": "j", "mp3_fid": FID}]
    assert collection.calls == [("find", {"status": "done", "expires_at": {"$lte": NOW}}, {"mp3_fid": 1},
                                 [("expires_at", 1)], 10)]


def test_mark_expired_is_conditional_on_the_same_mp3():
    collection = Recording(matched=0)
    assert jobs_on(collection).mark_expired("j", FID) is False  # a peer got there first
    assert collection.calls == [("update_one", {"_id": "j", "status": "done", "mp3_fid": FID},
                                 {"$set": {"status": "expired", "mp3_fid": None, "updated_at": NOW}})]


def test_stale_failed_videos_query():
    collection = Recording()
    before = NOW - timedelta(hours=6)
    assert jobs_on(collection).stale_failed_videos(before, 10) == []
    assert collection.calls == [("find", {"status": "failed", "updated_at": {"$lte": before},
                                          "video_fid": {"$ne": None}}, {"video_fid": 1}, [("updated_at", 1)], 10)]


def test_forget_video_is_conditional_and_keeps_updated_at():
    collection = Recording()
    assert jobs_on(collection).forget_video("j", FID) is True
    assert collection.calls == [("update_one", {"_id": "j", "status": "failed", "video_fid": FID},
                                 {"$set": {"video_fid": None}})]


def test_retention_index():
    collection = Recording()
    jobs_on(collection).ensure_retention_index()
    assert collection.calls == [("create_index", [("status", 1), ("expires_at", 1)])]


def test_progress_write_is_not_retried():
    # Retrying would make ffmpeg wait on its progress pipe for minutes; the handler pauses its writes instead.
    assert not hasattr(jobs_module.Jobs.set_progress, "retry")

    class Down:
        def update_one(self, *a):
            raise AutoReconnect("connection refused")

    with pytest.raises(AutoReconnect):
        jobs_on(Down()).set_progress("j", 10)
