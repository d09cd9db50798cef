"""GridFS through FerretDB: a file of at least 200 MB streamed in and out, bytes compared."""

from __future__ import annotations

import hashlib
import os

import gridfs
import pymongo
import pytest

pytestmark = pytest.mark.integration

SIZE = 200 * 1024 * 1024 + 12345  # not a multiple of the chunk size, so the last chunk is partial
PIECE = 1024 * 1024


def test_200mb_round_trip_streams_both_ways(mongo_uri, tmp_path):
    source = tmp_path / "big.bin"
    written = hashlib.sha256()
    with source.open("wb") as handle:
        remaining = SIZE
        while remaining:
            piece = os.urandom(min(PIECE, remaining))
            written.update(piece)
            handle.write(piece)
            remaining -= len(piece)

    client = pymongo.MongoClient(mongo_uri, serverSelectionTimeoutMS=5000)
    bucket = gridfs.GridFSBucket(client.get_default_database(), "videos")
    with source.open("rb") as handle:
        fid = bucket.upload_from_stream("big.bin", handle, metadata={"owner": "test"})

    db = client.get_default_database()
    assert db["videos.files"].find_one({"_id": fid})["length"] == SIZE
    # The readers' way (docs/design.md): a chunk cursor with a small batch size; see the test below.
    read = hashlib.sha256()
    total = 0
    for expected_n, chunk in enumerate(db["videos.chunks"].find({"files_id": fid}, sort=[("n", 1)], batch_size=16)):
        assert chunk["n"] == expected_n
        read.update(chunk["data"])
        total += len(chunk["data"])
    assert total == SIZE
    assert read.hexdigest() == written.hexdigest()

    bucket.delete(fid)
    assert db["videos.chunks"].count_documents({"files_id": fid}) == 0
    client.close()


def test_pymongo_gridout_read_of_a_large_file_is_what_ferretdb_cannot_serve(mongo_uri):
    """Documents the FerretDB limit that made us read chunks ourselves; if it starts passing, drop the workaround."""
    client = pymongo.MongoClient(mongo_uri, serverSelectionTimeoutMS=5000)
    bucket = gridfs.GridFSBucket(client.get_default_database(), "probe")
    fid = bucket.upload_from_stream("x.bin", _Zeros(80 * 1024 * 1024))
    with pytest.raises(pymongo.errors.ProtocolError, match="larger than server max message size"):
        with bucket.open_download_stream(fid) as stream:
            while stream.read(PIECE):
                pass
    client.close()


class _Zeros:
    """A readable stream of n zero bytes that never exists whole in memory."""

    def __init__(self, n: int):
        self.left = n

    def read(self, size: int = -1) -> bytes:
        size = self.left if size < 0 else min(size, self.left)
        self.left -= size
        return bytes(size)
