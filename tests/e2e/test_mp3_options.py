"""Better MP3s through the gateway, as curl would ask for them: trim, loudness, cover, tags, audio uploads and the
MP3 copy path; bad options are a 400 naming the field."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import requests

from tests.e2e.conftest import bearer
from tests.media import decoded_seconds, ffmpeg, integrated_loudness, probe

pytestmark = pytest.mark.e2e


def audio_md5(path: Path) -> str:
    return subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0", "-c", "copy",
                           "-f", "md5", "-"], capture_output=True, text=True, check=True, timeout=60).stdout.strip()


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("mp3-media")


@pytest.fixture(scope="module")
def talk(media) -> Path:
    """8 s of 640x360 H.264 video with a quiet tone and no title tag."""
    path = media / "my talk.final.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25:duration=8", "-f", "lavfi",
           "-i", "sine=frequency=300:duration=8,volume=0.05", "-c:v", "libx264", "-preset", "ultrafast",
           "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(path))
    return path


@pytest.fixture(scope="module")
def user(stack) -> str:
    _, _, token = stack.create_user(stack.login(*stack.admin))
    return token


def done(stack, token: str, response: requests.Response) -> dict:
    assert response.status_code == 202, response.text
    job = stack.wait_job(token, response.json()["job_id"], timeout=120)
    assert job["status"] == "done", job
    return job


def download(stack, token: str, job: dict, path: Path) -> Path:
    response = requests.get(f"{stack.url}/download", params={"fid": job["mp3_fid"]}, headers=bearer(token),
                            timeout=60)
    assert response.status_code == 200, response.text
    path.write_bytes(response.content)
    return path


def test_trim_normalize_and_cover_through_the_gateway(stack, user, talk, tmp_path):
    job = done(stack, user, stack.upload(user, talk, start="0:01.5", end="6.5", normalize="true", cover="true"))
    assert job["options"] == {"bitrate": None, "quality": None, "channels": None, "sample_rate": None,
                              "start": 1.5, "end": 6.5, "normalize": True, "cover": True}
    assert job["duration_s"] == pytest.approx(5.0, abs=0.1)
    mp3 = download(stack, user, job, tmp_path / "talk.mp3")

    assert decoded_seconds(mp3) == pytest.approx(5.0, abs=0.1)
    assert integrated_loudness(mp3) == pytest.approx(-16.0, abs=1.0)
    info = probe(mp3)
    [audio, cover] = info["streams"]
    assert (audio["codec_name"], cover["codec_name"], cover["width"]) == ("mp3", "mjpeg", 600)
    assert cover["disposition"]["attached_pic"] == 1
    assert info["format"]["tags"]["title"] == "my talk.final"  # the upload's name: the video has no title


def test_the_default_job_has_tags_and_nothing_else(stack, user, talk, tmp_path):
    job = done(stack, user, stack.upload(user, talk))
    mp3 = download(stack, user, job, tmp_path / "talk.mp3")
    info = probe(mp3)
    assert [s["codec_type"] for s in info["streams"]] == ["audio"]
    assert set(info["format"]["tags"]) == {"title", "encoder"}
    assert mp3.read_bytes()[:4] == b"ID3\x03"
    assert job["duration_s"] == pytest.approx(8.0, abs=0.1)


def test_audio_uploads_and_the_mp3_copy_path(stack, user, media, tmp_path):
    wav, source = media / "tone.wav", media / "song.mp3"
    ffmpeg("-f", "lavfi", "-i", "sine=duration=3", "-c:a", "pcm_s16le", str(wav))
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=550:duration=3", "-c:a", "libmp3lame", "-b:a", "128k",
           "-metadata", "title=A Song", "-metadata", "artist=Somebody", str(source))

    converted = download(stack, user, done(stack, user, stack.upload(user, wav)), tmp_path / "tone.mp3")
    assert decoded_seconds(converted) == pytest.approx(3.0, abs=0.1)
    assert probe(converted)["format"]["tags"]["title"] == "tone"

    copied = download(stack, user, done(stack, user, stack.upload(user, source)), tmp_path / "song.mp3")
    assert audio_md5(copied) == audio_md5(source)  # the same MPEG frames: copied, not encoded again
    info = probe(copied)
    assert info["streams"][0]["bit_rate"] == "128000"
    assert (info["format"]["tags"]["title"], info["format"]["tags"]["artist"]) == ("A Song", "Somebody")


def test_a_start_past_the_end_fails_the_job_with_the_reason(stack, user, talk):
    response = stack.upload(user, talk, start="20")
    assert response.status_code == 202, response.text
    job = stack.wait_job(user, response.json()["job_id"], timeout=120)
    assert (job["status"], job["error"]) == ("failed", "start (20 s) is past the end of the file (8 s)")


@pytest.mark.parametrize(("fields", "field", "error"), [
    ({"start": "-3"}, "start", "start must not be negative"),
    ({"start": "10", "end": "5"}, "end", "end must be after start"),
    ({"end": "1:75"}, "end", "end must be a time from 0 to 99:59:59.999: seconds (90 or 90.5) or hh:mm:ss[.fff] "
                             "(00:01:30.5)"),
    ({"cover": "yes"}, "cover", "cover must be true or false"),
])
def test_bad_options_are_400_naming_the_field(stack, user, talk, fields, field, error):
    response = stack.upload(user, talk, **fields)
    assert response.status_code == 400, response.text
    assert response.json() == {"error": error, "field": field}


def test_every_option_is_in_the_openapi_document_with_a_description(stack):
    form = requests.get(f"{stack.url}/openapi.json", timeout=30).json()["components"]["schemas"]["UploadForm"]
    for name in ("bitrate", "quality", "channels", "sample_rate", "start", "end", "normalize", "cover"):
        assert form["properties"][name]["description"], name
    assert form["properties"]["cover"]["default"] is False and form["properties"]["normalize"]["default"] is False
