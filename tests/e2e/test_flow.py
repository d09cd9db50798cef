"""The design's flow driven through the gateway exactly as the README's curl commands do."""

from __future__ import annotations

import re

import pytest
import requests

from tests.e2e.conftest import bearer, make_clip, probe_duration
from tests.support import body_text

pytestmark = pytest.mark.e2e


def test_login_upload_email_download(stack, clip, tmp_path):
    admin_token = stack.login(*stack.admin)
    email, _, token = stack.create_user(admin_token)

    response = stack.upload(token, clip)
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]

    job = stack.wait_job(token, job_id)
    assert job["status"] == "done", job
    assert job["error"] is None
    fid = job["mp3_fid"]
    assert re.fullmatch(r"[0-9a-f]{24}", fid)

    mail = stack.smtp.wait_for(lambda m: email in m["To"])
    assert fid in body_text(mail)
    assert job_id in body_text(mail)

    download = requests.get(f"{stack.url}/download", params={"fid": fid}, headers=bearer(token), stream=True, timeout=60)
    assert download.status_code == 200, download.text
    assert download.headers["Content-Type"] == "audio/mpeg"
    assert 'filename="clip.mp3"' in download.headers["Content-Disposition"]
    mp3 = tmp_path / "out.mp3"
    with mp3.open("wb") as handle:
        for chunk in download.iter_content(64 * 1024):
            handle.write(chunk)
    assert int(download.headers["Content-Length"]) == mp3.stat().st_size

    fmt, duration = probe_duration(mp3)
    _, source_duration = probe_duration(clip)
    assert fmt == "mp3"
    assert abs(duration - source_duration) <= 0.2, (duration, source_duration)


def test_other_users_get_404_and_admins_see_all(stack, clip):
    admin_token = stack.login(*stack.admin)
    _, _, owner = stack.create_user(admin_token)
    _, _, stranger = stack.create_user(admin_token)

    job_id = stack.upload(owner, clip).json()["job_id"]
    fid = stack.wait_job(owner, job_id)["mp3_fid"]

    assert stack.job(stranger, job_id).status_code == 404
    assert stack.job(stranger, job_id).json() == {"error": stack.job(stranger, job_id).json()["error"]}
    stolen = requests.get(f"{stack.url}/download", params={"fid": fid}, headers=bearer(stranger), timeout=30)
    assert stolen.status_code == 404
    assert "error" in stolen.json()

    assert stack.job(admin_token, job_id).json()["mp3_fid"] == fid
    assert requests.get(f"{stack.url}/download", params={"fid": fid}, headers=bearer(admin_token), timeout=30).status_code == 200


def test_video_without_audio_fails_with_reason_and_mail(stack, tmp_path):
    admin_token = stack.login(*stack.admin)
    email, _, token = stack.create_user(admin_token)
    silent = make_clip(tmp_path / "silent.mp4", seconds=1, audio=False)

    job_id = stack.upload(token, silent).json()["job_id"]
    job = stack.wait_job(token, job_id)
    assert job["status"] == "failed"
    assert "audio" in job["error"]
    assert job["mp3_fid"] is None
    mail = stack.smtp.wait_for(lambda m: email in m["To"])
    assert "audio" in body_text(mail)
