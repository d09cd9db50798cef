"""The services' own GridFS readers on files past FerretDB's ~48 MB getMore limit (docs/design.md)."""

from __future__ import annotations

import hashlib
import os

import gridfs
import pytest

pytestmark = pytest.mark.integration

SIZE = 80 * 1024 * 1024 + 4321


def put(mongo_db, bucket: str, tmp_path) -> tuple[object, str]:
    source = tmp_path / "big.bin"
    digest = hashlib.sha256()
    with source.open("wb") as handle:
        for _ in range(SIZE // (1 << 20)):
            piece = os.urandom(1 << 20)
            digest.update(piece)
            handle.write(piece)
        tail = os.urandom(SIZE % (1 << 20))
        digest.update(tail)
        handle.write(tail)
    with source.open("rb") as handle:
        fid = gridfs.GridFSBucket(mongo_db, bucket).upload_from_stream("big.mp3", handle, metadata={"owner": "a@example.com"})
    source.unlink()
    return fid, digest.hexdigest()


def test_converter_downloads_a_large_video(mongo_db, tmp_path):
    from converter.storage import Bucket

    fid, expected = put(mongo_db, "videos", tmp_path)
    dst = tmp_path / "video"
    assert Bucket(mongo_db, "videos").download_to(str(fid), dst) == SIZE
    assert hashlib.sha256(dst.read_bytes()).hexdigest() == expected


def test_gateway_streams_a_large_mp3(mongo_db, tmp_path):
    from gateway.storage import Storage

    fid, expected = put(mongo_db, "mp3s", tmp_path)
    mp3 = Storage(mongo_db).open_mp3(str(fid))
    assert mp3.length == SIZE
    digest, total = hashlib.sha256(), 0
    for piece in mp3.chunks():
        assert len(piece) <= 256 * 1024
        digest.update(piece)
        total += len(piece)
    assert (total, digest.hexdigest()) == (SIZE, expected)


def test_converter_uploads_an_mp3_that_gridfs_reads_back_and_a_retry_overwrites(mongo_db, tmp_path):
    from bson import ObjectId

    from converter.storage import Bucket

    bucket = Bucket(mongo_db, "mp3s")
    src = tmp_path / "out.mp3"
    data = os.urandom(3 * 255 * 1024 + 17)  # partial last chunk
    src.write_bytes(data)
    fid = str(ObjectId())
    bucket.replace(fid, "clip.mp3", src, {"owner": "a@example.com", "job_id": "j1"})
    bucket.replace(fid, "clip.mp3", src, {"owner": "a@example.com", "job_id": "j1"})  # a retry

    stream = gridfs.GridFSBucket(mongo_db, "mp3s").open_download_stream(ObjectId(fid))
    assert stream.read() == data
    assert stream.filename == "clip.mp3" and stream.metadata == {"owner": "a@example.com", "job_id": "j1"}
    assert mongo_db["mp3s.files"].count_documents({}) == 1
    assert mongo_db["mp3s.chunks"].count_documents({"files_id": ObjectId(fid)}) == 4
