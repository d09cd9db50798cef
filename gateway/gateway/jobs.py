"""MongoDB `jobs` collection adapter and the public job view."""

from __future__ import annotations

from datetime import UTC, datetime

from pymongo.database import Database


class Jobs:
    def __init__(self, db: Database) -> None:
        self._jobs = db["jobs"]

    def create(self, job: dict) -> None:
        self._jobs.insert_one(job)

    def get(self, job_id: str) -> dict | None:
        return self._jobs.find_one({"_id": job_id})

    def delete(self, job_id: str) -> None:
        self._jobs.delete_one({"_id": job_id})


def new_job(*, job_id: str, owner: str, filename: str, video_fid: str, now: datetime) -> dict:
    """The document the gateway inserts for an accepted upload (layout fixed by docs/design.md)."""
    return {
        "_id": job_id,
        "owner": owner,
        "status": "queued",
        "filename": filename,
        "video_fid": video_fid,
        "mp3_fid": None,
        "error": None,
        "attempts": 0,
        "created_at": now,
        "updated_at": now,
        "notified_at": None,
    }


def job_view(job: dict) -> dict:
    """What a client may see of a job: no owner, no internal fids or counters."""
    return {
        "job_id": job["_id"],
        "status": job["status"],
        "mp3_fid": job.get("mp3_fid"),
        "error": job.get("error"),
        "filename": job.get("filename"),
        "created_at": _iso(job.get("created_at")),
        "updated_at": _iso(job.get("updated_at")),
    }


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    # BSON dates are UTC; a client created without tz_aware hands them back naive.
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
