"""The upload use case: a multipart body becomes a stored video, a queued job and a `video` message, or nothing."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO
from uuid import uuid4

from mp3core.contract import QUEUED, VideoMessage
from mp3core.errors import PayloadTooLarge
from mp3core.logs import job_context

from . import multipart
from .jobs import Jobs, new_job
from .limits import Quotas, jobs_in_flight_exceeded, storage_quota_exceeded
from .metrics import Metrics
from .options import parse_form_options
from .publisher import Publisher
from .storage import Storage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Body:
    """The request body as it arrives; `stream` is not read until the Idempotency-Key lookup has missed."""

    stream: IO[bytes]
    content_type: str
    content_length: int | None


@dataclass(frozen=True)
class Accepted:
    """The job an upload is answered with: a new one, or (replay) the one its Idempotency-Key is bound to."""

    job_id: str
    status: str
    replay: bool = False


def accept_upload(owner: str, key: str | None, body: Body, *, max_bytes: int, quotas: Quotas, storage: Storage,
                  jobs: Jobs, publisher: Publisher, metrics: Metrics) -> Accepted:
    """Stores `owner`'s video, inserts its job and publishes it; on any failure undoes what was done.

    Before a body byte is read the owner's quotas are checked: uploads streaming at once (429), jobs queued or
    converting (429) and bytes stored (413; the body is also cut off where it would pass the quota). Two
    uploads racing for the last bytes of a quota can both pass, so it can be overshot by the uploads one user
    may stream at once, never more.

    With an Idempotency-Key, an upload repeated within the window is answered with the first one's job. Two
    concurrent uploads with the same key can both miss the lookup; the key claim after the job insert lets
    only one keep its job, and the other is rolled back and answered with the winner's.
    """
    if key is not None:
        # Before the body: a client retrying a finished upload costs one lookup, not a re-upload.
        first = jobs.find_idempotent(owner, key, now=datetime.now(UTC))
        if first is not None:
            return _replay(first, metrics)
    with quotas.slots.hold(owner):
        if jobs.count_in_flight(owner) >= quotas.max_jobs_in_flight:
            raise jobs_in_flight_exceeded(quotas.max_jobs_in_flight)
        room = quotas.max_stored_bytes - storage.bytes_stored(owner)
        if room < max_bytes:
            # The quota, not the upload size limit, is what this body may not pass.
            try:
                return _accept(owner, key, body, max_bytes=max(room, 0), storage=storage, jobs=jobs,
                               publisher=publisher, metrics=metrics)
            except PayloadTooLarge:
                raise storage_quota_exceeded(quotas.max_stored_bytes) from None
        return _accept(owner, key, body, max_bytes=max_bytes, storage=storage, jobs=jobs, publisher=publisher,
                       metrics=metrics)


def _accept(owner: str, key: str | None, body: Body, *, max_bytes: int, storage: Storage, jobs: Jobs,
            publisher: Publisher, metrics: Metrics) -> Accepted:
    if max_bytes <= 0 or (body.content_length is not None and body.content_length > max_bytes):
        raise multipart.too_large(max_bytes)
    boundary = multipart.boundary(body.content_type)
    job_id = uuid4().hex
    with job_context(job_id):
        video = multipart.receive_upload(body.stream, boundary, storage=storage,
                                         metadata={"owner": owner, "job_id": job_id}, max_body_bytes=max_bytes,
                                         check_fields=parse_form_options)
        options = parse_form_options(video.fields)  # already checked field by field; this builds them
        now = datetime.now(UTC)
        try:
            jobs.create(new_job(job_id=job_id, owner=owner, filename=video.filename, video_fid=video.video_fid,
                                now=now, options=options, idempotency_key=key))
            if key is not None:
                first = jobs.claim_idempotency_key(owner, key, job_id, now=now)
                if first is not None:
                    # A concurrent upload with the same key got there first: one job per key, theirs.
                    _discard(job_id, video.video_fid, storage=storage, jobs=jobs)
                    return _replay(first, metrics)
        except BaseException:
            _discard(job_id, video.video_fid, storage=storage, jobs=jobs)
            raise
        try:
            publisher.publish(VideoMessage(job_id, video.video_fid, owner, video.filename, options,
                                           container=video.content_type).to_dict())
        except BaseException:
            # Without a message nobody would ever convert this job: undo it so the client can retry.
            metrics.publish_failures.inc()
            _discard(job_id, video.video_fid, storage=storage, jobs=jobs,
                     key=(owner, key) if key is not None else None)
            raise
        metrics.upload_bytes.inc(video.size)
        log.info("upload queued", extra={"video_fid": video.video_fid, "bytes": video.size})
        return Accepted(job_id, QUEUED)


def _replay(job: dict, metrics: Metrics) -> Accepted:
    metrics.idempotent_replays.inc()
    log.info("idempotent replay", extra={"job_id": job["_id"]})
    return Accepted(job["_id"], job["status"], replay=True)


def _discard(job_id: str, video_fid: str, *, storage: Storage, jobs: Jobs, key: tuple[str, str] | None = None) -> None:
    """Best-effort rollback of a half-accepted upload; the original error is what the client gets."""
    try:
        jobs.delete(job_id)  # idempotent: fine when the insert itself was what failed
        storage.delete_video(video_fid)
        if key is not None:
            jobs.release_idempotency_key(*key, job_id)
        log.info("upload rolled back", extra={"video_fid": video_fid})
    except Exception:  # noqa: BLE001 - logged; an orphan is better than masking the real error
        log.exception("rollback of a failed upload failed", extra={"video_fid": video_fid})
