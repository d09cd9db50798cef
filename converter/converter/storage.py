"""GridFS adapter: stream a video out to disk and an MP3 in from disk, never whole in memory."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from gridfs import GridFSBucket
from gridfs.errors import CorruptGridFile, NoFile
from pymongo.collection import Collection

from .jobs import retry_transient

log = logging.getLogger(__name__)

CHUNK_BYTES = 1024 * 1024
# GridFS's default chunk size (255 KiB), the same GridFSBucket and the gateway use.
CHUNK_SIZE = 255 * 1024


class MissingFile(Exception):
    """No GridFS file with that id."""


class Bucket:
    """One GridFS bucket (`videos` or `mp3s`), addressed by the 24-hex file ids stored on jobs."""

    def __init__(self, bucket: GridFSBucket, chunks: Collection | None = None, files: Collection | None = None) -> None:
        self._bucket = bucket
        # The bucket's `<name>.chunks` and `<name>.files` collections: reads go through ChunkReader (FerretDB's
        # getMore limit), writes through ChunkWriter (pymongo buffers up to 48 MB per upload in memory).
        # Without them (unit tests' fake bucket) the bucket's own stream methods are used.
        self._chunks = chunks
        self._files = files

    @retry_transient
    def download_to(self, fid: str, dst: Path) -> int:
        """Writes the file to dst in 1 MiB chunks (a retry starts the file over); returns its size."""
        try:
            stream = self._bucket.open_download_stream(ObjectId(fid))  # reads only the files document
        except NoFile:
            raise MissingFile(fid) from None
        if self._chunks is not None:
            stream = ChunkReader(self._chunks, stream._id, stream.length)
        size = 0
        with stream, dst.open("wb") as out:
            while chunk := stream.read(CHUNK_BYTES):
                out.write(chunk)
                size += len(chunk)
        return size

    @retry_transient
    def replace(self, fid: str, filename: str, src: Path, metadata: dict[str, Any]) -> None:
        """Uploads src under the given id, first removing whatever an earlier, interrupted attempt left there."""
        oid = ObjectId(fid)
        self._delete(oid)
        try:
            with src.open("rb") as data:
                if self._chunks is None or self._files is None:
                    self._bucket.upload_from_stream_with_id(oid, filename, data, metadata=metadata)
                else:
                    writer = ChunkWriter(self._files, self._chunks, filename, metadata, file_id=oid)
                    while piece := data.read(CHUNK_BYTES):
                        writer.write(piece)
                    writer.close()
        except Exception:
            # pymongo does not abort a failed upload: remove the chunks it already wrote (best effort; the next
            # attempt deletes them anyway before uploading).
            with contextlib.suppress(Exception):
                self._delete(oid)
            raise

    @retry_transient
    def delete(self, fid: str) -> None:
        """Deletes the file and its chunks; a missing file is fine (redelivery, earlier cleanup)."""
        self._delete(ObjectId(fid))

    def _delete(self, oid: ObjectId) -> None:
        # GridFSBucket.delete removes the chunks even when the files document is missing, then raises NoFile:
        # exactly the leftover of an upload that died before writing its files document.
        with contextlib.suppress(NoFile):
            self._bucket.delete(oid)


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
