"""GridFS adapter: uploaded videos (bucket `videos`) in, converted MP3s (bucket `mp3s`) out."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import gridfs
import pymongo
from bson import ObjectId
from bson.errors import InvalidId
from gridfs.errors import CorruptGridFile, NoFile
from pymongo.collection import Collection
from pymongo.database import Database

from .errors import NotFound

log = logging.getLogger("gateway")

# GridFS's default chunk size (255 KiB), the same the converter's GridFSBucket uses.
CHUNK_SIZE = 255 * 1024
# Download piece size: large enough for throughput, small enough that many parallel
# downloads stay within the pod's memory limit.
DOWNLOAD_CHUNK = 256 * 1024


@dataclass(frozen=True)
class Mp3:
    """An open MP3 download: what the route needs for headers plus the byte stream."""

    fid: str
    filename: str
    length: int
    owner: str | None
    grid_out: "ChunkReader"

    def chunks(self, size: int = DOWNLOAD_CHUNK) -> Iterator[bytes]:
        """Yield the file in `size` pieces, closing the GridFS cursor however the response ends."""
        try:
            while piece := self.grid_out.read(size):
                yield piece
        finally:
            self.grid_out.close()

    def close(self) -> None:
        self.grid_out.close()


class ChunkWriter:
    """Streams one file into a GridFS bucket, stored per the GridFS spec so GridFSBucket reads it.

    pymongo's own GridIn batches up to 48 MB of chunks in memory before inserting them; with many
    parallel uploads that is a pod OOM. This writer inserts the complete chunks of every write()
    at once, so it holds at most one write plus one partial chunk. The files document is inserted
    by close(), making the file visible only when complete; abort() deletes what was written.
    """

    def __init__(self, files: Collection, chunks: Collection, filename: str, metadata: dict,
                 chunk_size: int = CHUNK_SIZE, file_id: ObjectId | None = None) -> None:
        self._id = file_id or ObjectId()
        self._files = files
        self._chunks = chunks
        self._filename = filename
        self._metadata = metadata
        self._chunk_size = chunk_size
        self._pending = bytearray()
        self._n = 0
        self._length = 0

    def write(self, data: bytes) -> None:
        self._pending += data
        full = len(self._pending) - len(self._pending) % self._chunk_size
        if full:
            view = memoryview(self._pending)
            docs = [self._chunk(bytes(view[i : i + self._chunk_size])) for i in range(0, full, self._chunk_size)]
            view.release()
            self._chunks.insert_many(docs, ordered=True)
            del self._pending[:full]

    def close(self) -> None:
        if self._pending:
            self._chunks.insert_one(self._chunk(bytes(self._pending)))
            self._pending.clear()
        self._files.insert_one(
            {
                "_id": self._id,
                "length": self._length,
                "chunkSize": self._chunk_size,
                "uploadDate": datetime.now(UTC),
                "filename": self._filename,
                "metadata": self._metadata,
            }
        )

    def abort(self) -> None:
        self._pending.clear()
        self._chunks.delete_many({"files_id": self._id})
        self._files.delete_one({"_id": self._id})

    def _chunk(self, data: bytes) -> dict:
        doc = {"files_id": self._id, "n": self._n, "data": data}
        self._n += 1
        self._length += len(data)
        return doc


class Storage:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._videos = gridfs.GridFSBucket(db, bucket_name="videos")
        self._mp3s = gridfs.GridFSBucket(db, bucket_name="mp3s")
        self._indexes_ready = False
        self._indexes_lock = threading.Lock()

    def open_video_upload(self, filename: str, metadata: dict) -> ChunkWriter:
        """A streaming writer: write() stores complete 255 KiB chunks as they fill,
        close() commits the file, abort() deletes every chunk written so far."""
        self._ensure_video_indexes()
        return ChunkWriter(self._db["videos.files"], self._db["videos.chunks"], filename, metadata)

    def delete_video(self, fid: str) -> None:
        _delete(self._videos, fid)

    def delete_mp3(self, fid: str) -> None:
        _delete(self._mp3s, fid)

    def open_mp3(self, fid: str) -> Mp3:
        try:
            # Reads only the files document; the chunks come through ChunkReader.
            grid_out = self._mp3s.open_download_stream(ObjectId(fid))
        except (InvalidId, NoFile):
            raise NotFound("no such file") from None
        metadata = grid_out.metadata or {}
        return Mp3(
            fid=fid,
            filename=grid_out.filename or "audio.mp3",
            length=grid_out.length,
            owner=metadata.get("owner"),
            grid_out=ChunkReader(self._db["mp3s.chunks"], grid_out._id, grid_out.length),
        )

    def ping(self) -> None:
        """Raise pymongo's ConnectionFailure when MongoDB cannot be reached (readiness probe)."""
        self._db.command("ping")

    def _ensure_video_indexes(self) -> None:
        # The indexes the GridFS spec asks writers to create (GridIn would do it); once per process.
        if self._indexes_ready:
            return
        with self._indexes_lock:
            if not self._indexes_ready:
                self._db["videos.chunks"].create_index(
                    [("files_id", pymongo.ASCENDING), ("n", pymongo.ASCENDING)], unique=True
                )
                self._db["videos.files"].create_index([("filename", pymongo.ASCENDING), ("uploadDate", pymongo.ASCENDING)])
                self._indexes_ready = True


def _delete(bucket: gridfs.GridFSBucket, fid: str) -> None:
    """Delete a file's chunks and its files document; a missing file is not an error."""
    try:
        # GridFSBucket.delete removes the chunks even when the files document is gone (a half-written
        # or half-deleted file), and only then reports NoFile.
        bucket.delete(ObjectId(fid))
    except (InvalidId, TypeError):
        log.warning("not deleting a file with a malformed id: %r", fid)
    except NoFile:
        pass  # already gone: deleting is idempotent for our callers (cleanup paths, DELETE /jobs)


class ChunkReader:
    """A GridFS file read chunk by chunk through a cursor with a small batch size.

    pymongo's GridOut asks for all remaining chunks in one getMore; FerretDB answers that with a reply over
    the 48 MB wire limit for files past ~48 MB (docs/design.md, "Reading GridFS through FerretDB").
    """

    def __init__(self, chunks: Collection, file_id: Any, length: int) -> None:
        self._cursor = chunks.find({"files_id": file_id}, sort=[("n", 1)], batch_size=16)
        self._file_id = file_id
        self._length = length
        self._next_n = 0
        self._seen = 0
        self._buffer = b""

    def read(self, size: int = -1) -> bytes:
        while (size < 0 or len(self._buffer) < size) and self._seen < self._length:
            chunk = next(self._cursor, None)
            if chunk is None or chunk["n"] != self._next_n:
                raise CorruptGridFile(f"chunk {self._next_n} of GridFS file {self._file_id} is missing")
            data = bytes(chunk["data"])
            self._next_n += 1
            self._seen += len(data)
            self._buffer += data
        size = len(self._buffer) if size < 0 else size
        piece, self._buffer = self._buffer[:size], self._buffer[size:]
        return piece

    def close(self) -> None:
        self._cursor.close()

    def __enter__(self) -> "ChunkReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
