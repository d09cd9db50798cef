"""The converter's job: `video` message -> MP3 in GridFS, job `done`, `mp3` message; infrastructure passed in."""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from typing import Any

from bson import ObjectId

from .convert import MediaInfo, Mp3Options, probe, to_mp3
from .errors import PermanentError
from .jobs import Jobs
from .storage import Bucket, MissingFile

log = logging.getLogger(__name__)

_JOB_ID = re.compile(r"[0-9a-f]{32}")
_FID = re.compile(r"[0-9a-f]{24}")
_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class VideoMessage:
    job_id: str
    video_fid: str
    username: str
    filename: str


def parse_message(message: Any) -> VideoMessage:
    """Validates a `video` message; PermanentError naming the first bad field."""
    if not isinstance(message, dict):
        raise PermanentError("message is not a JSON object")
    fields = {}
    for name, pattern, what in (("job_id", _JOB_ID, "a 32-character hex id"),
                                ("video_fid", _FID, "a 24-character hex file id"),
                                ("username", None, "a non-empty string"),
                                ("filename", None, "a non-empty string")):
        value = message.get(name)
        if not isinstance(value, str) or not value.strip() or (pattern and not pattern.fullmatch(value)):
            raise PermanentError(f"message field {name!r} is missing or not {what}")
        fields[name] = value
    return VideoMessage(**fields)


def mp3_filename(filename: str) -> str:
    """'<stem>.mp3' of the uploaded name, without any client-side directory part or control characters."""
    name = PureWindowsPath(filename).name  # handles both / and \ separators
    stem = _UNSAFE_NAME.sub("", name.rsplit(".", 1)[0] if "." in name[1:] else name).strip(" .")
    return f"{stem or 'audio'}.mp3"


def mp3_message(msg: VideoMessage, *, status: str, mp3_fid: str | None = None,
                error: str | None = None) -> dict[str, Any]:
    """The contract's `mp3` message."""
    return {"job_id": msg.job_id, "video_fid": msg.video_fid, "mp3_fid": mp3_fid, "username": msg.username,
            "filename": msg.filename, "status": status, "error": error}


def handle(message: dict[str, Any], *, jobs: Jobs, videos: Bucket, mp3s: Bucket, work_dir: str | Path,
           max_attempts: int, options: Mp3Options = Mp3Options()) -> dict[str, Any]:
    """Converts the job's video; returns the `done` mp3 message to publish. Safe to run again on redelivery."""
    msg = parse_message(message)
    job = jobs.get(msg.job_id)
    if job is None:
        raise PermanentError("job no longer exists")
    if job.get("video_fid") not in (None, msg.video_fid):
        raise PermanentError("the message's video_fid does not match the job's")
    if job.get("status") == "done":
        # Redelivery after the work was durable (e.g. crash before the ack): announce it again, do not redo it.
        log.info("job already done; publishing its result again")
        videos.delete(msg.video_fid)  # in case the crash came between marking done and this cleanup
        return mp3_message(msg, status="done", mp3_fid=job["mp3_fid"])
    if job.get("status") == "failed":
        raise PermanentError(job.get("error") or "the job has already failed")

    job = jobs.start_attempt(msg.job_id)
    if job is None:
        raise PermanentError("job no longer exists")
    if job.get("attempts", 0) > max_attempts:
        raise PermanentError(f"gave up after {max_attempts} attempts")
    # Allocated once per job and stored before uploading: a retry overwrites the same file, never adds one.
    mp3_fid = jobs.plan_mp3_fid(msg.job_id, str(ObjectId()))
    if mp3_fid is None:
        raise PermanentError("job no longer exists")
    log.info("converting (attempt %d of %d)", job["attempts"], max_attempts)

    tmp = Path(tempfile.mkdtemp(prefix=f"job-{msg.job_id}-", dir=work_dir))
    try:
        src, dst = tmp / "video", tmp / "audio.mp3"
        try:
            size = videos.download_to(msg.video_fid, src)
        except MissingFile:
            raise PermanentError("the uploaded video no longer exists") from None
        info = probe(src)
        if not info.has_audio:
            raise PermanentError("the video has no audio stream")
        log.info("probed", extra={"bytes": size, "duration_s": info.duration_s, "format": info.format_name})
        to_mp3(src, dst, options, on_progress=_progress_logger(info), timeout_s=_time_limit(info))
        mp3s.replace(mp3_fid, mp3_filename(msg.filename), dst,
                     metadata={"owner": msg.username, "job_id": msg.job_id})
        jobs.mark_done(msg.job_id, mp3_fid)
        videos.delete(msg.video_fid)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("converted", extra={"mp3_fid": mp3_fid})
    return mp3_message(msg, status="done", mp3_fid=mp3_fid)


def fail(message: dict[str, Any], error: Exception, *, jobs: Jobs) -> dict[str, Any] | None:
    """On a PermanentError: marks the job `failed` and returns the `failed` mp3 message so the user hears of it.

    None (nothing to announce) when the message is unusable or the job is gone or already done.
    """
    try:
        msg = parse_message(message)
    except PermanentError:
        return None
    reason = str(error) or "conversion failed"
    if not jobs.mark_failed(msg.job_id, reason):
        return None
    return mp3_message(msg, status="failed", error=reason)


def _progress_logger(info: MediaInfo):  # noqa: ANN202
    def on_progress(seconds: float) -> None:
        percent = min(100.0, 100.0 * seconds / info.duration_s) if info.duration_s else None
        log.info("progress", extra={"out_time_s": round(seconds, 1),
                                    "percent": None if percent is None else round(percent, 1)})
    return on_progress


def _time_limit(info: MediaInfo) -> float:
    # Audio extraction runs far faster than real time; a run this long means ffmpeg is stuck.
    return 600.0 + (info.duration_s or 3600.0)
