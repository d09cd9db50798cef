"""Stopping a converter never fails the job in progress.

A pod's SIGTERM reaches the converter's own process only (ffmpeg runs in a session of its own): the converter takes
no new message and gives the conversion its grace period (SHUTDOWN_GRACE_SECONDS). A conversion that finishes in
time is done; one that does not is cut short with the converter, which is a transient outcome: the job stays
`converting`, its message goes back to the queue, nobody is told of a failure, and the next converter finishes it.
An ffmpeg stopped by SIGINT or SIGTERM (not the converter) is the same kind of outcome: the job is tried again.

Each test has a system of its own and touches no shared server, so none is marked `faults`."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Iterator

import pika
import pytest

from mp3core.contract import dead_letter_queue
from tests.e2e.conftest import Stack, make_clip, running_stack
from tests.support import RABBITMQ_URL, body_text, ffmpeg_children, process_running, wait_until

pytestmark = pytest.mark.e2e

GRACE_S = 1  # far shorter than what is left of the conversion below, on any machine


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    """30 minutes of audio behind a tiny video: seconds of ffmpeg work, so a stop lands mid-conversion."""
    return make_clip(tmp_path_factory.mktemp("media") / "long.mp4", seconds=1800, size="32x32")


@pytest.fixture
def stack(mysql_account, tmp_path) -> Iterator[Stack]:
    with running_stack(mysql_account, tmp_path, SHUTDOWN_GRACE_SECONDS=str(GRACE_S)) as own:
        yield own


def converting(stack: Stack, token: str, job_id: str) -> list[int]:
    """Waits until the converter's ffmpeg is past the start of this job; returns ffmpeg's pids."""
    wait_until(lambda: stack.job(token, job_id).json()["progress"] >= 1, 120, f"job {job_id} under way", interval=0.1)
    pid = stack.services["converter"].proc.pid
    return wait_until(lambda: ffmpeg_children(pid), 10, "the converter's ffmpeg")  # type: ignore[return-value]


def waiting_messages(queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    try:
        return connection.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        connection.close()


def mails_to(stack: Stack, email: str) -> list:
    return [m for m in list(stack.smtp.messages) if email in m["To"]]


def test_sigterm_past_the_grace_period_leaves_the_job_to_the_next_converter(stack, long_clip):
    email, _, token = stack.create_user(stack.login(*stack.admin))
    job_id = stack.upload(token, long_clip).json()["job_id"]
    ffmpegs = converting(stack, token, job_id)
    converter = stack.services["converter"].proc

    started = time.monotonic()
    os.kill(converter.pid, signal.SIGTERM)  # the converter's process only, as a kubelet signals a container
    assert converter.wait(GRACE_S + 15) == 0
    took = time.monotonic() - started
    assert GRACE_S <= took < GRACE_S + 10, f"the converter stopped after {took:.1f} s"
    wait_until(lambda: not any(process_running(pid) for pid in ffmpegs), 10, "ffmpeg to end with its converter")

    interrupted = stack.db["jobs"].find_one({"_id": job_id})
    assert interrupted["status"] == "converting" and not interrupted.get("error"), interrupted
    assert stack.files("mp3s", job_id) == []
    assert waiting_messages(stack.env["VIDEO_QUEUE"]) == 1  # back in the queue
    assert waiting_messages(dead_letter_queue(stack.env["VIDEO_QUEUE"])) == 0
    assert mails_to(stack, email) == []  # nobody was told it failed

    stack.restart("converter")
    job = stack.wait_job(token, job_id, timeout=240)
    assert job["status"] == "done", job
    assert len(stack.files("mp3s", job_id)) == 1
    assert stack.db["jobs"].find_one({"_id": job_id})["attempts"] == 2
    # The cut-short attempt's folder (the video, part of an MP3) went with the attempt that replaced it.
    wait_until(lambda: not list(Path(stack.env["WORK_DIR"]).glob(f"job-{job_id}-*")), 10, "no folder left for the job")
    stack.smtp.wait_for(lambda m: email in m["To"], timeout=60)
    time.sleep(2)  # a second notice would come right after the first
    mails = mails_to(stack, email)
    assert len(mails) == 1 and job["mp3_fid"] in body_text(mails[0])


def test_sigterm_with_time_enough_lets_the_conversion_finish(stack, long_clip):
    stack.restart("converter", SHUTDOWN_GRACE_SECONDS="120")
    email, _, token = stack.create_user(stack.login(*stack.admin))
    job_id = stack.upload(token, long_clip).json()["job_id"]
    converting(stack, token, job_id)
    converter = stack.services["converter"].proc

    os.kill(converter.pid, signal.SIGTERM)
    assert converter.wait(120) == 0
    job = stack.job(token, job_id).json()
    assert job["status"] == "done", job  # finished and settled before the converter left
    assert len(stack.files("mp3s", job_id)) == 1
    assert waiting_messages(stack.env["VIDEO_QUEUE"]) == 0
    mail = stack.smtp.wait_for(lambda m: email in m["To"], timeout=60)
    assert job["mp3_fid"] in body_text(mail)


def test_ffmpeg_stopped_by_a_signal_is_tried_again_not_failed(stack, long_clip):
    """ffmpeg catches SIGINT and SIGTERM and exits 255, 'Exiting normally, received signal N': whoever sent it (a
    process-group signal, an operator), that is no fault of the file."""
    email, _, token = stack.create_user(stack.login(*stack.admin))
    for sig in (signal.SIGINT, signal.SIGTERM):
        job_id = stack.upload(token, long_clip).json()["job_id"]
        for pid in converting(stack, token, job_id):
            os.kill(pid, sig)
        job = stack.wait_job(token, job_id, timeout=240)
        assert job["status"] == "done", job
        assert len(stack.files("mp3s", job_id)) == 1
        assert stack.db["jobs"].find_one({"_id": job_id})["attempts"] == 2
    assert waiting_messages(dead_letter_queue(stack.env["VIDEO_QUEUE"])) == 0
    stack.smtp.wait_for(lambda m: len(mails_to(stack, email)) == 2, timeout=60)
    time.sleep(2)
    assert len(mails_to(stack, email)) == 2  # one `done` notice per job, no failure notice
