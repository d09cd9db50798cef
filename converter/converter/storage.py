"""GridFS adapter: stream a video out to disk and an MP3 in from disk, never whole in memory."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

from bson import ObjectId
from gridfs import GridFSBucket
from gridfs.errors import CorruptGridFile, NoFile
from pymongo.collection import Collection

from .jobs import retry_transient

log = logging.getLogger(__name__)

CHUNK_BYTES = 1024 * 1024


class MissingFile(Exception):
    """No GridFS file with that id."""


class Bucket:
    """One GridFS bucket (`videos` or `mp3s`), addressed by the 24-hex file ids stored on jobs."""

    def __init__(self, bucket: GridFSBucket, chunks: Collection | None = None) -> None:
        self._bucket = bucket
        # The bucket's `<name>.chunks` collection: reads go through ChunkReader (FerretDB's getMore limit).
        self._chunks = chunks

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
                # GridFS reads the file object chunk by chunk.
                self._bucket.upload_from_stream_with_id(oid, filename, data, metadata=metadata)
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
