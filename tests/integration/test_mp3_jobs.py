"""Better-MP3 jobs through the converter's handler against real FerretDB and real ffmpeg: what the job document and
the stored MP3 say afterwards (trimmed duration, tags, cover, the copy of an MP3 upload, a trim past the end)."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")]

from bson import ObjectId  # noqa: E402
from gridfs import GridFSBucket  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402

from converter import handler  # noqa: E402
from converter.jobs import Jobs  # noqa: E402
from converter.metrics import Metrics  # noqa: E402
from converter.storage import Bucket  # noqa: E402
from mp3core.contract import Options, VideoMessage  # noqa: E402
from mp3core.errors import PermanentError  # noqa: E402
from tests.media import ffmpeg, probe  # noqa: E402

OWNER = "alice@example.com"


def queue_job(mongo_db, source: Path, filename: str, container: str, options: Options) -> dict:
    """A queued job for `source`, as the gateway stores it; returns its `video` message."""
    job_id = uuid.uuid4().hex
    video_fid = str(GridFSBucket(mongo_db, "videos").upload_from_stream(filename, source.read_bytes(),
                                                                        metadata={"owner": OWNER}))
    now = datetime.now(timezone.utc)
    mongo_db["jobs"].insert_one({"_id": job_id, "owner": OWNER, "status": "queued", "filename": filename,
                                 "video_fid": video_fid, "mp3_fid": None, "error": None, "attempts": 0,
                                 "progress": 0, "duration_s": None, "options": options.to_dict(),
                                 "created_at": now, "updated_at": now, "expires_at": None})
    return VideoMessage(job_id, video_fid, OWNER, filename, options, container=container).to_dict()


def run(mongo_db, message: dict, tmp_path: Path) -> dict | None:
    """What the consumer does: handle, and on a PermanentError, fail (the job)."""
    jobs, metrics = Jobs(mongo_db["jobs"]), Metrics.create(CollectorRegistry())
    try:
        return handler.handle(message, jobs=jobs, videos=Bucket(mongo_db, "videos"), mp3s=Bucket(mongo_db, "mp3s"),
                              work_dir=tmp_path, max_attempts=3, metrics=metrics)
    except PermanentError as error:
        return handler.fail(message, error, jobs=jobs, metrics=metrics)


def stored_mp3(mongo_db, job: dict, path: Path) -> Path:
    path.write_bytes(GridFSBucket(mongo_db, "mp3s").open_download_stream(ObjectId(job["mp3_fid"])).read())
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("media") / "holiday.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=800x450:rate=10:duration=10", "-f", "lavfi", "-i", "sine=duration=10",
           "-c:v", "mpeg4", "-c:a", "aac", "-metadata", "artist=Ann", "-shortest", str(path))
    return path


def test_a_trimmed_job_with_a_cover_records_the_mp3_s_duration(mongo_db, video, tmp_path):
    options = Options(start=2.5, end=7, cover=True)
    message = queue_job(mongo_db, video, "Holiday 2024.mp4", "video/mp4", options)
    assert run(mongo_db, message, tmp_path)["status"] == "done"

    job = mongo_db["jobs"].find_one({"_id": message["job_id"]})
    assert job["status"] == "done" and job["duration_s"] == pytest.approx(4.5, abs=0.1)
    assert job["options"]["start"] == 2.5 and job["options"]["cover"] is True
    info = probe(stored_mp3(mongo_db, job, tmp_path / "out.mp3"))
    assert [(s["codec_name"], s.get("width")) for s in info["streams"]] == [("mp3", None), ("mjpeg", 600)]
    assert {k: info["format"]["tags"].get(k) for k in ("title", "artist")} == {"title": "Holiday 2024",
                                                                             "artist": "Ann"}


def test_an_mp3_upload_is_stored_with_its_own_frames(mongo_db, tmp_path):
    source = tmp_path / "song.mp3"
    ffmpeg("-f", "lavfi", "-i", "sine=duration=3", "-c:a", "libmp3lame", "-b:a", "96k", str(source))
    message = queue_job(mongo_db, source, "song.mp3", "audio/mpeg", Options())
    assert run(mongo_db, message, tmp_path)["status"] == "done"
    job = mongo_db["jobs"].find_one({"_id": message["job_id"]})
    out = stored_mp3(mongo_db, job, tmp_path / "out.mp3")

    def audio_md5(path: Path) -> str:
        return subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0", "-c", "copy",
                               "-f", "md5", "-"], capture_output=True, text=True, check=True, timeout=60).stdout

    assert audio_md5(out) == audio_md5(source)
    assert probe(out)["format"]["tags"]["title"] == "song"


def test_a_trim_past_the_end_fails_the_job_with_the_reason(mongo_db, video, tmp_path):
    message = queue_job(mongo_db, video, "holiday.mp4", "video/mp4", Options(start=3, end=12))
    announced = run(mongo_db, message, tmp_path)
    job = mongo_db["jobs"].find_one({"_id": message["job_id"]})
    assert (job["status"], job["error"]) == ("failed", "end (12 s) is past the end of the file (10 s)")
    assert announced["status"] == "failed" and announced["error"] == job["error"]
