"""The shared GridFS module (mp3core.gridchunks) on a real FerretDB."""

from __future__ import annotations

import io
import os

import gridfs
import pytest
from bson import ObjectId
from gridfs.errors import CorruptGridFile

from mp3core.gridchunks import ChunkReader, ChunkWriter, delete_file

pytestmark = pytest.mark.integration

SMALL_CHUNK = 1024  # many chunks from little data


def write(mongo_db, data: bytes, *, chunk_size: int = 255 * 1024, close: bool = True, piece: int = 100_000) -> ObjectId:
    writer = ChunkWriter(mongo_db["b.files"], mongo_db["b.chunks"], "clip.mp4", {"owner": "a@example.com"}, chunk_size)
    for i in range(0, len(data), piece):
        writer.write(data[i : i + piece])
    if close:
        writer.close()
    return writer._id


def read_all(mongo_db, fid: ObjectId, length: int, size: int = 300_000) -> bytes:
    out = bytearray()
    with ChunkReader(mongo_db["b.chunks"], fid, length) as reader:
        while piece := reader.read(size):
            assert len(piece) <= size
            out += piece
    return bytes(out)


def counts(mongo_db, fid: ObjectId) -> tuple[int, int]:
    return mongo_db["b.files"].count_documents({"_id": fid}), mongo_db["b.chunks"].count_documents({"files_id": fid})


def test_written_file_is_plain_gridfs(mongo_db):
    data = os.urandom(3 * 255 * 1024 + 17)
    fid = write(mongo_db, data)

    assert read_all(mongo_db, fid, len(data)) == data
    assert gridfs.GridFSBucket(mongo_db, "b").open_download_stream(fid).read() == data  # any GridFS client reads it
    assert [c["n"] for c in mongo_db["b.chunks"].find({"files_id": fid}, sort=[("n", 1)])] == [0, 1, 2, 3]


def test_chunks_yields_the_stored_chunks_after_whatever_read_took(mongo_db):
    data = os.urandom(3 * 255 * 1024 + 17)
    fid = write(mongo_db, data)

    with ChunkReader(mongo_db["b.chunks"], fid, len(data)) as reader:
        assert [len(c) for c in reader.chunks()] == [255 * 1024] * 3 + [17]
    with ChunkReader(mongo_db["b.chunks"], fid, len(data)) as reader:
        head = reader.read(1000)
        rest = list(reader.chunks())
    assert [len(c) for c in rest] == [255 * 1024 - 1000] + [255 * 1024] * 2 + [17]
    assert head + b"".join(rest) == data


def test_delete_removes_every_chunk_and_only_that_file(mongo_db):
    other = write(mongo_db, os.urandom(5000), chunk_size=SMALL_CHUNK)
    fid = write(mongo_db, os.urandom(130 * SMALL_CHUNK + 5), chunk_size=SMALL_CHUNK)
    assert counts(mongo_db, fid) == (1, 131)

    delete_file(mongo_db["b.files"], mongo_db["b.chunks"], fid)

    assert counts(mongo_db, fid) == (0, 0)
    assert counts(mongo_db, other) == (1, 5)
    delete_file(mongo_db["b.files"], mongo_db["b.chunks"], fid)  # again: nothing there, no error


def test_delete_without_files_document_removes_an_interrupted_uploads_chunks(mongo_db):
    fid = write(mongo_db, os.urandom(7 * SMALL_CHUNK), chunk_size=SMALL_CHUNK, close=False)
    assert counts(mongo_db, fid) == (0, 7)

    delete_file(mongo_db["b.files"], mongo_db["b.chunks"], fid)

    assert counts(mongo_db, fid) == (0, 0)


def test_abort_deletes_what_was_written(mongo_db):
    writer = ChunkWriter(mongo_db["b.files"], mongo_db["b.chunks"], "clip.mp4", {}, SMALL_CHUNK)
    writer.write(os.urandom(10 * SMALL_CHUNK + 3))
    writer.abort()
    assert counts(mongo_db, writer._id) == (0, 0)


def test_files_from_other_gridfs_clients_are_read_and_deleted(mongo_db):
    data = os.urandom(2 * 255 * 1024 + 9)
    fid = gridfs.GridFSBucket(mongo_db, "b").upload_from_stream("other.mp4", io.BytesIO(data))

    assert read_all(mongo_db, fid, len(data)) == data
    delete_file(mongo_db["b.files"], mongo_db["b.chunks"], fid)
    assert counts(mongo_db, fid) == (0, 0)


def test_a_missing_chunk_is_reported_not_skipped(mongo_db):
    data = os.urandom(3 * SMALL_CHUNK)
    fid = write(mongo_db, data, chunk_size=SMALL_CHUNK)
    mongo_db["b.chunks"].delete_one({"files_id": fid, "n": 1})

    with pytest.raises(CorruptGridFile, match="chunk 1 "):
        read_all(mongo_db, fid, len(data), size=SMALL_CHUNK)
