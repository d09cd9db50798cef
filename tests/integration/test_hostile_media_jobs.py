"""Crafted uploads through the converter's job against real FerretDB and real ffmpeg: each ends `failed` with its
reason within seconds and no MP3 is stored; a message naming another user is refused and changes nothing."""

from __future__ import annotations

import shutil
import struct
import subprocess
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")]

from gridfs import GridFSBucket  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402

from converter import handler  # noqa: E402
from converter.jobs import Jobs  # noqa: E402
from converter.metrics import Metrics  # noqa: E402
from converter.storage import Bucket  # noqa: E402
from mp3core.errors import PermanentError  # noqa: E402

OWNER = "alice@example.com"


@pytest.fixture(scope="module")
def secret(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("local") / "secret.m4a"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", "sine=duration=3", "-c:a", "aac",
                    str(path)], check=True, timeout=60)
    return path


def dash_naming(secret: Path) -> bytes:
    """Passes the gateway's MP4 check (bytes 4..7 `ftyp`); ffmpeg's probe reads it as DASH and the local file."""
    return (f'<!--ftypjp2 -->\n<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" minBufferTime="PT1S" '
            f'profiles="urn:mpeg:dash:profile:isoff-on-demand:2011" type="static" mediaPresentationDuration="PT3S">'
            f'<Period><AdaptationSet mimeType="audio/mp4"><Representation id="a" bandwidth="64000">'
            f'<BaseURL>file:{secret}</BaseURL><SegmentBase/></Representation></AdaptationSet></Period></MPD>\n').encode()


def tracker_bomb() -> bytes:
    """Passes the gateway's Ogg check; a 2 KB module that plays for 317,440 s (88 hours)."""
    samples = b"".join(bytes(22) + struct.pack(">HBBHH", 0, 0, 0, 0, 1) for _ in range(31))
    row = bytes([0, 0, 0xF, 0x1F, 0, 0, 0xF, 0x20, 0, 0, 0xE, 0xEF, 0, 0, 0, 0])
    return b"OggS!".ljust(20, b"\0") + samples + bytes([128, 127]) + bytes(128) + b"M.K." + row * 64


def queue_job(mongo_db, content: bytes) -> dict:
    """A queued job whose video is `content`, as the gateway stores it; returns its `video` message fields."""
    job_id = uuid.uuid4().hex
    video_fid = str(GridFSBucket(mongo_db, "videos").upload_from_stream("upload", content, metadata={"owner": OWNER}))
    now = datetime.now(timezone.utc)
    mongo_db["jobs"].insert_one({"_id": job_id, "owner": OWNER, "status": "queued", "filename": "clip.mp4",
                           "video_fid": video_fid, "mp3_fid": None, "error": None, "attempts": 0, "progress": 0,
                           "created_at": now, "updated_at": now, "expires_at": None})
    return {"job_id": job_id, "video_fid": video_fid, "username": OWNER, "filename": "clip.mp4"}


def run(mongo_db, message: dict, tmp_path: Path) -> dict | None:
    """What the consumer does: handle, and on a PermanentError, fail (the job) and return the failed message."""
    jobs, metrics = Jobs(mongo_db["jobs"]), Metrics.create(CollectorRegistry())
    try:
        return handler.handle(message, jobs=jobs, videos=Bucket(mongo_db, "videos"), mp3s=Bucket(mongo_db, "mp3s"),
                              work_dir=tmp_path, max_attempts=3, metrics=metrics)
    except PermanentError as error:
        return handler.fail(message, error, jobs=jobs, metrics=metrics)


@pytest.mark.parametrize(("case", "container", "reason"), [
    ("dash", "video/mp4", "the file is not a readable video (read as video/mp4): "),
    ("dash", None, "the file is not in a supported video or audio container (it reads as dash)"),
    ("tracker", "video/ogg", "the file is not a readable video (read as video/ogg): "),
    ("tracker", None, "the file is not in a supported video or audio container (it reads as libopenmpt)"),
])
def test_crafted_upload_ends_failed_within_seconds_with_no_mp3(mongo_db, secret, tmp_path, case, container, reason):
    message = queue_job(mongo_db, dash_naming(secret) if case == "dash" else tracker_bomb())
    message["container"] = container

    started = time.monotonic()
    announced = run(mongo_db, message, tmp_path)
    assert time.monotonic() - started < 10

    job = mongo_db["jobs"].find_one({"_id": message["job_id"]})
    assert job["status"] == "failed" and job["error"].startswith(reason)
    assert announced["status"] == "failed" and announced["error"] == job["error"]
    assert mongo_db["mp3s.files"].count_documents({}) == 0 and mongo_db["mp3s.chunks"].count_documents({}) == 0


def test_a_message_naming_another_user_is_refused_and_the_owner_s_job_is_untouched(mongo_db, tmp_path):
    clip = tmp_path / "clip.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", "sine=duration=1",
                    "-c:a", "aac", str(clip)], check=True, timeout=60)
    message = queue_job(mongo_db, clip.read_bytes())
    message["container"] = "video/mp4"

    assert run(mongo_db, {**message, "username": "mallory@example.com"}, tmp_path) is None
    job = mongo_db["jobs"].find_one({"_id": message["job_id"]})
    assert (job["status"], job["attempts"], job["error"]) == ("queued", 0, None)
    assert mongo_db["mp3s.files"].count_documents({}) == 0

    # The owner's own message still converts, and the MP3 is the job owner's.
    assert run(mongo_db, message, tmp_path)["status"] == "done"
    job = mongo_db["jobs"].find_one({"_id": message["job_id"]})
    stored = mongo_db["mp3s.files"].find_one({})
    assert str(stored["_id"]) == job["mp3_fid"] and stored["metadata"]["owner"] == OWNER
