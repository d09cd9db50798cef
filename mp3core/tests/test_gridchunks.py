"""ChunkWriter's memory bound, counted on a recording collection (its documents and reads run against FerretDB
in tests/integration/test_gridchunks.py)."""

from __future__ import annotations

from mp3core.gridchunks import CHUNK_SIZE, ChunkWriter

MIB = 1024 * 1024


class Recording:
    def __init__(self) -> None:
        self.inserted: list[int] = []  # documents per insert call

    def insert_many(self, docs: list[dict], ordered: bool = True) -> None:
        assert ordered  # chunks must land in order, or a crash could leave a gap that reads as a complete prefix
        self.inserted.append(len(docs))

    def insert_one(self, doc: dict) -> None:
        self.inserted.append(1)


def test_the_writer_holds_at_most_one_write_plus_a_partial_chunk():
    files, chunks = Recording(), Recording()
    writer = ChunkWriter(files, chunks, "clip.mp4", {})
    for _ in range(40):  # 40 MiB through 1 MiB writes
        writer.write(b"\x00" * MIB)
        assert len(writer._pending) < CHUNK_SIZE
    assert max(chunks.inserted) <= MIB // CHUNK_SIZE + 1
    assert files.inserted == []  # the file stays invisible until close()
    writer.close()
    assert files.inserted == [1] and sum(chunks.inserted) == -(-40 * MIB // CHUNK_SIZE)
