"""Faults injected into the running system: every accepted job ends done (one MP3) or failed (a reason).

Tests that kill or restart a service, the SMTP server, RabbitMQ or FerretDB get a system of their own
(`fresh_stack`) and carry the `faults` marker: `make test` runs them on their own after everything else,
because RabbitMQ and FerretDB are shared by every test. The others share the module's `stack`."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from mp3core.contract import dead_letter_queue
from tests.e2e.conftest import bearer, make_clip
from tests.support import ROOT, STATE, body_text, wait_until

pytestmark = pytest.mark.e2e

RABBITMQCTL = ["/usr/lib/rabbitmq/bin/rabbitmqctl", "-n", os.environ.get("INFRA_RABBITMQ_NODE", "rabbit@localhost")]


@pytest.fixture(scope="session")
def long_clip(tmp_path_factory) -> Path:
    """15 minutes of audio behind a tiny video: a few seconds of ffmpeg work, long enough to interrupt."""
    return make_clip(tmp_path_factory.mktemp("media") / "long.mp4", seconds=900, size="64x64")


def assert_done_once(stack, token: str, job_id: str) -> dict:
    job = stack.wait_job(token, job_id, timeout=180)
    assert job["status"] == "done", job
    assert len(stack.files("mp3s", job_id)) == 1
    assert stack.files("videos", job_id) == []  # the source is deleted after success
    return job


def user(stack) -> tuple[str, str]:
    email, _, token = stack.create_user(stack.login(*stack.admin))
    return email, token


@pytest.mark.faults
def test_converter_killed_mid_conversion_is_finished_by_a_restarted_one(fresh_stack, long_clip):
    stack = fresh_stack
    email, token = user(stack)
    job_id = stack.upload(token, long_clip).json()["job_id"]
    stack.wait_job(token, job_id, timeout=60, statuses=("converting",))
    time.sleep(1.0)  # ffmpeg is running now
    stack.services["converter"].kill()

    stack.restart("converter")
    job = assert_done_once(stack, token, job_id)
    assert stack.orphan_chunks("mp3s") == 0
    mail = stack.smtp.wait_for(lambda m: email in m["To"])
    assert job["mp3_fid"] in body_text(mail)


@pytest.mark.faults
def test_conversion_longer_than_the_heartbeat_keeps_connection_and_message(fresh_stack, long_clip):
    stack = fresh_stack
    # A 1 s heartbeat: the broker drops a connection after ~2 s of silence, the conversion takes longer.
    converter_url = stack.services["converter"].env["RABBITMQ_URL"]  # its own broker user
    stack.restart("converter", RABBITMQ_URL=converter_url + "?heartbeat=1")
    _, token = user(stack)
    job_id = stack.upload(token, long_clip).json()["job_id"]
    assert_done_once(stack, token, job_id)
    assert stack.db["jobs"].find_one({"_id": job_id})["attempts"] == 1  # no redelivery happened


def rabbit(*args: str) -> None:
    subprocess.run([*RABBITMQCTL, *args], check=True, capture_output=True, timeout=120)


@pytest.mark.faults
def test_rabbitmq_restart_gives_503_then_everything_recovers(fresh_stack, clip, long_clip):
    stack = fresh_stack
    _, token = user(stack)
    in_flight = stack.upload(token, long_clip).json()["job_id"]
    stack.wait_job(token, in_flight, timeout=60, statuses=("converting",))
    rabbit("stop_app")
    try:
        refused = stack.upload(token, clip)
        assert refused.status_code == 503, refused.text
        assert "error" in refused.json()
    finally:
        rabbit("start_app")
    rabbit("await_startup")

    # Gateway and consumers reconnect by themselves.
    accepted = wait_until(lambda: (r := stack.upload(token, clip)).status_code == 202 and r, 60, "uploads accepted again", interval=1)
    for job_id in (in_flight, accepted.json()["job_id"]):
        assert_done_once(stack, token, job_id)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def ferretdb_restart() -> None:
    pid = int((STATE / "ferretdb" / "ferretdb.pid").read_text())
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not pid_alive(pid), 30, "FerretDB to exit")  # its port closes before it exits
    subprocess.run([str(ROOT / "scripts" / "infra.sh"), "up"], check=True, capture_output=True, timeout=300)


@pytest.mark.faults
def test_mongodb_restart_mid_flow(fresh_stack, clip, long_clip):
    stack = fresh_stack
    _, token = user(stack)
    job_ids = [stack.upload(token, long_clip).json()["job_id"], stack.upload(token, clip).json()["job_id"]]
    stack.wait_job(token, job_ids[0], timeout=60, statuses=("converting",))
    ferretdb_restart()
    for job_id in job_ids:
        assert_done_once(stack, token, job_id)


@pytest.mark.faults
def test_smtp_down_for_a_while_mail_is_delivered_when_it_is_back(fresh_stack, clip):
    stack = fresh_stack
    email, token = user(stack)
    stack.smtp.stop()
    job_id = stack.upload(token, clip).json()["job_id"]
    assert_done_once(stack, token, job_id)
    time.sleep(3)  # notification is retrying now
    assert not any(email in m["To"] for m in stack.smtp.messages)

    stack.smtp.start()
    mail = stack.smtp.wait_for(lambda m: email in m["To"], timeout=90)
    assert job_id in body_text(mail)


def corrupt(path: Path, tmp_path: Path) -> Path:
    """A valid MP4 header followed by garbage: passes the upload sniff, fails in ffmpeg."""
    out = tmp_path / "corrupt.mp4"
    out.write_bytes(path.read_bytes()[:64] + os.urandom(200_000))
    return out


def truncated(path: Path, tmp_path: Path) -> Path:
    out = tmp_path / "truncated.mp4"
    data = path.read_bytes()
    out.write_bytes(data[: len(data) // 3])
    return out


@pytest.mark.parametrize("make_bad", [corrupt, truncated], ids=["corrupt", "truncated"])
def test_poison_video_fails_with_reason_dead_letter_and_failure_mail(stack, clip, tmp_path, make_bad):
    email, token = user(stack)
    response = stack.upload(token, make_bad(clip, tmp_path))
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]

    job = stack.wait_job(token, job_id, timeout=60)
    assert job["status"] == "failed"
    assert job["error"] and "Traceback" not in job["error"]
    assert job["mp3_fid"] is None
    assert stack.files("mp3s", job_id) == []
    assert stack.db["jobs"].find_one({"_id": job_id})["attempts"] <= int(os.environ.get("MAX_ATTEMPTS", "3"))
    # The module's tests share the queues: keep every message drained, look for this job's.
    dead: list[dict] = []
    wait_until(lambda: dead.extend(stack.queue_messages(dead_letter_queue(stack.env["VIDEO_QUEUE"]))) or job_id in [m["job_id"] for m in dead],
               30, "the dead-lettered message")
    assert [m["job_id"] for m in dead].count(job_id) == 1
    mail = stack.smtp.wait_for(lambda m: email in m["To"])
    assert job_id in body_text(mail)
    assert "fail" in mail["Subject"].lower()


def test_redelivered_message_makes_no_second_mp3_and_no_second_mail(stack, clip):
    import json

    import pika

    email, token = user(stack)
    job_id = stack.upload(token, clip).json()["job_id"]
    assert_done_once(stack, token, job_id)
    stack.smtp.wait_for(lambda m: email in m["To"])
    job = stack.db["jobs"].find_one({"_id": job_id})

    # The same message again, as the broker would redeliver it after a lost ack.
    connection = pika.BlockingConnection(pika.URLParameters(stack.env["RABBITMQ_URL"]))
    message = {"job_id": job_id, "video_fid": job["video_fid"], "username": email, "filename": "clip.mp4"}
    connection.channel().basic_publish("", stack.env["VIDEO_QUEUE"], json.dumps(message).encode(), pika.BasicProperties(delivery_mode=2))
    connection.close()
    time.sleep(5)

    assert len(stack.files("mp3s", job_id)) == 1
    assert stack.job(token, job_id).json()["mp3_fid"] == job["mp3_fid"]
    assert sum(1 for m in stack.smtp.messages if email in m["To"]) == 1


def test_non_video_upload_is_rejected_at_the_door(stack, tmp_path):
    email, token = user(stack)
    chunks_before = stack.chunk_ids("videos")
    text = tmp_path / "notes.mp4"
    text.write_text("just some text, not a video\n" * 100)
    response = stack.upload(token, text)
    assert response.status_code == 415
    assert "video" in response.json()["error"]
    assert stack.db["videos.files"].count_documents({"metadata.owner": email}) == 0
    assert stack.db["jobs"].count_documents({"owner": email}) == 0
    assert stack.chunk_ids("videos") - chunks_before == set()  # no chunk of this upload was kept


def test_download_of_a_deleted_mp3_is_404_not_500(stack, clip):
    _, token = user(stack)
    job_id = stack.upload(token, clip).json()["job_id"]
    fid = assert_done_once(stack, token, job_id)["mp3_fid"]
    from bson import ObjectId
    import gridfs

    gridfs.GridFSBucket(stack.db, "mp3s").delete(ObjectId(fid))
    response = requests.get(f"{stack.url}/download", params={"fid": fid}, headers=bearer(token), timeout=30)
    assert response.status_code == 404
    assert "error" in response.json()
