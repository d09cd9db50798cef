"""Notification's job: `mp3` message -> one email to the owner (ready or failed), then job `notified_at`."""

from __future__ import annotations

import logging
import re
import shlex
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import tenacity

from mp3core.contract import DONE, Mp3Message, parse_mp3_message, stem
from mp3core.errors import PermanentError

from .jobs import Jobs
from .mailer import MailUnavailable
from .metrics import Metrics

log = logging.getLogger(__name__)

Send = Callable[[str, str, str], None]  # send(to, subject, body)

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_SHELL_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")


def compose(msg: Mp3Message, public_url: str, expires_at: datetime | None = None) -> tuple[str, str]:
    """(subject, body) of the email for this message; expires_at (when the MP3 is deleted) is shown if known."""
    shown = _one_line(msg.filename)
    if msg.status == DONE:
        # The stem goes inside a shell command the user pastes: allow only characters that are inert there.
        name = _SHELL_UNSAFE.sub("_", stem(msg.filename)).strip(" ._") or "audio"
        kept = (f"Available until: {expires_at.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC (then it is deleted)\n"
                if expires_at else "")
        subject = f"Your MP3 is ready: {shown}"
        # The address is shell-quoted: nothing in it expands, an apostrophe (o'neil@...) included.
        body = (f'Hello,\n\nyour video "{shown}" has been converted to MP3.\n\n'
                f"Job id:          {msg.job_id}\n"
                f"MP3 file id:     {msg.mp3_fid}\n"
                f"{kept}\n"
                f"Download it with these two commands (the first asks for your password):\n\n"
                f"  TOKEN=$(curl -s -X POST -u {shlex.quote(msg.username)} \"{public_url}/login\")\n"
                f'  curl -H "Authorization: Bearer $TOKEN" -o "{name}.mp3" '
                f'"{public_url}/download?fid={msg.mp3_fid}"\n')
    else:
        subject = f"Your conversion failed: {shown}"
        body = (f'Hello,\n\nyour video "{shown}" could not be converted to MP3.\n\n'
                f"Reason: {_one_line(msg.error or 'unknown error')}\n"
                f"Job id: {msg.job_id}\n")
    return subject, body


def handle(message: dict[str, Any], *, jobs: Jobs, send: Send, public_url: str, metrics: Metrics,
           sleep: Callable[[float], None] = time.sleep) -> None:
    """Emails the job's owner once.

    notified_at is set only after the SMTP server accepted the mail, so a crash between the two sends the
    mail again on redelivery: at worst one duplicate, never a lost notification.
    """
    msg = parse_mp3_message(message)
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
    subject, body = compose(msg, public_url, job.get("expires_at") if msg.status == DONE else None)
    _send_until_accepted(send, msg.username, subject, body, sleep, metrics)
    metrics.emails_sent.labels(msg.status).inc()
    jobs.mark_notified(msg.job_id)
    log.info("notified", extra={"status": msg.status})


def _send_until_accepted(send: Send, to: str, subject: str, body: str, sleep: Callable[[float], None],
                         metrics: Metrics) -> None:
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
    retrying(_send_counted, send, to, subject, body, metrics)


def _send_counted(send: Send, to: str, subject: str, body: str, metrics: Metrics) -> None:
    try:
        send(to, subject, body)
    except MailUnavailable:
        metrics.emails_failed.labels("unavailable").inc()
        raise
    except PermanentError:
        metrics.emails_failed.labels("rejected").inc()
        raise


def _one_line(text: str) -> str:
    # Header values must not contain line breaks, and a name is no place for them in a body either.
    return _CONTROL.sub(" ", text).strip()[:200]
