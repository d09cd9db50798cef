"""Unit tests for notification.handler: validation, mail content, idempotence, bounded SMTP retry policy."""

from __future__ import annotations

import logging
from datetime import datetime, timezone

import pytest

from notification import handler
from mp3core.errors import PermanentError
from notification.mailer import MailUnavailable
from notification.metrics import Metrics
from prometheus_client import CollectorRegistry

METRICS = Metrics.create(CollectorRegistry())
EMAILS_FAILED, EMAILS_SENT = METRICS.emails_failed, METRICS.emails_sent
DEFERRED, GIVEN_UP = METRICS.emails_deferred, METRICS.emails_given_up
RETRY_S, GIVE_UP_S = 120, 86400

JOB_ID = "0123456789abcdef0123456789abcdef"
OWNER = "alice@example.com"
MP3_FID = "65a1b2c3d4e5f60718293a4b"
PUBLIC_URL = "http://localhost:8080"


def done(**changes):
    message = {"job_id": JOB_ID, "video_fid": "65a1b2c3d4e5f60718290000", "mp3_fid": MP3_FID,
               "username": OWNER, "filename": "holiday.mp4", "status": "done", "error": None}
    message.update(changes)
    return message


def failed(**changes):
    return done(**{"mp3_fid": None, "status": "failed", "error": "the video has no audio stream", **changes})


@pytest.fixture
def run(jobs, send):
    sleeps: list[float] = []

    def run(message, *, job_as_is=False):
        doc = jobs.docs.get(message.get("job_id") if isinstance(message, dict) else None)
        if doc is not None and not job_as_is:
            # The job as the converter left it when it published this message (what the mail is built from).
            doc.update({key: message.get(key) for key in ("status", "mp3_fid", "filename", "error")})
        return handler.handle(message, jobs=jobs, send=send, public_url=PUBLIC_URL, metrics=METRICS,
                              retry_s=RETRY_S, give_up_s=GIVE_UP_S, sleep=sleeps.append)
    run.sleeps = sleeps
    return run


@pytest.mark.parametrize(("message", "error"), [
    (done(job_id="short"), "message field 'job_id' is missing or not a 32-character hex id"),
    (done(job_id=None), "message field 'job_id' is missing or not a 32-character hex id"),
    (done(username="not-an-address"), "message field 'username' is missing or not an email address"),
    (done(username="a@b.c, victim@evil.example"), "message field 'username' is missing or not an email address"),
    # The address is single-quoted in the emailed login command: a quote could end the quoting.
    (done(username="a@b.c\nBcc: victim@evil.example"),
     "message field 'username' is missing or not an email address"),
    (done(filename=""), "message field 'filename' is missing or not a non-empty string"),
    (done(filename=3), "message field 'filename' is missing or not a non-empty string"),
    (done(status="converting"), "message field 'status' is missing or not 'done' or 'failed'"),
    (done(mp3_fid=None), "message field 'mp3_fid' is missing or not a 24-character hex file id"),
    (done(mp3_fid="../../etc"), "message field 'mp3_fid' is missing or not a 24-character hex file id"),
    (failed(error=42), "message field 'error' is missing or not a string or null"),
    (["not", "an", "object"], "message is not a JSON object"),
])
def test_bad_messages_are_permanent_errors(run, send, jobs, message, error):
    with pytest.raises(PermanentError) as caught:
        run(message)
    assert str(caught.value) == error
    assert send.attempts == 0 and jobs.calls == []


def test_done_mail(run, send, jobs):
    sent_before = EMAILS_SENT.labels("done")._value.get()
    run(done())

    [(to, subject, body)] = send.sent
    assert to == OWNER
    assert subject == "Your MP3 is ready: holiday.mp4"
    assert '"holiday.mp4"' in body and f"Job id:          {JOB_ID}" in body and f"MP3 file id:     {MP3_FID}" in body
    lines = body.splitlines()
    # Ready to paste: log in (curl asks for the password), then download into "<original stem>.mp3".
    assert f"  TOKEN=$(curl -s -X POST -u {OWNER} \"{PUBLIC_URL}/login\")" in lines
    assert (f'  curl -H "Authorization: Bearer $TOKEN" -o "holiday.mp3" '
            f'"{PUBLIC_URL}/download?fid={MP3_FID}"') in lines
    assert "Available until" not in body  # the job has no expires_at
    assert jobs.docs[JOB_ID]["notified_at"] is not None
    assert EMAILS_SENT.labels("done")._value.get() == sent_before + 1


def test_done_mail_says_until_when_the_mp3_is_kept(run, send, jobs):
    jobs.docs[JOB_ID]["expires_at"] = datetime(2024, 5, 2, 12, 30, tzinfo=timezone.utc)
    run(done())
    assert "Available until: 2024-05-02 12:30 UTC (then it is deleted)" in send.sent[0][2]


@pytest.mark.parametrize("owner", [OWNER, "o'neil@example.com", "x'$(id)'@evil.example"])
def test_done_mail_commands_run_in_a_shell_as_intended(run, send, jobs, tmp_path, owner):
    """The two pasted lines, run by sh with a fake curl: each argument arrives intact, nothing expands."""
    import shutil
    import subprocess

    if not shutil.which("sh"):
        pytest.skip("needs sh")
    jobs.docs[JOB_ID]["owner"] = owner
    run(done(filename="My $(id) `x` holiday.mp4", username=owner))
    commands = [line.strip() for line in send.sent[0][2].splitlines() if "curl" in line]
    fake = tmp_path / "curl"
    fake.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done >> "$ARGS_LOG"\necho TKN\n')
    fake.chmod(0o755)
    log = tmp_path / "args"
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "ARGS_LOG": str(log)}
    subprocess.run(["sh", "-c", "\n".join(commands)], env=env, check=True, timeout=10)
    assert log.read_text().splitlines() == [
        "-s", "-X", "POST", "-u", owner, f"{PUBLIC_URL}/login",
        "-H", "Authorization: Bearer TKN", "-o", "My _id_ _x_ holiday.mp3", f"{PUBLIC_URL}/download?fid={MP3_FID}"]


def test_failed_mail(run, send):
    sent_before = EMAILS_SENT.labels("failed")._value.get()
    run(failed())

    [(to, subject, body)] = send.sent
    assert subject == "Your conversion failed: holiday.mp4"
    assert '"holiday.mp4"' in body and "Reason: the video has no audio stream" in body and JOB_ID in body
    assert "curl" not in body
    assert EMAILS_SENT.labels("failed")._value.get() == sent_before + 1


def test_failed_mail_without_reason(run, send):
    run(failed(error=None))
    assert "Reason: unknown error" in send.sent[0][2]


def test_hostile_filename_cannot_break_headers_or_the_shell_command(run, send):
    run(done(filename='x"; rm -rf ~; echo "$(id)`id`\nBcc: victim@evil.example.mp4'))

    [(_, subject, body)] = send.sent
    assert "\n" not in subject
    curl = next(line for line in body.splitlines() if "curl" in line and " -o " in line)
    output = curl.split('-o "')[1].split('"')[0]
    assert output.endswith(".mp3")
    assert not set(output) & set('"$`;\\\n')


def test_skips_when_already_notified(run, send, jobs):
    jobs.docs[JOB_ID]["notified_at"] = datetime(2024, 1, 1, tzinfo=timezone.utc)
    run(done())
    assert send.attempts == 0 and "mark_notified" not in jobs.calls


@pytest.mark.parametrize("message", [done(), failed()], ids=["done", "failed"])
def test_job_deleted_by_its_owner_is_dropped_quietly(run, send, jobs, message, caplog):
    caplog.set_level(logging.INFO, logger="notification.handler")
    jobs.docs.clear()
    assert run(message) is None  # returns normally: acked, not dead-lettered, no mail
    assert send.attempts == 0 and "mark_notified" not in jobs.calls
    assert "job no longer exists" in caplog.text


def test_message_for_someone_else_is_permanent(run, send):
    with pytest.raises(PermanentError, match="not the job's owner"):
        run(done(username="mallory@example.com"))
    assert send.attempts == 0


def test_smtp_outage_is_retried_in_place_with_capped_backoff_until_accepted(run, send, jobs):
    send.errors = [MailUnavailable("connection refused")] * 6

    assert run(done()) is None  # acked where it is

    assert run.sleeps == [1, 2, 4, 8, 16, 32]
    assert len(send.sent) == 1 and jobs.docs[JOB_ID]["notified_at"] is not None
    assert "record_unavailable" not in jobs.calls


def test_smtp_outage_longer_than_the_retry_budget_moves_the_message_to_the_back(run, send, jobs, caplog):
    """The mails behind it get their turn: the handler hands the message back to be published again."""
    deferred = DEFERRED._value.get()
    send.errors = [MailUnavailable("connection refused")] * 100
    message = done()

    assert run(message) == message

    # 1+2+4+8+16+32 = 63 s waited; another 60 s would exceed the 120 s budget.
    assert run.sleeps == [1, 2, 4, 8, 16, 32] and send.attempts == 7
    job = jobs.docs[JOB_ID]
    assert job["notified_at"] is None and "notify_failed_at" not in job
    assert job["notify_attempts"] == 1 and job["notify_error"] == "connection refused"
    assert DEFERRED._value.get() == deferred + 1
    assert "moving the message to the back of the queue" in caplog.text


def test_an_email_undeliverable_for_give_up_seconds_is_given_up(run, send, jobs, caplog):
    given_up = GIVEN_UP.labels("unavailable")._value.get()
    send.errors = [MailUnavailable("SMTP 451 try later")] * 100
    assert run(done()) is not None  # first failed delivery: the clock starts
    jobs.advance(GIVE_UP_S - 1)
    assert run(done()) is not None  # not yet

    jobs.advance(1)
    with pytest.raises(PermanentError, match=r"unavailable for 24.0 h: SMTP 451 try later"):
        run(done())

    job = jobs.docs[JOB_ID]
    assert job["notify_failed_at"] == jobs.now and "SMTP 451" in job["notify_error"] and job["notified_at"] is None
    assert GIVEN_UP.labels("unavailable")._value.get() == given_up + 1
    assert [r.levelname for r in caplog.records if "giving up" in r.getMessage()] == ["ERROR"]


def test_a_copy_of_a_given_up_message_is_dropped(run, send, jobs):
    jobs.docs[JOB_ID].update(notify_failed_at=jobs.now, notify_error="550 no such user")
    assert run(done()) is None
    assert send.attempts == 0


def test_failed_sends_are_counted_by_reason(run, send):
    unavailable, rejected = EMAILS_FAILED.labels("unavailable"), EMAILS_FAILED.labels("rejected")
    before = unavailable._value.get(), rejected._value.get()
    send.errors = [MailUnavailable("connection refused")] * 2 + [PermanentError("550 no such user")]

    with pytest.raises(PermanentError):
        run(done())

    assert (unavailable._value.get(), rejected._value.get()) == (before[0] + 2, before[1] + 1)


def test_rejected_recipient_is_given_up_at_once_and_the_job_says_so(run, send, jobs, caplog):
    given_up = GIVEN_UP.labels("rejected")._value.get()
    send.errors = [PermanentError("the mail server rejected the recipient alice@example.com: 550 no such user")]

    with pytest.raises(PermanentError, match="550"):
        run(done())

    assert run.sleeps == [] and send.attempts == 1
    job = jobs.docs[JOB_ID]
    assert job["notified_at"] is None and job["notify_failed_at"] == jobs.now and "550" in job["notify_error"]
    assert GIVEN_UP.labels("rejected")._value.get() == given_up + 1
    assert "giving up on the email" in caplog.text


# Each of these makes Python's email package refuse a header (str.splitlines() splits there) or the encoder
# refuse the text: the name is shown without them, and the mail is built and sent.
@pytest.mark.parametrize("bad", ["\u2028", "\u2029", "\r", "\n", "\x85", "\x0b", "\x0c", "\x1c", "\x1e",
                                 "\ud800", "\u202e", "\u200b"])
@pytest.mark.parametrize("status", ["done", "failed"])
def test_a_filename_with_a_line_separator_or_format_character_still_makes_a_mail(jobs, bad, status):
    from notification.mailer import Mailer

    built = []
    mailer = Mailer("127.0.0.1", 25, sender="mp3converter@localhost")
    message = done(filename=f"a{bad}b.mp4") if status == "done" else failed(filename=f"a{bad}b.mp4",
                                                                            error=f"x{bad}y")
    jobs.docs[JOB_ID].update({key: message[key] for key in ("status", "mp3_fid", "filename", "error")})
    handler.handle(message, jobs=jobs, send=lambda *mail: built.append(mailer.build(*mail)), public_url=PUBLIC_URL,
                   metrics=METRICS, retry_s=RETRY_S, give_up_s=GIVE_UP_S, sleep=lambda s: None)
    [mail] = built
    assert mail["Subject"].endswith(": a b.mp4")
    assert '"a b.mp4"' in mail.get_content()


def test_notified_at_is_recorded_only_after_the_mail_was_accepted(run, send, jobs):
    send.errors = [RuntimeError("unexpected")]
    with pytest.raises(RuntimeError):
        run(done())
    assert jobs.docs[JOB_ID]["notified_at"] is None and run.sleeps == []


@pytest.mark.parametrize(("job", "message", "said"), [
    ({"status": "converting"}, done(), "the message says 'done' but the job is 'converting'"),
    ({"status": "done", "mp3_fid": "65a1b2c3d4e5f60718299999"}, done(), "with another MP3"),
    ({"status": "done", "mp3_fid": MP3_FID}, failed(), "the message says 'failed' but the job is 'done'"),
])
def test_a_message_that_contradicts_its_job_sends_nothing(run, send, jobs, job, message, said):
    jobs.docs[JOB_ID].update(job)
    with pytest.raises(PermanentError, match=said):
        run(message, job_as_is=True)
    assert send.sent == []


def test_the_mail_tells_the_job_s_file_name_and_reason_not_the_message_s(run, send, jobs):
    jobs.docs[JOB_ID].update(status="failed", mp3_fid=None, filename="talk.mp4", error="no audio stream")
    run(failed(filename="urgent-reset-your-password.mp4", error="visit http://evil.example"), job_as_is=True)
    [(_, subject, body)] = send.sent
    assert "talk.mp4" in subject and "no audio stream" in body
    assert "evil" not in body and "urgent" not in subject


def test_a_done_message_for_an_expired_job_is_dropped_quietly(run, send, jobs):
    jobs.docs[JOB_ID].update(status="expired", mp3_fid=None)
    assert run(done(), job_as_is=True) is None
    assert send.sent == []


def test_a_job_without_an_owner_mails_nobody(run, send, jobs):
    """The recipient must be the job's owner: a job that names none cannot vouch for any address."""
    jobs.docs[JOB_ID].pop("owner", None)
    with pytest.raises(PermanentError, match="not the job's owner"):
        run(done())
    assert send.sent == []
