"""Notification's job: `mp3` message -> one email to the owner (ready or failed), then job `notified_at`."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import PureWindowsPath
from typing import Any

import tenacity

from .errors import PermanentError
from .jobs import Jobs
from .mailer import MailUnavailable
from .metrics import EMAILS_FAILED, EMAILS_SENT

log = logging.getLogger(__name__)

Send = Callable[[str, str, str], None]  # send(to, subject, body)

_JOB_ID = re.compile(r"[0-9a-f]{32}")
_FID = re.compile(r"[0-9a-f]{24}")
# One address, no display name: no separators that could smuggle in a second recipient.
_ADDRESS = re.compile(r"[^@\s,;<>\"']+@[^@\s,;<>\"']+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_SHELL_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")


@dataclass(frozen=True)
class Mp3Message:
    job_id: str
    username: str
    filename: str
    status: str
    mp3_fid: str | None
    error: str | None


def parse_message(message: Any) -> Mp3Message:
    """Validates an `mp3` message; PermanentError naming the first bad field."""
    if not isinstance(message, dict):
        raise PermanentError("message is not a JSON object")

    def field(name: str, ok: Callable[[Any], bool], what: str) -> Any:
        value = message.get(name)
        if not ok(value):
            raise PermanentError(f"message field {name!r} is missing or not {what}")
        return value

    job_id = field("job_id", lambda v: isinstance(v, str) and _JOB_ID.fullmatch(v), "a 32-character hex id")
    username = field("username", lambda v: isinstance(v, str) and _ADDRESS.fullmatch(v), "an email address")
    filename = field("filename", lambda v: isinstance(v, str) and v.strip(), "a non-empty string")
    status = field("status", lambda v: v in ("done", "failed"), '"done" or "failed"')
    mp3_fid = error = None
    if status == "done":
        mp3_fid = field("mp3_fid", lambda v: isinstance(v, str) and _FID.fullmatch(v), "a 24-character hex file id")
    else:
        error = field("error", lambda v: v is None or isinstance(v, str), "a string or null")
    return Mp3Message(job_id, username, filename, status, mp3_fid, error)


def compose(msg: Mp3Message, public_url: str, expires_at: datetime | None = None) -> tuple[str, str]:
    """(subject, body) of the email for this message; expires_at (when the MP3 is deleted) is shown if known."""
    shown = _one_line(msg.filename)
    if msg.status == "done":
        # The stem goes inside a shell command the user pastes: allow only characters that are inert there.
        stem = _SHELL_UNSAFE.sub("_", _stem(msg.filename)).strip(" ._") or "audio"
        kept = (f"Available until: {expires_at.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC (then it is deleted)\n"
                if expires_at else "")
        subject = f"Your MP3 is ready: {shown}"
        # Single quotes around the address: _ADDRESS excludes them, and nothing expands inside them.
        body = (f'Hello,\n\nyour video "{shown}" has been converted to MP3.\n\n'
                f"Job id:          {msg.job_id}\n"
                f"MP3 file id:     {msg.mp3_fid}\n"
                f"{kept}\n"
                f"Download it with these two commands (the first asks for your password):\n\n"
                f"  TOKEN=$(curl -s -X POST -u '{msg.username}' \"{public_url}/login\")\n"
                f'  curl -H "Authorization: Bearer $TOKEN" -o "{stem}.mp3" '
                f'"{public_url}/download?fid={msg.mp3_fid}"\n')
    else:
        subject = f"Your conversion failed: {shown}"
        body = (f'Hello,\n\nyour video "{shown}" could not be converted to MP3.\n\n'
                f"Reason: {_one_line(msg.error or 'unknown error')}\n"
                f"Job id: {msg.job_id}\n")
    return subject, body


def handle(message: dict[str, Any], *, jobs: Jobs, send: Send, public_url: str,
           sleep: Callable[[float], None] = time.sleep) -> None:
    """Emails the job's owner once.

    notified_at is set only after the SMTP server accepted the mail, so a crash between the two sends the
    mail again on redelivery: at worst one duplicate, never a lost notification.
    """
    msg = parse_message(message)
    job = jobs.get(msg.job_id)
    if job is None:
        # The owner deleted the job (and its MP3) before we got here: nothing to tell, nothing to retry.
        log.info("job no longer exists (deleted by its owner); dropping the message")
        return
    if job.get("owner") not in (None, msg.username):
        raise PermanentError("the message's username is not the job's owner")
    if job.get("notified_at") is not None:
        log.info("already notified; skipping")
        return
    subject, body = compose(msg, public_url, job.get("expires_at") if msg.status == "done" else None)
    _send_until_accepted(send, msg.username, subject, body, sleep)
    EMAILS_SENT.labels(msg.status).inc()
    jobs.mark_notified(msg.job_id)
    log.info("notified", extra={"status": msg.status})


def _send_until_accepted(send: Send, to: str, subject: str, body: str, sleep: Callable[[float], None]) -> None:
    # Retried indefinitely while SMTP is down: the message stays unacked, and a pod restart loses nothing.
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(MailUnavailable),
        wait=tenacity.wait_exponential(multiplier=1, min=1, max=60),
        stop=tenacity.stop_never,
        sleep=sleep,
        reraise=True,
        before_sleep=lambda state: log.warning(
            "SMTP unavailable (%s); retrying in %.0f s", state.outcome.exception() if state.outcome else "?",
            state.next_action.sleep if state.next_action else 0),
    )
    retrying(_send_counted, send, to, subject, body)


def _send_counted(send: Send, to: str, subject: str, body: str) -> None:
    try:
        send(to, subject, body)
    except MailUnavailable:
        EMAILS_FAILED.labels("unavailable").inc()
        raise
    except PermanentError:
        EMAILS_FAILED.labels("rejected").inc()
        raise


def _stem(filename: str) -> str:
    name = PureWindowsPath(filename).name  # drops any client-side directory, / or \
    return name.rsplit(".", 1)[0] if "." in name[1:] else name


def _one_line(text: str) -> str:
    # Header values must not contain line breaks, and a name is no place for them in a body either.
    return _CONTROL.sub(" ", text).strip()[:200]
