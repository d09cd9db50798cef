"""GridFS adapter: stream a video out to disk and an MP3 in from disk, never whole in memory."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

from bson import ObjectId
from gridfs import GridFSBucket
from gridfs.errors import NoFile
from pymongo.collection import Collection

from .gridchunks import ChunkReader, ChunkWriter, delete_file
from .jobs import retry_transient

log = logging.getLogger(__name__)

CHUNK_BYTES = 1024 * 1024


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
        """Writes the file to dst chunk by chunk (a retry starts the file over); returns its size."""
        try:
            stream = self._bucket.open_download_stream(ObjectId(fid))  # reads only the files document
        except NoFile:
            raise MissingFile(fid) from None
        size = 0
        with dst.open("wb") as out:
            if self._chunks is None:  # unit tests' fake bucket
                with stream:
                    while piece := stream.read(CHUNK_BYTES):
                        size += out.write(piece)
                return size
            # Each chunk written as it arrives (255 KiB): no re-slicing of the video in Python.
            with ChunkReader(self._chunks, stream._id, stream.length) as reader:
                for chunk in reader.chunks():
                    size += out.write(chunk)
        return size

    def replace(self, fid: str, filename: str, src: Path, metadata: dict[str, Any], *, fresh: bool = False) -> None:
        """Uploads src under the given id, first removing whatever an earlier, interrupted attempt left there.

        fresh: nothing can be stored under this id yet (the job's first attempt), so that delete is skipped;
        on FerretDB every delete reads the whole bucket, which grows with every MP3 kept.
        """
        self._store(ObjectId(fid), filename, src, metadata, [fresh])

    @retry_transient
    def _store(self, oid: ObjectId, filename: str, src: Path, metadata: dict[str, Any], fresh: list[bool]) -> None:
        if not fresh[0]:
            self._delete(oid)
        fresh[0] = False  # a retry of this call may find chunks its failed try left behind
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
        # Both remove the chunks even when the files document is missing: exactly the leftover of an upload
        # that died before writing its files document (GridFSBucket.delete then raises NoFile).
        if self._chunks is not None and self._files is not None:
            delete_file(self._files, self._chunks, oid)
            return
        with contextlib.suppress(NoFile):
            self._bucket.delete(oid)
