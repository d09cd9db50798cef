"""The MongoDB adapters' document shapes: GridFS chunks/files for videos, the jobs collection."""

from __future__ import annotations

from datetime import datetime

import pytest

from gateway.jobs import Jobs, job_view, new_job
from gateway.storage import CHUNK_SIZE, Mp3, ChunkWriter


class FakeCollection:
    def __init__(self) -> None:
        self.docs: list[dict] = []
        self.insert_calls: list[int] = []  # how many documents each insert call carried

    def insert_one(self, doc: dict) -> None:
        self.insert_calls.append(1)
        self.docs.append(doc)

    def insert_many(self, docs: list[dict], ordered: bool = True) -> None:
        assert ordered
        self.insert_calls.append(len(docs))
        self.docs.extend(docs)

    def delete_many(self, query: dict) -> None:
        self.docs = [d for d in self.docs if not all(d.get(k) == v for k, v in query.items())]

    def delete_one(self, query: dict) -> None:
        for i, d in enumerate(self.docs):
            if all(d.get(k) == v for k, v in query.items()):
                del self.docs[i]
                return

    def find_one(self, query: dict):
        return next((d for d in self.docs if all(d.get(k) == v for k, v in query.items())), None)


@pytest.fixture
def bucket():
    return FakeCollection(), FakeCollection()


def test_video_upload_writes_gridfs_spec_documents(bucket):
    files, chunks = bucket
    data = bytes(range(256)) * 3200  # 819,200 bytes = 3 chunks of 255 KiB + a remainder
    upload = ChunkWriter(files, chunks, "clip.mp4", {"owner": "a@example.com", "job_id": "j", "content_type": "video/mp4"})
    for i in range(0, len(data), 100_000):
        upload.write(data[i : i + 100_000])
    assert files.docs == []  # invisible until complete
    upload.close()

    assert [c["n"] for c in chunks.docs] == [0, 1, 2, 3]
    assert all(c["files_id"] == upload._id for c in chunks.docs)
    assert all(len(c["data"]) == CHUNK_SIZE for c in chunks.docs[:-1])
    assert b"".join(c["data"] for c in chunks.docs) == data
    [doc] = files.docs
    assert doc["_id"] == upload._id
    assert doc["length"] == len(data)
    assert doc["chunkSize"] == CHUNK_SIZE
    assert doc["filename"] == "clip.mp4"
    assert doc["metadata"] == {"owner": "a@example.com", "job_id": "j", "content_type": "video/mp4"}
    assert isinstance(doc["uploadDate"], datetime) and doc["uploadDate"].tzinfo is not None


def test_video_upload_buffers_at_most_one_write_plus_a_partial_chunk(bucket):
    files, chunks = bucket
    upload = ChunkWriter(files, chunks, "clip.mp4", {})
    for _ in range(40):  # 40 MiB through 1 MiB writes
        upload.write(b"\x00" * (1024 * 1024))
        assert len(upload._pending) < CHUNK_SIZE
    assert max(chunks.insert_calls) <= 1024 * 1024 // CHUNK_SIZE + 1


def test_video_upload_abort_deletes_every_chunk(bucket):
    files, chunks = bucket
    other = ChunkWriter(files, chunks, "other.mp4", {})
    other.write(b"y" * (CHUNK_SIZE + 1))
    upload = ChunkWriter(files, chunks, "clip.mp4", {})
    upload.write(b"x" * (3 * CHUNK_SIZE + 5))
    upload.abort()

    assert all(c["files_id"] == other._id for c in chunks.docs)  # only the other upload's chunk left
    assert files.docs == []


def test_mp3_chunks_reads_bounded_pieces_and_closes():
    class GridOut:
        def __init__(self):
            self.data = b"a" * 600_000
            self.sizes = []
            self.closed = False

        def read(self, size):
            self.sizes.append(size)
            piece, self.data = self.data[:size], self.data[size:]
            return piece

        def close(self):
            self.closed = True

    grid_out = GridOut()
    mp3 = Mp3(fid="f" * 24, filename="a.mp3", length=600_000, owner="a", grid_out=grid_out)
    pieces = list(mp3.chunks())
    assert [len(p) for p in pieces] == [262144, 262144, 75712]
    assert grid_out.closed

    # A client that goes away mid-download closes the generator: the cursor is closed too.
    grid_out = GridOut()
    stream = Mp3(fid="f" * 24, filename="a.mp3", length=600_000, owner="a", grid_out=grid_out).chunks()
    next(stream)
    stream.close()
    assert grid_out.closed


class FakeDb(dict):
    def __missing__(self, name):
        self[name] = FakeCollection()
        return self[name]


def test_jobs_adapter_round_trip():
    db = FakeDb()
    jobs = Jobs(db)
    now = datetime(2025, 5, 6, 7, 8, 9)
    doc = new_job(job_id="a" * 32, owner="a@example.com", filename="clip.mp4", video_fid="b" * 24, now=now)
    jobs.create(doc)

    assert db["jobs"].docs == [doc]
    assert jobs.get("a" * 32) == doc
    assert jobs.get("c" * 32) is None
    jobs.delete("a" * 32)
    assert db["jobs"].docs == []


def test_new_job_has_the_contract_fields():
    now = datetime(2025, 5, 6, 7, 8, 9)
    doc = new_job(job_id="a" * 32, owner="a@example.com", filename="clip.mp4", video_fid="b" * 24, now=now)
    assert doc == {
        "_id": "a" * 32,
        "owner": "a@example.com",
        "status": "queued",
        "filename": "clip.mp4",
        "video_fid": "b" * 24,
        "mp3_fid": None,
        "error": None,
        "attempts": 0,
        "created_at": now,
        "updated_at": now,
        "notified_at": None,
        "options": {"bitrate": None, "quality": None, "channels": None, "sample_rate": None},
        "progress": 0,
        "duration_s": None,
        "expires_at": None,
        "idempotency_key": None,
    }
    assert job_view(doc) == {
        "job_id": "a" * 32,
        "status": "queued",
        "progress": 0,
        "mp3_fid": None,
        "error": None,
        "filename": "clip.mp4",
        "duration_s": None,
        "options": {"bitrate": None, "quality": None, "channels": None, "sample_rate": None},
        "created_at": "2025-05-06T07:08:09Z",
        "updated_at": "2025-05-06T07:08:09Z",
        "expires_at": None,
    }
