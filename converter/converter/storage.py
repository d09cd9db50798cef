"""GridFS adapter: stream a video out to disk and an MP3 in from disk, never whole in memory."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Any

from bson import ObjectId
from pymongo.database import Database

from mp3core.gridchunks import ChunkReader, ChunkWriter, delete_file
from mp3core.mongo import retry_transient

log = logging.getLogger(__name__)

CHUNK_BYTES = 1024 * 1024
_LOOKUP = 500  # file ids per files query when telling orphans apart


class MissingFile(Exception):
    """No GridFS file with that id."""


class Bucket:
    """One GridFS bucket (`videos` or `mp3s`), addressed by the 24-hex file ids stored on jobs.

    Reads go through ChunkReader (FerretDB's getMore limit), writes through ChunkWriter (pymongo's GridIn
    buffers up to 48 MB per upload in memory).
    """

    def __init__(self, db: Database, name: str) -> None:
        self._files = db[f"{name}.files"]
        self._chunks = db[f"{name}.chunks"]

    @retry_transient
    def download_to(self, fid: str, dst: Path) -> int:
        """Writes the file to dst chunk by chunk (a retry starts the file over); returns its size."""
        oid = ObjectId(fid)
        info = self._files.find_one({"_id": oid}, {"length": 1})
        if info is None:
            raise MissingFile(fid)
        size = 0
        with dst.open("wb") as out, ChunkReader(self._chunks, oid, info["length"]) as reader:
            # Each chunk written as it arrives (255 KiB): no re-slicing of the video in Python.
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
            delete_file(self._files, self._chunks, oid)
        fresh[0] = False  # a retry of this call may find chunks its failed try left behind
        writer = ChunkWriter(self._files, self._chunks, filename, metadata, file_id=oid)
        try:
            with src.open("rb") as data:
                while piece := data.read(CHUNK_BYTES):
                    writer.write(piece)
            writer.close()
        except Exception:
            # Remove the chunks already written (best effort; the next attempt deletes them anyway first).
            with contextlib.suppress(Exception):
                writer.abort()
            raise

    @retry_transient
    def delete(self, fid: str) -> None:
        """Deletes the file and its chunks; a missing file, or chunks without one, is fine."""
        delete_file(self._files, self._chunks, ObjectId(fid))

    # --- orphaned chunks (the reaper) ------------------------------------------------------------------

    @retry_transient
    def orphaned_files(self, written_before: datetime, limit: int) -> list[ObjectId]:
        """Ids of up to `limit` files that have chunks but no files document, whose id and first chunk both date
        from before written_before: what an upload that died before its files document leaves (ChunkWriter
        writes the files document last, and chunk 0 first).

        Ages come from ObjectIds (the writer makes the file id when the upload starts, the driver each chunk's
        _id when it is inserted), so no field is needed. One query on the chunks: on MongoDB it reads the
        files_id_1_n_1 index and one chunk per old file; FerretDB reads the whole bucket for it, so call this
        rarely (ORPHAN_SWEEP_INTERVAL_SECONDS).
        """
        cutoff = ObjectId.from_datetime(written_before)
        cursor = self._chunks.find({"files_id": {"$lt": cutoff}, "n": 0, "_id": {"$lt": cutoff}},
                                   {"files_id": 1, "_id": 0}, batch_size=_LOOKUP)
        ids: Iterator[ObjectId] = (doc["files_id"] for doc in cursor)
        orphans: list[ObjectId] = []
        try:
            while len(orphans) < limit and (piece := list(islice(ids, _LOOKUP))):
                orphans += self._without_files_document(piece)
        finally:
            cursor.close()
        return orphans[:limit]

    @retry_transient
    def delete_orphans(self, file_ids: list[ObjectId]) -> list[ObjectId]:
        """Deletes the chunks of those files that still have no files document; returns their ids.

        Checked again right before deleting, so an upload that closed since orphaned_files() keeps its chunks.
        """
        gone = self._without_files_document(file_ids)
        if gone:
            self._chunks.delete_many({"files_id": {"$in": gone}})
        return gone

    def _without_files_document(self, file_ids: list[ObjectId]) -> list[ObjectId]:
        present = {doc["_id"] for doc in self._files.find({"_id": {"$in": file_ids}}, {"_id": 1})}
        return [fid for fid in file_ids if fid not in present]
