"""Fakes for the converter's adapters (jobs collection, GridFS buckets), reached through fixtures.

(Test modules cannot import this file under --import-mode=importlib, hence fixtures for everything.)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

# pytest's importlib mode imports this file as `converter.tests.conftest` and, on the way, registers the
# service *folder* as an empty namespace module `converter`, shadowing the real package on sys.path.
# Drop that stand-in so `import converter.x` finds the package (harmless when it is already the real one).
if getattr(sys.modules.get("converter"), "__file__", None) is None:
    sys.modules.pop("converter", None)

from converter.storage import MissingFile  # noqa: E402

JOB_ID = "0123456789abcdef0123456789abcdef"
VIDEO_FID = "65a1b2c3d4e5f60718293a4b"
OWNER = "alice@example.com"
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


def video_message(**changes: Any) -> dict[str, Any]:
    message = {"job_id": JOB_ID, "video_fid": VIDEO_FID, "username": OWNER, "filename": "holiday.mp4"}
    message.update(changes)
    return message


class FakeJobs:
    """In-memory stand-in for converter.jobs.Jobs with the same semantics (TTL 24 h, clock = NOW)."""

    def __init__(self, *docs: dict[str, Any]) -> None:
        self.docs = {doc["_id"]: dict(doc) for doc in docs}
        self.calls: list[str] = []
        self.progress_writes: list[int] = []
        self.progress_error: Exception | None = None
        self.on_progress: Any = None  # called with the percent before each progress write (e.g. to delete the job)

    def get(self, job_id):
        self.calls.append("get")
        doc = self.docs.get(job_id)
        return dict(doc) if doc else None

    def start_attempt(self, job_id):
        self.calls.append("start_attempt")
        doc = self.docs.get(job_id)
        if doc is None or doc["status"] not in ("queued", "converting"):
            return None
        doc["attempts"] = doc.get("attempts", 0) + 1
        doc["status"] = "converting"
        return dict(doc)

    def plan_mp3_fid(self, job_id, candidate):
        self.calls.append("plan_mp3_fid")
        doc = self.docs.get(job_id)
        if doc is None:
            return None
        doc.setdefault("mp3_fid_planned", candidate)
        return doc["mp3_fid_planned"]

    def set_duration(self, job_id, duration_s):
        self.calls.append("set_duration")
        if job_id not in self.docs:
            return False
        self.docs[job_id]["duration_s"] = duration_s
        return True

    def set_progress(self, job_id, percent):
        self.calls.append("set_progress")
        if self.on_progress:
            self.on_progress(percent)
        if self.progress_error:
            raise self.progress_error
        self.progress_writes.append(percent)
        if job_id not in self.docs:
            return False
        doc = self.docs[job_id]
        doc["progress"] = max(doc.get("progress", 0), percent)
        return True

    def mark_done(self, job_id, mp3_fid, *, duration_s=None):
        self.calls.append("mark_done")
        if job_id not in self.docs:
            return None
        if self.docs[job_id]["status"] not in ("queued", "converting"):
            return self.docs[job_id]["status"]
        self.docs[job_id].update(status="done", mp3_fid=mp3_fid, error=None, progress=100,
                                 expires_at=NOW + timedelta(hours=24))
        if duration_s is not None:
            self.docs[job_id]["duration_s"] = round(duration_s, 3)
        return "done"

    def mark_failed(self, job_id, reason):
        self.calls.append("mark_failed")
        doc = self.docs.get(job_id)
        if doc is None or doc["status"] in ("done", "expired"):
            return False
        if doc["status"] != "failed":
            doc.update(status="failed", error=reason)
        return True

    def ensure_retention_index(self):
        self.calls.append("ensure_retention_index")

    def expired_mp3s(self, now, limit):
        self.calls.append("expired_mp3s")
        found = sorted((d for d in self.docs.values() if d["status"] == "done" and d.get("expires_at")
                        and d["expires_at"] <= now), key=lambda d: d["expires_at"])
        return [{"_id": d["_id"], "mp3_fid": d.get("mp3_fid")} for d in found[:limit]]

    def mark_expired(self, job_id, mp3_fid):
        self.calls.append("mark_expired")
        doc = self.docs.get(job_id)
        if doc is None or doc["status"] != "done" or doc.get("mp3_fid") != mp3_fid:
            return False
        doc.update(status="expired", mp3_fid=None)
        return True

    def stale_failed_videos(self, failed_before, limit):
        self.calls.append("stale_failed_videos")
        found = sorted((d for d in self.docs.values() if d["status"] == "failed" and d.get("video_fid")
                        and d["updated_at"] <= failed_before), key=lambda d: d["updated_at"])
        return [{"_id": d["_id"], "video_fid": d["video_fid"]} for d in found[:limit]]

    def forget_video(self, job_id, video_fid):
        self.calls.append("forget_video")
        doc = self.docs.get(job_id)
        if doc is None or doc["status"] != "failed" or doc.get("video_fid") != video_fid:
            return False
        doc["video_fid"] = None
        return True

    def stale_final_jobs(self, updated_before, limit):
        self.calls.append("stale_final_jobs")
        found = sorted((d for d in self.docs.values() if d["status"] in ("expired", "failed")
                        and d["updated_at"] <= updated_before), key=lambda d: d["updated_at"])
        fields = ("_id", "status", "video_fid", "mp3_fid", "mp3_fid_planned")
        return [{k: d[k] for k in fields if k in d} for d in found[:limit]]

    def delete_final(self, job_id, status, updated_before):
        self.calls.append("delete_final")
        doc = self.docs.get(job_id)
        if doc is None or doc["status"] != status or doc["updated_at"] > updated_before:
            return False
        del self.docs[job_id]
        return True


class FakeBucket:
    """In-memory stand-in for converter.storage.Bucket; `fail_replace` makes the next uploads raise."""

    def __init__(self, files: dict[str, bytes] | None = None) -> None:
        self.files: dict[str, dict[str, Any]] = {fid: {"data": data} for fid, data in (files or {}).items()}
        self.calls: list[tuple] = []
        self.fail_replace: list[Exception] = []
        self.fresh: list[bool] = []  # replace()'s fresh flag per call
        self.orphans: list[str] = []  # ids of files with chunks but no files document (abandoned uploads)

    def download_to(self, fid, dst: Path):
        self.calls.append(("download_to", fid))
        if fid not in self.files:
            raise MissingFile(fid)
        dst.write_bytes(self.files[fid]["data"])
        return len(self.files[fid]["data"])

    def replace(self, fid, filename, src: Path, metadata, *, fresh=False):
        self.calls.append(("replace", fid, filename))
        self.fresh.append(fresh)
        self.files.pop(fid, None)
        if self.fail_replace:
            raise self.fail_replace.pop(0)
        self.files[fid] = {"data": src.read_bytes(), "filename": filename, "metadata": metadata}

    def delete(self, fid):
        self.calls.append(("delete", fid))
        self.files.pop(fid, None)

    def orphaned_files(self, written_before, limit):
        self.calls.append(("orphaned_files", written_before, limit))
        return self.orphans[:limit]

    def delete_orphans(self, file_ids):
        self.calls.append(("delete_orphans", list(file_ids)))
        gone = [fid for fid in file_ids if fid in self.orphans]
        self.orphans = [fid for fid in self.orphans if fid not in gone]
        return gone


def queued_job(**changes: Any) -> dict[str, Any]:
    job = {"_id": JOB_ID, "owner": OWNER, "status": "queued", "filename": "holiday.mp4", "video_fid": VIDEO_FID,
           "mp3_fid": None, "error": None, "attempts": 0, "notified_at": None}
    job.update(changes)
    return job


needs_ffmpeg = pytest.mark.skipif(not (shutil.which("ffmpeg") and shutil.which("ffprobe")),
                                  reason="ffmpeg/ffprobe not installed")


def make_clip(path: Path, *, audio: bool = True, seconds: float = 1.0, channels: int = 1,
              sample_rate: int = 44100) -> Path:
    """A tiny generated test video (lavfi testsrc2 + sine), MPEG-4 video and AAC audio in MP4."""
    args = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc2=size=64x48:rate=10:duration={seconds}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}:sample_rate={sample_rate}",
                 "-c:a", "aac"]
        if channels > 1:
            args += ["-af", f"pan={channels}c|" + "|".join(f"c{i}=c0" for i in range(channels))]
    args += ["-c:v", "mpeg4", "-shortest", str(path)]
    subprocess.run(args, check=True, timeout=60)
    return path


@pytest.fixture(scope="session")
def clip(tmp_path_factory) -> Path:
    if not (shutil.which("ffmpeg") and shutil.which("ffprobe")):
        pytest.skip("ffmpeg/ffprobe not installed")
    return make_clip(tmp_path_factory.mktemp("clips") / "clip.mp4")


@pytest.fixture(scope="session")
def surround_clip(tmp_path_factory) -> Path:
    """Six audio channels at 22050 Hz: what the defaults must cap (channels) and keep (rate)."""
    if not (shutil.which("ffmpeg") and shutil.which("ffprobe")):
        pytest.skip("ffmpeg/ffprobe not installed")
    return make_clip(tmp_path_factory.mktemp("clips") / "surround.mp4", channels=6, sample_rate=22050)


@pytest.fixture(scope="session")
def silent_clip(tmp_path_factory) -> Path:
    if not (shutil.which("ffmpeg") and shutil.which("ffprobe")):
        pytest.skip("ffmpeg/ffprobe not installed")
    return make_clip(tmp_path_factory.mktemp("clips") / "silent.mp4", audio=False)


@pytest.fixture
def fake_ffmpeg(tmp_path, monkeypatch):
    """fake_ffmpeg(shell script): puts an `ffmpeg` running that script first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()

    def install(body: str) -> None:
        script = bin_dir / "ffmpeg"
        script.write_text(f"#!/bin/sh\n{body}\n")
        script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return install


@pytest.fixture
def jobs() -> FakeJobs:
    """A jobs store holding one queued job JOB_ID."""
    return FakeJobs(queued_job())


@pytest.fixture
def videos() -> FakeBucket:
    return FakeBucket({VIDEO_FID: b"not really a video"})


@pytest.fixture
def mp3s() -> FakeBucket:
    return FakeBucket()


@pytest.fixture
def make_job():
    return queued_job


@pytest.fixture
def message():
    """video_message(**changes): a valid `video` message for JOB_ID with fields overridden."""
    return video_message
