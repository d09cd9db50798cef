"""What the MongoDB adapters hand out: an MP3 download in bounded pieces, and the jobs' document shapes."""

from __future__ import annotations

from datetime import datetime

from gateway.jobs import job_view, new_job
from gateway.storage import Mp3


def test_mp3_chunks_reads_bounded_pieces_and_closes():
    class GridOut:
        def __init__(self):
            self.data = b"a" * 600_000
            self.sizes = []
            self.closed = False

        def read(self, size):
            self.sizes.append(size)
            piece, self.data = self.data[:size], self.data[size:]
            return piece

        def close(self):
            self.closed = True

    grid_out = GridOut()
    mp3 = Mp3(fid="f" * 24, filename="a.mp3", length=600_000, owner="a", reader=grid_out)
    pieces = list(mp3.chunks())
    assert [len(p) for p in pieces] == [262144, 262144, 75712]
    assert grid_out.closed

    # A client that goes away mid-download closes the generator: the cursor is closed too.
    grid_out = GridOut()
    stream = Mp3(fid="f" * 24, filename="a.mp3", length=600_000, owner="a", reader=grid_out).chunks()
    next(stream)
    stream.close()
    assert grid_out.closed


def test_new_job_has_the_contract_fields():
    now = datetime(2025, 5, 6, 7, 8, 9)
    doc = new_job(job_id="a" * 32, owner="a@example.com", filename="clip.mp4", video_fid="b" * 24, now=now)
    assert doc == {
        "_id": "a" * 32,
        "owner": "a@example.com",
        "status": "queued",
        "filename": "clip.mp4",
        "video_fid": "b" * 24,
        "mp3_fid": None,
        "error": None,
        "attempts": 0,
        "created_at": now,
        "updated_at": now,
        "notified_at": None,
        "options": {"bitrate": None, "quality": None, "channels": None, "sample_rate": None,
                    "start": None, "end": None, "normalize": None, "cover": None},
        "progress": 0,
        "duration_s": None,
        "expires_at": None,
        "idempotency_key": None,
    }
    assert job_view(doc) == {
        "job_id": "a" * 32,
        "status": "queued",
        "progress": 0,
        "mp3_fid": None,
        "error": None,
        "filename": "clip.mp4",
        "duration_s": None,
        "options": {"bitrate": None, "quality": None, "channels": None, "sample_rate": None,
                    "start": None, "end": None, "normalize": None, "cover": None},
        "created_at": "2025-05-06T07:08:09Z",
        "updated_at": "2025-05-06T07:08:09Z",
        "expires_at": None,
    }
