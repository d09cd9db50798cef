"""The converter's job: `video` message -> MP3 in GridFS, job `done`, `mp3` message; infrastructure passed in."""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bson import ObjectId

from mp3core.contract import (
    DONE,
    EXPIRED,
    FAILED,
    Options,
    VideoMessage,
    is_job_id,
    mp3_filename,
    parse_video_message,
    stem,
)
from mp3core.errors import PermanentError

from .convert import InputInfo, Limits, finish_mp3, output_duration, to_mp3
from .jobs import Jobs
from .metrics import Metrics
from .storage import Bucket, MissingFile

log = logging.getLogger(__name__)

PROGRESS_WRITE_S = 0.5  # the contract's "at most twice a second"
PROGRESS_PAUSE_S = 30.0  # after a failed progress write


class JobGone(Exception):
    """The job document disappeared mid-conversion: its owner deleted it (DELETE /jobs/<id>)."""


class JobEnded(Exception):
    """Another attempt at the job ended it (failed) while this one converted: this attempt's result is dropped."""

    def __init__(self, status: str) -> None:
        super().__init__(f"the job is already {status}")
        self.status = status


class ForeignMessage(PermanentError):
    """A message naming someone else's job (its username is not the job's owner): refused without touching the job
    or telling anyone, as it did not come from the gateway that created the job."""


def handle(message: dict[str, Any], *, jobs: Jobs, videos: Bucket, mp3s: Bucket, work_dir: str | Path,
           max_attempts: int, metrics: Metrics, limits: Limits = Limits(),
           clock: Callable[[], float] = time.monotonic) -> dict[str, Any] | None:
    """Converts the job's video; returns the `done` mp3 message to publish, or None when there is nothing to
    announce (the job was deleted by its owner). Safe to run again on redelivery.

    Who owns the MP3 comes from the job document, which only the gateway writes, never from the message: anything
    that can publish to `video` could otherwise hand someone's MP3 to a third party.
    """
    # The options are checked apart: fail() must still be able to parse the message to tell the user.
    msg = parse_video_message(message, options=False)
    job = jobs.get(msg.job_id)
    if job is None:
        # A queued job its owner deleted: cancelled, so no failure, no dead letter, no email.
        return _drop(metrics, "job no longer exists (deleted by its owner); dropping the message")
    if job.get("owner") != msg.username:
        raise ForeignMessage("the message's username is not the job's owner")
    if job.get("video_fid") not in (None, msg.video_fid):
        raise PermanentError("the message's video_fid does not match the job's")
    if job.get("status") == DONE:
        # Redelivery after the work was durable (e.g. crash before the ack): announce it again, do not redo it.
        log.info("job already done; publishing its result again")
        videos.delete(msg.video_fid)  # in case the crash came between marking done and this cleanup
        return msg.done(job["mp3_fid"]).to_dict()
    if job.get("status") == EXPIRED:
        # Done, announced and past retention long ago: nothing left to do or to say.
        log.info("job already done and expired; dropping the message")
        return None
    if job.get("status") == FAILED:
        raise PermanentError(job.get("error") or "the job has already failed")
    options = parse_video_message(message).options

    job = jobs.start_attempt(msg.job_id)
    if job is None:
        return _drop(metrics, "job was deleted or finished meanwhile; dropping the message")
    if job.get("attempts", 0) > max_attempts:
        raise PermanentError(f"gave up after {max_attempts} attempts")
    # Allocated once per job and stored before uploading: a retry overwrites the same file, never adds one.
    mp3_fid = jobs.plan_mp3_fid(msg.job_id, str(ObjectId()))
    if mp3_fid is None:
        return _drop(metrics, "job no longer exists (deleted by its owner); dropping the message")
    log.info("converting (attempt %d of %d)", job["attempts"], max_attempts,
             extra={"options": {k: v for k, v in options.to_dict().items() if v is not None}})

    try:
        _convert(msg, job, options, mp3_fid, jobs=jobs, videos=videos, mp3s=mp3s, work_dir=work_dir, clock=clock,
                 metrics=metrics, limits=limits, first_attempt=job["attempts"] == 1)
    except JobGone:
        return _discard(metrics, mp3s, mp3_fid)
    except JobEnded as ended:
        return _discard(metrics, mp3s, mp3_fid, f"{ended} (another attempt ended it meanwhile)")
    except PermanentError:
        # Deleting a job also deletes its video, so a converting job can fail for that very reason.
        if jobs.get(msg.job_id) is None:
            return _discard(metrics, mp3s, mp3_fid)
        raise
    metrics.jobs.labels(DONE).inc()
    log.info("converted", extra={"mp3_fid": mp3_fid})
    return msg.done(mp3_fid).to_dict()


def _convert(msg: VideoMessage, job: dict[str, Any], options: Options, mp3_fid: str, *, jobs: Jobs, videos: Bucket,
             mp3s: Bucket, work_dir: str | Path, clock: Callable[[], float], metrics: Metrics, limits: Limits,
             first_attempt: bool) -> None:
    """Download, ffmpeg, upload, mark done, delete the video; JobGone when the job disappears."""
    # An attempt cut short with its converter (killed, or stopped past its grace period) never got to remove its
    # folder, which holds the whole video: only an earlier attempt at this job made one with this prefix.
    for leftover in Path(work_dir).glob(f"job-{msg.job_id}-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"job-{msg.job_id}-", dir=work_dir))
    try:
        src, dst = tmp / "video", tmp / "audio.mp3"
        try:
            size = videos.download_to(msg.video_fid, src)
        except MissingFile:
            raise PermanentError("the uploaded video no longer exists") from None
        log.info("downloaded", extra={"bytes": size})
        started = clock()
        progress = ProgressWriter(jobs, msg.job_id, clock, options)
        # Every progress block reaches the writer, which does its own (time-based) throttling. ffmpeg tells the
        # input's duration itself (and "no audio stream" is its error), so there is no separate probe to run.
        # ffmpeg reads the file only as the container the gateway recognised (limits: see convert.Limits).
        to_mp3(src, dst, options, on_progress=progress, on_input=progress.input_known, container=msg.container,
               limits=limits)
        # The MP3's length is how far ffmpeg got (trimmed or not); what the input claimed if it never said.
        duration_s = progress.converted_s or progress.duration_s
        # The title, when the source has none, is the name the user uploaded the file under (without extension).
        finish_mp3(src, dst, options, title=stem(msg.filename), duration_s=duration_s, container=msg.container,
                   limits=limits)
        metrics.conversion_seconds.observe(clock() - started)
        # Only an earlier attempt can have left part of an MP3 under the planned fid. The owner is the job's (the
        # gateway's record); handle() refused a message that disagrees.
        mp3s.replace(mp3_fid, mp3_filename(msg.filename), dst,
                     metadata={"owner": job["owner"], "job_id": msg.job_id}, fresh=first_attempt)
        # Only an unfinished job becomes done. Gone: the MP3 just stored belongs to nobody. Failed: another attempt
        # at this job (a redelivery while this one still ran) gave up and announced it; that end stands.
        status = jobs.mark_done(msg.job_id, mp3_fid, duration_s=duration_s)
        if status is None:
            raise JobGone()
        if status != DONE:
            raise JobEnded(status)
        videos.delete(msg.video_fid)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _drop(metrics: Metrics, reason: str) -> None:
    log.info(reason)
    metrics.jobs.labels("dropped").inc()
    return None


def _discard(metrics: Metrics, mp3s: Bucket, mp3_fid: str,
             why: str = "job deleted by its owner while converting") -> None:
    """This attempt's result has no job to go to (deleted, or ended by another attempt): remove the MP3 made for it
    (if any); announce nothing."""
    mp3s.delete(mp3_fid)
    return _drop(metrics, f"{why}; its MP3 is deleted and nothing is published")


class ProgressWriter:
    """to_mp3's on_input and on_progress: stores the MP3's duration once ffmpeg has read the input (its duration,
    trimmed by the options), then the job's progress (0..99, 100 is for `done`) at most every PROGRESS_WRITE_S.

    Progress is best effort: a failed write is logged and the conversion goes on. A write that finds no job
    raises JobGone, which stops ffmpeg: the owner deleted the job, so the rest of the work is wasted.
    """

    def __init__(self, jobs: Jobs, job_id: str, clock: Callable[[], float], options: Options = Options()) -> None:
        self._jobs, self._job_id, self._clock, self._options = jobs, job_id, clock, options
        self.duration_s: float | None = None  # the MP3's, as expected from the input's
        self.converted_s = 0.0                # the furthest ffmpeg has got, in seconds of MP3
        self._written = 0
        self._last_write: float | None = None

    def input_known(self, info: InputInfo) -> None:
        """Records the duration (None when the container does not say: then no percentages)."""
        log.info("input read", extra={"duration_s": info.duration_s, "format": info.format_name})
        duration_s = output_duration(self._options, info.duration_s)
        if not self._jobs.set_duration(self._job_id, duration_s):
            raise JobGone()
        self.duration_s = duration_s

    def __call__(self, seconds: float) -> None:
        self.converted_s = max(self.converted_s, seconds)
        if not self.duration_s:
            return  # unknown length: no percentage to give
        percent = max(0, min(99, int(100 * seconds / self.duration_s)))
        now = self._clock()
        if percent <= self._written or (self._last_write is not None and now - self._last_write < PROGRESS_WRITE_S):
            return
        self._last_write = now
        try:
            exists = self._jobs.set_progress(self._job_id, percent)
        except Exception as exc:  # noqa: BLE001 - progress is cosmetic; MongoDB trouble surfaces at mark_done
            log.warning("could not record progress (%s: %s); pausing progress updates for %.0f s",
                        type(exc).__name__, exc, PROGRESS_PAUSE_S)
            # Each attempt can block for pymongo's server selection timeout while ffmpeg waits for us.
            self._last_write = now + PROGRESS_PAUSE_S
            return
        if not exists:
            raise JobGone()
        self._written = percent


def fail(message: dict[str, Any], error: Exception, *, jobs: Jobs, metrics: Metrics) -> dict[str, Any] | None:
    """On a PermanentError: marks the job `failed` and returns the `failed` mp3 message so the user hears of it.

    None (nothing to announce) when the job is gone or already done, or the message is too broken to address a
    notice: then the job, if the message still names one, is marked failed all the same, so it never stays
    `queued` (and the reaper removes its video in time).
    """
    if isinstance(error, ForeignMessage):
        # Not the owner's message: failing the job would let anyone fail other people's jobs, and the notice would
        # go to the address the message names. It is only dead-lettered.
        log.warning("refused a message for another user's job: %s", error)
        return None
    try:
        msg = parse_video_message(message, options=False)
    except PermanentError:
        job_id = message.get("job_id")
        if is_job_id(job_id) and jobs.mark_failed(job_id, str(error) or "conversion failed"):
            metrics.jobs.labels(FAILED).inc()
        return None
    failed = msg.failed(str(error))
    if not jobs.mark_failed(msg.job_id, failed.error or ""):
        return None
    metrics.jobs.labels(FAILED).inc()
    return failed.to_dict()
