"""GridFS files written, read and deleted chunk by chunk, each chunk found by its _id (identical in gateway and converter).

The files are plain GridFS (any driver's GridFSBucket reads them); only the chunks' `_id`s are chosen:
`<file id>.<n>` instead of a random ObjectId. Every query then names one `_id`, which every MongoDB
answers from its primary index, and which is the only filter FerretDB's SQLite backend pushes down to
SQLite: a `files_id` query there reads the whole bucket, so each read or delete cost time in proportion to
everything stored (docs/performance.md). Files written by other GridFS clients (random chunk ids) are
still read and deleted, through `files_id` queries.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from gridfs.errors import CorruptGridFile
from pymongo import DeleteOne
from pymongo.collection import Collection

# GridFS's default chunk size (255 KiB), the same pymongo's GridFSBucket uses.
CHUNK_SIZE = 255 * 1024
# Chunk ids per delete command: a bounded command, a few round trips per file.
DELETE_BATCH = 64


def chunk_id(file_id: Any, n: int) -> str:
    """The `_id` of chunk n of the file: unique per file and chunk, computable without a query."""
    return f"{file_id}.{n}"


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
        delete_file(self._files, self._chunks, self._id)

    def _chunk(self, data: bytes) -> dict:
        doc = {"_id": chunk_id(self._id, self._n), "files_id": self._id, "n": self._n, "data": data}
        self._n += 1
        self._length += len(data)
        return doc


class ChunkReader:
    """A GridFS file read one chunk at a time, each chunk fetched by its `_id`.

    Also the reason pymongo's GridOut is not used: it asks for all remaining chunks in one getMore, which
    FerretDB answers with a reply over the 48 MB wire limit for files past ~48 MB (docs/design.md,
    "Reading GridFS through FerretDB"). A file whose first chunk is not under its computed `_id` was written
    by another client: it is read through a `files_id` cursor with a small batch size instead.
    """

    def __init__(self, chunks: Collection, file_id: Any, length: int) -> None:
        self._chunks = chunks
        self._file_id = file_id
        self._length = length
        self._cursor: Any = None
        self._next_n = 0
        self._seen = 0
        self._buffer = bytearray()

    def read(self, size: int = -1) -> bytes:
        while (size < 0 or len(self._buffer) < size) and self._seen < self._length:
            chunk = self._next_chunk()
            if chunk is None or chunk["n"] != self._next_n:
                raise CorruptGridFile(f"chunk {self._next_n} of GridFS file {self._file_id} is missing")
            data = chunk["data"]
            self._next_n += 1
            self._seen += len(data)
            self._buffer += data
        size = len(self._buffer) if size < 0 else min(size, len(self._buffer))
        piece = bytes(self._buffer[:size])
        del self._buffer[:size]
        return piece

    def close(self) -> None:
        if self._cursor is not None:
            self._cursor.close()

    def __enter__(self) -> "ChunkReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _next_chunk(self) -> dict | None:
        if self._cursor is None:
            chunk = self._chunks.find_one({"_id": chunk_id(self._file_id, self._next_n)})
            if chunk is not None or self._next_n > 0:
                return chunk
            self._cursor = self._chunks.find({"files_id": self._file_id}, sort=[("n", 1)], batch_size=16)
        return next(self._cursor, None)


def delete_file(files: Collection, chunks: Collection, file_id: Any) -> None:
    """Deletes a file's chunks, then its files document; a missing file, or chunks without one, is fine.

    Chunks go first so that an interrupted delete is repeated in full by the next call. Without a files
    document (an upload that died before close()) the chunk ids are tried from 0 on: writers insert chunks
    in order, so they form an unbroken run from chunk 0.
    """
    doc = files.find_one({"_id": file_id}, {"length": 1, "chunkSize": 1})
    expected = -(-doc["length"] // doc["chunkSize"]) if doc and doc.get("chunkSize") else 0
    n = 0
    while True:
        ids = [chunk_id(file_id, i) for i in range(n, n + DELETE_BATCH)]
        deleted = chunks.bulk_write([DeleteOne({"_id": i}) for i in ids], ordered=False).deleted_count
        n += DELETE_BATCH
        if deleted == 0 and n == DELETE_BATCH and expected:
            # Not our ids: written by another GridFS client.
            chunks.delete_many({"files_id": file_id})
            break
        if deleted < DELETE_BATCH and n >= expected:
            break
    files.delete_one({"_id": file_id})
