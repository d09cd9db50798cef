"""Unit tests for the MongoDB adapters against fake pymongo objects: streaming, cleanup, retry on outages."""

from __future__ import annotations

import io

import pytest
from bson import ObjectId
from gridfs.errors import NoFile
from pymongo.errors import AutoReconnect, OperationFailure

from converter import jobs as jobs_module
from converter import storage

FID = "65a1b2c3d4e5f60718293a4b"


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
    for fn in (storage.Bucket.download_to, storage.Bucket.replace, storage.Bucket.delete,
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
