"""What a user may do with existing jobs and files: look a job up, delete it, open its MP3 for download."""

from __future__ import annotations

import logging

from mp3core.contract import is_file_id, is_job_id
from mp3core.errors import BadRequest, NotFound

from .auth_client import User
from .jobs import Jobs
from .storage import Mp3, Storage

log = logging.getLogger(__name__)

# Someone else's job or file is "not found", not "forbidden": ids must not be probeable.
NO_SUCH_JOB = "no such job"
NO_SUCH_FILE = "no such file"


def find_job(job_id: str, user: User, *, jobs: Jobs) -> dict:
    """The job if `user` may see it; NotFound otherwise."""
    # A malformed id cannot exist: no database round trip.
    job = jobs.get(job_id) if is_job_id(job_id) else None
    if job is None or not user.may_see(job.get("owner")):
        raise NotFound(NO_SUCH_JOB)
    return job


def delete_job(job_id: str, user: User, *, jobs: Jobs, storage: Storage) -> None:
    """Deletes the job, then its video and MP3, and frees its Idempotency-Key; NotFound unless `user` may."""
    if not is_job_id(job_id):
        raise NotFound(NO_SUCH_JOB)
    # The job document goes first: it is the converter's signal to drop a queued job, or to delete
    # the MP3 it is making. Deleting the video first would make the conversion fail and mail the user.
    job = jobs.take(job_id, owner=None if user.admin else user.email)
    if job is None:
        raise NotFound(NO_SUCH_JOB)
    ids = {"job_id": job_id, "video_fid": job.get("video_fid"), "mp3_fid": job.get("mp3_fid")}
    try:
        if job.get("video_fid"):
            storage.delete_video(job["video_fid"])
        if job.get("mp3_fid"):
            storage.delete_mp3(job["mp3_fid"])
        if job.get("idempotency_key"):
            jobs.release_idempotency_key(job["owner"], job["idempotency_key"], job_id)
    except Exception:
        # The job is gone, so a retry would get 404: leave the fids in the log for a manual cleanup.
        log.exception("job deleted but its files could not all be deleted", extra=ids)
        raise
    log.info("job deleted", extra=ids)


def open_download(fid: str, user: User, *, storage: Storage) -> Mp3:
    """The MP3 `fid`, open for streaming, if `user` may see it; BadRequest for a malformed id."""
    if not is_file_id(fid):
        raise BadRequest("fid must be 24 lower-case hexadecimal characters")
    mp3 = storage.open_mp3(fid)
    if not user.may_see(mp3.owner):
        mp3.close()
        raise NotFound(NO_SUCH_FILE)
    log.info("download started", extra={"mp3_fid": fid, "bytes": mp3.length})
    return mp3
