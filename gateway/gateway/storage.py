"""GridFS adapter: uploaded videos (bucket `videos`) in, converted MP3s (bucket `mp3s`) out."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import gridfs
import pymongo
from bson import ObjectId
from bson.errors import InvalidId
from gridfs.errors import NoFile
from pymongo import ReadPreference
from mp3core.errors import NotFound
from mp3core.gridchunks import ChunkReader, ChunkWriter, delete_file
from pymongo.database import Database

log = logging.getLogger(__name__)

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
    reader: ChunkReader

    def chunks(self, size: int = DOWNLOAD_CHUNK) -> Iterator[bytes]:
        """Yield the file in `size` pieces, closing the GridFS cursor however the response ends."""
        try:
            while piece := self.reader.read(size):
                yield piece
        finally:
            self.reader.close()

    def close(self) -> None:
        self.reader.close()


class Storage:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._mp3s = gridfs.GridFSBucket(db, bucket_name="mp3s")
        self._indexes_ready = False
        self._owner_indexes_ready = False
        self._indexes_lock = threading.Lock()

    def open_video_upload(self, filename: str, metadata: dict) -> ChunkWriter:
        """A streaming writer: write() stores complete 255 KiB chunks as they fill,
        close() commits the file, abort() deletes every chunk written so far."""
        self._ensure_video_indexes()
        return ChunkWriter(self._db["videos.files"], self._db["videos.chunks"], filename, metadata)

    def delete_video(self, fid: str) -> None:
        self._delete("videos", fid)

    def delete_mp3(self, fid: str) -> None:
        self._delete("mp3s", fid)

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
            reader=ChunkReader(self._db["mp3s.chunks"], grid_out._id, grid_out.length),
        )

    def bytes_stored(self, owner: str) -> int:
        """Bytes of `owner`'s committed videos and MP3s (the per-user storage quota)."""
        self._ensure_owner_indexes()
        total = 0
        for bucket in ("videos", "mp3s"):
            rows = self._db[f"{bucket}.files"].aggregate(
                [{"$match": {"metadata.owner": owner}}, {"$group": {"_id": None, "n": {"$sum": "$length"}}}]
            )
            total += sum(int(row["n"]) for row in rows)
        return total

    def ping(self) -> None:
        """Raise pymongo's ConnectionFailure when no MongoDB member can be reached (readiness probe).

        Any member will do: during a replica set's election there is no primary for a few seconds, and a
        gateway that went unready then would take every gateway out of the Service at once, leaving users the
        ingress's own 503 page instead of this service's quick 503 JSON for the uploads that need a primary."""
        self._db.command("ping", read_preference=ReadPreference.PRIMARY_PREFERRED)

    def _delete(self, bucket: str, fid: str) -> None:
        """Delete a file's chunks and its files document; a missing file is not an error."""
        try:
            oid = ObjectId(fid)
        except (InvalidId, TypeError):
            log.warning("not deleting a file with a malformed id: %r", fid)
            return
        delete_file(self._db[f"{bucket}.files"], self._db[f"{bucket}.chunks"], oid)

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

    def _ensure_owner_indexes(self) -> None:
        # The quota check runs before every upload: find a user's files without scanning every bucket.
        if self._owner_indexes_ready:
            return
        with self._indexes_lock:
            if not self._owner_indexes_ready:
                for bucket in ("videos", "mp3s"):
                    self._db[f"{bucket}.files"].create_index([("metadata.owner", pymongo.ASCENDING)])
                self._owner_indexes_ready = True
