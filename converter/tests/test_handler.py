"""Unit tests for converter.handler: validation, idempotent redelivery, attempts, planned fid, temp files."""

from __future__ import annotations

from pathlib import Path

import pytest

from converter import handler
from converter.convert import MediaInfo
from converter.errors import PermanentError

JOB_ID = "0123456789abcdef0123456789abcdef"
VIDEO_FID = "65a1b2c3d4e5f60718293a4b"
OWNER = "alice@example.com"


class FakeFfmpeg:
    """Replaces probe/to_mp3 in the handler: records calls, writes a fake MP3, can raise."""

    def __init__(self, info: MediaInfo = MediaInfo(12.0, True, "mov,mp4", "aac")) -> None:
        self.info = info
        self.probed: list[Path] = []
        self.converted: list[tuple[Path, Path]] = []
        self.error: Exception | None = None

    def probe(self, src: Path) -> MediaInfo:
        assert src.exists()
        self.probed.append(src)
        return self.info

    def to_mp3(self, src, dst, options, on_progress=None, timeout_s=None):
        self.converted.append((src, dst))
        if self.error:
            raise self.error
        dst.write_bytes(b"ID3 fake mp3")
        if on_progress:
            on_progress(6.0)


@pytest.fixture
def ffmpeg(monkeypatch) -> FakeFfmpeg:
    fake = FakeFfmpeg()
    monkeypatch.setattr(handler, "probe", fake.probe)
    monkeypatch.setattr(handler, "to_mp3", fake.to_mp3)
    return fake


@pytest.fixture
def run(jobs, videos, mp3s, tmp_path):
    work_dir = tmp_path / "work"
    work_dir.mkdir()

    def run(message, max_attempts=3):
        return handler.handle(message, jobs=jobs, videos=videos, mp3s=mp3s, work_dir=work_dir,
                              max_attempts=max_attempts)
    run.work_dir = work_dir
    return run


@pytest.mark.parametrize(("change", "error"), [
    ({"job_id": None}, "message field 'job_id' is missing or not a 32-character hex id"),
    ({"job_id": "x" * 32}, "message field 'job_id' is missing or not a 32-character hex id"),
    ({"job_id": 123}, "message field 'job_id' is missing or not a 32-character hex id"),
    ({"video_fid": "65a1b2c3"}, "message field 'video_fid' is missing or not a 24-character hex file id"),
    ({"video_fid": ["65a1b2c3d4e5f60718293a4b"]},
     "message field 'video_fid' is missing or not a 24-character hex file id"),
    ({"username": ""}, "message field 'username' is missing or not a non-empty string"),
    ({"username": 7}, "message field 'username' is missing or not a non-empty string"),
    ({"filename": "   "}, "message field 'filename' is missing or not a non-empty string"),
    ({"filename": None}, "message field 'filename' is missing or not a non-empty string"),
])
def test_bad_messages_are_permanent_errors(run, message, ffmpeg, jobs, change, error):
    with pytest.raises(PermanentError) as caught:
        run(message(**change))
    assert str(caught.value) == error
    assert jobs.calls == [] and ffmpeg.converted == []


def test_message_that_is_not_an_object_is_permanent(run):
    with pytest.raises(PermanentError, match="not a JSON object"):
        run(["job_id"])


def test_success_converts_uploads_marks_done_and_deletes_video(run, message, ffmpeg, jobs, videos, mp3s):
    result = run(message(filename="C:\\Users\\al\\My Holiday.final.mp4"))

    job = jobs.docs[JOB_ID]
    fid = job["mp3_fid_planned"]
    assert result == {"job_id": JOB_ID, "video_fid": VIDEO_FID, "mp3_fid": fid, "username": OWNER,
                      "filename": "C:\\Users\\al\\My Holiday.final.mp4", "status": "done", "error": None}
    assert (job["status"], job["mp3_fid"], job["attempts"]) == ("done", fid, 1)
    assert mp3s.files[fid] == {"data": b"ID3 fake mp3", "filename": "My Holiday.final.mp3",
                               "metadata": {"owner": OWNER, "job_id": JOB_ID}}
    assert VIDEO_FID not in videos.files
    # Done is recorded before the source is deleted: a crash in between must not lose the video's result.
    assert jobs.calls[-1] == "mark_done" and videos.calls[-1] == ("delete", VIDEO_FID)


def test_redelivery_of_done_job_republishes_without_converting(run, message, ffmpeg, jobs, mp3s, make_job):
    jobs.docs[JOB_ID] = make_job(status="done", mp3_fid="65a1b2c3d4e5f60718293fff", attempts=1)

    result = run(message())

    assert result["status"] == "done" and result["mp3_fid"] == "65a1b2c3d4e5f60718293fff"
    assert ffmpeg.converted == [] and ffmpeg.probed == [] and mp3s.calls == []
    assert "start_attempt" not in jobs.calls and jobs.docs[JOB_ID]["attempts"] == 1


def test_failed_job_stays_failed(run, message, ffmpeg, jobs, make_job):
    jobs.docs[JOB_ID] = make_job(status="failed", error="the video has no audio stream")
    with pytest.raises(PermanentError, match="^the video has no audio stream$"):
        run(message())
    assert ffmpeg.converted == []


def test_missing_job_is_permanent(run, message, ffmpeg, jobs):
    jobs.docs.clear()
    with pytest.raises(PermanentError, match="^job no longer exists$"):
        run(message())
    assert ffmpeg.converted == []


def test_message_for_another_video_is_permanent(run, message, ffmpeg):
    with pytest.raises(PermanentError, match="does not match"):
        run(message(video_fid="ffffffffffffffffffffffff"))
    assert ffmpeg.converted == []


def test_gives_up_after_max_attempts(run, message, ffmpeg, jobs, make_job):
    jobs.docs[JOB_ID] = make_job(status="converting", attempts=3)
    with pytest.raises(PermanentError, match="^gave up after 3 attempts$"):
        run(message(), max_attempts=3)
    assert jobs.docs[JOB_ID]["attempts"] == 4
    assert ffmpeg.converted == []


def test_last_allowed_attempt_still_converts(run, message, ffmpeg, jobs, make_job):
    jobs.docs[JOB_ID] = make_job(status="converting", attempts=2)
    assert run(message(), max_attempts=3)["status"] == "done"


def test_retry_after_failed_upload_reuses_the_planned_fid(run, message, ffmpeg, jobs, mp3s):
    mp3s.fail_replace.append(ConnectionError("MongoDB went away"))
    with pytest.raises(ConnectionError):
        run(message())
    fid = jobs.docs[JOB_ID]["mp3_fid_planned"]
    assert jobs.docs[JOB_ID]["status"] == "converting"

    result = run(message())

    assert result["mp3_fid"] == fid
    assert [call[1] for call in mp3s.calls if call[0] == "replace"] == [fid, fid]
    assert list(mp3s.files) == [fid]  # one MP3, overwritten, never duplicated
    assert jobs.docs[JOB_ID]["attempts"] == 2


def test_no_audio_stream_is_permanent_and_does_not_convert(run, message, ffmpeg):
    ffmpeg.info = MediaInfo(3.0, False, "mov,mp4", None)
    with pytest.raises(PermanentError, match="^the video has no audio stream$"):
        run(message())
    assert ffmpeg.converted == []


def test_missing_video_file_is_permanent(run, message, ffmpeg, videos):
    videos.files.clear()
    with pytest.raises(PermanentError, match="^the uploaded video no longer exists$"):
        run(message())


@pytest.mark.parametrize("error", [PermanentError("the file is not a readable video: junk"),
                                   OSError("disk full")])
def test_temp_files_are_removed_on_failure(run, message, ffmpeg, error, mp3s, jobs):
    ffmpeg.error = error
    with pytest.raises(type(error)):
        run(message())
    assert list(run.work_dir.iterdir()) == []
    assert mp3s.files == {} and jobs.docs[JOB_ID]["status"] == "converting"


def test_temp_files_are_removed_on_success(run, message, ffmpeg):
    run(message())
    src, _ = ffmpeg.converted[0]
    assert src.parent.parent == run.work_dir and JOB_ID in src.parent.name
    assert list(run.work_dir.iterdir()) == []


def test_fail_marks_job_failed_and_returns_failed_message(jobs, message):
    result = handler.fail(message(), PermanentError("the video has no audio stream"), jobs=jobs)

    assert result == {"job_id": JOB_ID, "video_fid": VIDEO_FID, "mp3_fid": None, "username": OWNER,
                      "filename": "holiday.mp4", "status": "failed", "error": "the video has no audio stream"}
    assert jobs.docs[JOB_ID]["status"] == "failed"
    assert jobs.docs[JOB_ID]["error"] == "the video has no audio stream"


@pytest.mark.parametrize("case", ["bad message", "job gone", "job done"])
def test_fail_announces_nothing_when_nobody_or_nothing_to_tell(jobs, message, make_job, case):
    msg = message()
    if case == "bad message":
        msg = {"job_id": "nope"}
    elif case == "job gone":
        jobs.docs.clear()
    else:
        jobs.docs[JOB_ID] = make_job(status="done", mp3_fid="65a1b2c3d4e5f60718293fff")
    assert handler.fail(msg, PermanentError("x"), jobs=jobs) is None
    if case == "job done":
        assert jobs.docs[JOB_ID]["status"] == "done"


@pytest.mark.parametrize(("filename", "expected"), [
    ("holiday.mp4", "holiday.mp3"),
    ("a.b.mkv", "a.b.mp3"),
    ("noext", "noext.mp3"),
    ("dir/sub/clip.webm", "clip.mp3"),
    ("C:\\videos\\clip.avi", "clip.mp3"),
    (".hidden", "hidden.mp3"),
    ("bad\nname\x00.mp4", "badname.mp3"),
    ("...", "audio.mp3"),
])
def test_mp3_filename(filename, expected):
    assert handler.mp3_filename(filename) == expected


def test_real_ffmpeg_produces_an_mp3(clip, run, message, videos, mp3s, jobs):
    """The real probe + ffmpeg on a generated clip; fakes only for MongoDB."""
    videos.files[VIDEO_FID] = {"data": clip.read_bytes()}

    result = run(message())

    stored = mp3s.files[result["mp3_fid"]]["data"]
    assert stored[:3] == b"ID3" or stored[0] == 0xFF  # ID3 tag or a bare MPEG audio frame sync
    assert jobs.docs[JOB_ID]["status"] == "done"
    assert list(run.work_dir.iterdir()) == []
