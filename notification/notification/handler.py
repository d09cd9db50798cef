"""Notification's job: `mp3` message -> one email to the owner (ready or failed), then job `notified_at`."""

from __future__ import annotations

import itertools
import dataclasses
import logging
import re
import shlex
import time
import unicodedata
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from mp3core.contract import DONE, EXPIRED, Mp3Message, parse_mp3_message, stem
from mp3core.errors import PermanentError

from .jobs import Jobs
from .mailer import MailUnavailable
from .metrics import Metrics

log = logging.getLogger(__name__)

Send = Callable[[str, str, str], None]  # send(to, subject, body)

_SHELL_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")
# Not shown in a name: Cc controls (\r, \n, \x85 ...), Cf format characters, Zl/Zp line and paragraph
# separators, Cs lone surrogates (valid JSON, but no mail can carry them).
_NOT_SHOWN = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


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
           retry_s: float, give_up_s: float, sleep: Callable[[float], None] = time.sleep) -> dict[str, Any] | None:
    """Emails the job's owner once; returns the message when it must go to the back of the queue, else None.

    notified_at is set only after the SMTP server accepted the mail, so a crash between the two sends the
    mail again on redelivery: at worst one duplicate, never a lost notification.

    Bounded, so that one message never holds up the others (the loop handles one message at a time):
    - a mail that can never be delivered (recipient or content refused, an internationalised address for a
      server without SMTPUTF8, a mail that cannot be built) is given up at once: PermanentError;
    - SMTP unavailable is retried in place for retry_s, then the message is returned to be published again at
      the back of the queue (the consumer acks this delivery once the copy is stored), so the mails behind it
      get their turn; after give_up_s since its first failed delivery it is given up.
    Given up means: the job gets notify_failed_at and notify_error, a metric and a log line, and the message
    goes to the dead-letter queue.
    """
    msg = parse_mp3_message(message)
    job = jobs.get(msg.job_id)
    if job is None:
        # The owner deleted the job (and its MP3) before we got here: nothing to tell, nothing to retry.
        log.info("job no longer exists (deleted by its owner); dropping the message")
        return None
    if job.get("owner") != msg.username:
        raise PermanentError("the message's username is not the job's owner")
    if msg.status == DONE and job.get("status") == EXPIRED:
        log.info("the MP3 expired before its email went out; dropping the message")
        return None
    # What the mail says comes from the job, not from the message: anything that can publish to `mp3` must not
    # be able to announce another file, or a made-up failure, to the job's owner.
    if job.get("status") != msg.status or (msg.status == DONE and job.get("mp3_fid") != msg.mp3_fid):
        raise PermanentError(f"the message says {msg.status!r} but the job is {job.get('status')!r}"
                             + (" with another MP3" if job.get("status") == msg.status else ""))
    msg = dataclasses.replace(msg, filename=job.get("filename") or msg.filename,
                              error=job.get("error") if msg.status != DONE else None)
    if job.get("notified_at") is not None:
        log.info("already notified; skipping")
        return None
    if job.get("notify_failed_at") is not None:
        log.info("the email was given up earlier; skipping this copy of the message")
        return None
    try:
        subject, body = compose(msg, public_url, job.get("expires_at") if msg.status == DONE else None)
        _send_with_retries(send, msg.username, subject, body, sleep, metrics, retry_s)
    except PermanentError as exc:
        _give_up(jobs, msg.job_id, metrics, "rejected", str(exc))
        raise
    except MailUnavailable as exc:
        failing_s = jobs.record_unavailable(msg.job_id, str(exc))
        if failing_s >= give_up_s:
            reason = f"the mail server was unavailable for {failing_s / 3600:.1f} h: {exc}"
            _give_up(jobs, msg.job_id, metrics, "unavailable", reason)
            raise PermanentError(reason) from exc
        metrics.emails_deferred.inc()
        log.warning("SMTP still unavailable after %.0f s (%s); moving the message to the back of the queue",
                    retry_s, exc, extra={"failing_seconds": round(failing_s)})
        return message
    metrics.emails_sent.labels(msg.status).inc()
    jobs.mark_notified(msg.job_id)
    log.info("notified", extra={"status": msg.status})
    return None


def _give_up(jobs: Jobs, job_id: str, metrics: Metrics, reason: str, detail: str) -> None:
    metrics.emails_given_up.labels(reason).inc()
    jobs.mark_notify_failed(job_id, detail)
    log.error("giving up on the email; the message goes to the dead-letter queue: %s", detail,
              extra={"reason": reason})


def _send_with_retries(send: Send, to: str, subject: str, body: str, sleep: Callable[[float], None],
                       metrics: Metrics, retry_s: float) -> None:
    """Sends, retrying MailUnavailable with capped backoff (1, 2, 4 ... 60 s) while the waits fit in retry_s.

    The message stays unacked meanwhile, so a pod restart loses nothing.
    """
    waited, delay = 0.0, 1.0
    while True:
        try:
            _send_counted(send, to, subject, body, metrics)
            return
        except MailUnavailable as exc:
            if waited + delay > retry_s:
                raise
            log.warning("SMTP unavailable (%s); retrying in %.0f s", exc, delay)
            sleep(delay)
            waited, delay = waited + delay, min(delay * 2, 60.0)


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
    """text on one line, as a mail header needs it (Python refuses a header str.splitlines() would split, at
    U+2028 or \\x85 as much as at \\n): each run of _NOT_SHOWN characters becomes one space."""
    kept = (" " if hidden else "".join(chars)
            for hidden, chars in itertools.groupby(text, lambda c: unicodedata.category(c) in _NOT_SHOWN))
    return "".join(kept).strip()[:200]
