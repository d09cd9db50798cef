"""GridFS files written, read and deleted chunk by chunk, in bounded memory.

The files are plain GridFS: any driver's GridFSBucket reads what ChunkWriter writes, and ChunkReader reads
what any driver writes. pymongo's own GridIn/GridOut are not used because of how much they hold at once
(see each class).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from gridfs.errors import CorruptGridFile
from pymongo.collection import Collection

# GridFS's default chunk size (255 KiB), the same pymongo's GridFSBucket uses.
CHUNK_SIZE = 255 * 1024


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

    @property
    def file_id(self) -> ObjectId:
        """The id the file is stored under (known before anything is written)."""
        return self._id

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
        doc = {"files_id": self._id, "n": self._n, "data": data}
        self._n += 1
        self._length += len(data)
        return doc


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
        self._buffer = bytearray()

    def read(self, size: int = -1) -> bytes:
        while (size < 0 or len(self._buffer) < size) and self._seen < self._length:
            self._buffer += self._next_chunk()
        size = len(self._buffer) if size < 0 else min(size, len(self._buffer))
        piece = bytes(self._buffer[:size])
        del self._buffer[:size]
        return piece

    def chunks(self) -> Iterator[bytes]:
        """The rest of the file as stored, chunk by chunk: no copying into pieces of another size."""
        if self._buffer:
            yield bytes(self._buffer)
            self._buffer.clear()
        while self._seen < self._length:
            yield self._next_chunk()

    def close(self) -> None:
        self._cursor.close()

    def _next_chunk(self) -> bytes:
        chunk = next(self._cursor, None)
        if chunk is None or chunk["n"] != self._next_n:
            raise CorruptGridFile(f"chunk {self._next_n} of GridFS file {self._file_id} is missing")
        self._next_n += 1
        self._seen += len(chunk["data"])
        return chunk["data"]

    def __enter__(self) -> "ChunkReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def delete_file(files: Collection, chunks: Collection, file_id: Any) -> None:
    """Deletes a file's files document, then its chunks; a missing file, or chunks without one, is fine.

    The files document goes first, as GridFSBucket.delete does: readers stop finding the file at once instead
    of reading it while its chunks go. The chunks are found by files_id, not through the files document, so
    an interrupted delete, or an upload that died before close(), is cleaned up by calling this again.
    """
    files.delete_one({"_id": file_id})
    chunks.delete_many({"files_id": file_id})
