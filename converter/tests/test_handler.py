"""Unit tests for converter.handler: validation, idempotent redelivery, attempts, planned fid, temp files."""

from __future__ import annotations

from pathlib import Path

import pytest

from converter import handler, id3
from converter.convert import InputInfo, Limits
from mp3core.errors import PermanentError
from converter.metrics import Metrics
from mp3core.contract import Options, mp3_filename
from prometheus_client import CollectorRegistry
from converter.storage import MissingFile

JOB_ID = "0123456789abcdef0123456789abcdef"
VIDEO_FID = "65a1b2c3d4e5f60718293a4b"
OWNER = "alice@example.com"


class FakeFfmpeg:
    """Replaces to_mp3 in the handler: records calls, reports the input and progress, writes a fake MP3, can raise."""

    def __init__(self) -> None:
        self.info: InputInfo | None = InputInfo("mov,mp4,m4a,3gp,3g2,mj2", 12.0)  # None: ffmpeg never says
        self.converted: list[tuple[Path, Path]] = []
        self.options: list[Options] = []
        self.calls: list[dict[str, object]] = []  # container and limits per call
        self.progress_seconds: list[float] = [6.0]  # out_time values ffmpeg "reports", in order
        self.error: Exception | None = None

    def to_mp3(self, src, dst, options, on_progress=None, *, on_input=None, container=None, limits=None):
        assert src.exists()
        self.converted.append((src, dst))
        self.options.append(options)
        self.calls.append({"container": container, "limits": limits})
        # Like the real to_mp3: the input first, then progress; an exception from either stops the conversion.
        if on_input and self.info:
            on_input(self.info)
        if on_progress:
            for seconds in self.progress_seconds:
                on_progress(seconds)
        if self.error:
            raise self.error
        dst.write_bytes(b"ID3 fake mp3")
        return self.info


class Clock:
    """A monotonic clock under test control; `step` advances it on every read."""

    def __init__(self, now: float = 100.0, step: float = 0.0) -> None:
        self.now, self.step = now, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


METRICS = Metrics.create(CollectorRegistry())
LIMITS = Limits(max_duration_s=600, timeout_s=120, cpu_s=60, memory_mb=400)


def counter(outcome: str) -> float:
    return METRICS.jobs.labels(outcome)._value.get()


@pytest.fixture
def ffmpeg(monkeypatch) -> FakeFfmpeg:
    fake = FakeFfmpeg()
    monkeypatch.setattr(handler, "to_mp3", fake.to_mp3)
    return fake


@pytest.fixture
def run(jobs, videos, mp3s, tmp_path):
    work_dir = tmp_path / "work"
    work_dir.mkdir()

    def run(message, max_attempts=3):
        return handler.handle(message, jobs=jobs, videos=videos, mp3s=mp3s, work_dir=work_dir,
                              max_attempts=max_attempts, metrics=METRICS, limits=LIMITS, clock=Clock(step=1.0))
    run.work_dir = work_dir
    return run


@pytest.mark.parametrize(("change", "error"), [
    ({"job_id": None}, "message field 'job_id' is missing or not a 32-character hex id"),
    ({"job_id": "x" * 32}, "message field 'job_id' is missing or not a 32-character hex id"),
    ({"job_id": 123}, "message field 'job_id' is missing or not a 32-character hex id"),
    ({"video_fid": "65a1b2c3"}, "message field 'video_fid' is missing or not a 24-character hex file id"),
    ({"video_fid": ["65a1b2c3d4e5f60718293a4b"]},
     "message field 'video_fid' is missing or not a 24-character hex file id"),
    ({"username": ""}, "message field 'username' is missing or not an email address"),
    ({"username": 7}, "message field 'username' is missing or not an email address"),
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
    before = counter("done")
    result = run(message(filename="C:\\Users\\al\\My Holiday.final.mp4"))

    job = jobs.docs[JOB_ID]
    fid = job["mp3_fid_planned"]
    assert result == {"job_id": JOB_ID, "video_fid": VIDEO_FID, "mp3_fid": fid, "username": OWNER,
                      "filename": "C:\\Users\\al\\My Holiday.final.mp4", "status": "done", "error": None}
    assert (job["status"], job["mp3_fid"], job["attempts"], job["progress"]) == ("done", fid, 1, 100)
    # The MP3's length is how far ffmpeg got (6 s of the 12 s input here), not what the input claimed.
    assert job["duration_s"] == 6.0 and job["expires_at"] is not None
    stored = mp3s.files[fid]
    assert (stored["filename"], stored["metadata"]) == ("My Holiday.final.mp3", {"owner": OWNER, "job_id": JOB_ID})
    # ffmpeg's output, behind an ID3v2.3 tag titled after the uploaded file (this source had no title).
    frames, size = id3.read_tag(stored["data"])
    assert stored["data"][size:] == b"ID3 fake mp3"
    assert [(f.id, id3.decode_text(f.data)) for f in frames] == [("TIT2", ["My Holiday.final"])]
    assert VIDEO_FID not in videos.files
    # Done is recorded before the source is deleted: a crash in between must not lose the video's result.
    assert jobs.calls[-1] == "mark_done" and videos.calls[-1] == ("delete", VIDEO_FID)
    assert counter("done") == before + 1


def test_redelivery_of_done_job_republishes_without_converting(run, message, ffmpeg, jobs, mp3s, make_job):
    jobs.docs[JOB_ID] = make_job(status="done", mp3_fid="65a1b2c3d4e5f60718293fff", attempts=1)

    result = run(message())

    assert result["status"] == "done" and result["mp3_fid"] == "65a1b2c3d4e5f60718293fff"
    assert ffmpeg.converted == [] and mp3s.calls == []
    assert "start_attempt" not in jobs.calls and jobs.docs[JOB_ID]["attempts"] == 1


def test_failed_job_stays_failed(run, message, ffmpeg, jobs, make_job):
    jobs.docs[JOB_ID] = make_job(status="failed", error="the video has no audio stream")
    with pytest.raises(PermanentError, match="^the video has no audio stream$"):
        run(message())
    assert ffmpeg.converted == []


def test_default_options_when_the_message_has_none(run, message, ffmpeg):
    run(message())
    assert ffmpeg.options == [Options()]


def test_message_options_reach_ffmpeg(run, message, ffmpeg):
    run(message(options={"bitrate": None, "quality": 3, "channels": 1, "sample_rate": 48000}))
    assert ffmpeg.options == [Options(quality=3, channels=1, sample_rate=48000)]


@pytest.mark.parametrize(("options", "error"), [
    ({"bitrate": 100}, "bitrate must be one of"),
    ({"bitrate": 128, "quality": 2}, "send either bitrate (constant) or quality (variable bit rate), not both"),
    ({"speed": 2}, "unknown option 'speed'"),
])
def test_bad_options_fail_the_job_with_the_reason(run, message, ffmpeg, jobs, options, error):
    with pytest.raises(PermanentError) as caught:
        run(message(options=options))
    assert str(caught.value).startswith(error) and ffmpeg.converted == []
    # The consumer then calls fail(): the job is marked failed and the user is told why.
    failed = handler.fail(message(options=options), caught.value, jobs=jobs, metrics=METRICS)
    assert failed["status"] == "failed" and failed["error"].startswith(error)
    assert jobs.docs[JOB_ID]["status"] == "failed"


def test_job_deleted_before_conversion_is_dropped_quietly(run, message, ffmpeg, jobs, videos, mp3s):
    jobs.docs.clear()
    before = counter("dropped")

    assert run(message()) is None  # ack, publish nothing: no DLQ, no email

    assert ffmpeg.converted == [] and mp3s.calls == [] and videos.calls == []
    assert counter("dropped") == before + 1


def test_expired_job_redelivered_is_dropped(run, message, ffmpeg, jobs, make_job, mp3s):
    jobs.docs[JOB_ID] = make_job(status="expired", mp3_fid=None, attempts=1)
    assert run(message()) is None
    assert ffmpeg.converted == [] and mp3s.calls == [] and jobs.docs[JOB_ID]["status"] == "expired"


def test_job_deleted_while_converting_stops_ffmpeg_and_deletes_the_mp3(run, message, ffmpeg, jobs, mp3s):
    ffmpeg.progress_seconds = [1.0, 3.0, 6.0, 9.0]
    seen: list[int] = []

    def owner_deletes_the_job(percent):
        seen.append(percent)
        if len(seen) == 2:
            jobs.docs.clear()
    jobs.on_progress = owner_deletes_the_job
    ffmpeg.error = AssertionError("ffmpeg must be stopped before it finishes")
    before = counter("dropped")

    assert run(message()) is None

    assert seen == [8, 25]  # the write that found no job was the last
    planned = [call[1] for call in mp3s.calls if call[0] == "delete"]
    assert len(planned) == 1 and mp3s.files == {}
    assert counter("dropped") == before + 1
    assert list(run.work_dir.iterdir()) == []


def test_job_deleted_after_the_upload_deletes_the_mp3(run, message, ffmpeg, jobs, mp3s):
    real_replace = mp3s.replace

    def replace_then_owner_deletes(*args, **kwargs):
        real_replace(*args, **kwargs)
        jobs.docs.clear()
    mp3s.replace = replace_then_owner_deletes

    assert run(message()) is None

    assert mp3s.files == {}  # it was stored, then removed again
    assert [call[0] for call in mp3s.calls] == ["replace", "delete"]


def test_a_job_another_attempt_failed_meanwhile_stays_failed_and_nothing_is_published(run, message, ffmpeg, jobs,
                                                                                      mp3s, videos):
    # A redelivery while this attempt still ran: the other attempt gave up (and announced it) first.
    real_replace = mp3s.replace

    def replace_then_the_other_attempt_gives_up(*args, **kwargs):
        real_replace(*args, **kwargs)
        jobs.docs[JOB_ID].update(status="failed", error="gave up after 3 attempts")
    mp3s.replace = replace_then_the_other_attempt_gives_up
    before = counter("dropped")

    assert run(message()) is None

    job = jobs.docs[JOB_ID]
    assert (job["status"], job["error"], job.get("mp3_fid")) == ("failed", "gave up after 3 attempts", None)
    assert mp3s.files == {} and [call[0] for call in mp3s.calls] == ["replace", "delete"]
    assert ("delete", VIDEO_FID) not in videos.calls  # the failed job's video is the reaper's to remove
    assert counter("dropped") == before + 1


def test_a_job_another_attempt_finished_meanwhile_is_announced_again_not_redone(run, message, ffmpeg, jobs, mp3s):
    # Both attempts wrote the job's one planned MP3; the second to finish finds it done and says so again (the
    # notification service mails once per job).
    real_replace = mp3s.replace

    def replace_then_the_other_attempt_finishes(*args, **kwargs):
        real_replace(*args, **kwargs)
        jobs.docs[JOB_ID].update(status="done", mp3_fid=jobs.docs[JOB_ID]["mp3_fid_planned"])
    mp3s.replace = replace_then_the_other_attempt_finishes

    result = run(message())

    fid = jobs.docs[JOB_ID]["mp3_fid_planned"]
    assert result["status"] == "done" and result["mp3_fid"] == fid and fid in mp3s.files


def test_job_deleted_before_the_duration_is_stored_stops_ffmpeg(run, message, ffmpeg, jobs, mp3s):
    real_set_duration = jobs.set_duration

    def owner_deletes_then_set_duration(job_id, duration_s):
        jobs.docs.clear()
        return real_set_duration(job_id, duration_s)
    jobs.set_duration = owner_deletes_then_set_duration
    ffmpeg.error = AssertionError("ffmpeg must be stopped before it finishes")

    assert run(message()) is None
    assert "set_progress" not in jobs.calls and mp3s.files == {}
    assert list(run.work_dir.iterdir()) == []


def test_video_gone_because_the_job_was_deleted_is_dropped_not_failed(run, message, ffmpeg, jobs, videos, mp3s):
    def download_while_owner_deletes(fid, dst):
        jobs.docs.clear()
        videos.files.clear()
        raise MissingFile(fid)
    videos.download_to = download_while_owner_deletes

    assert run(message()) is None
    assert ffmpeg.converted == [] and mp3s.files == {}


def test_downloaded_and_input_are_logged(run, message, ffmpeg, caplog):
    caplog.set_level("INFO", logger="converter.handler")
    run(message())
    logged = {record.getMessage(): record for record in caplog.records}
    assert logged["downloaded"].bytes == len(b"not really a video")
    assert (logged["input read"].duration_s, logged["input read"].format) == (12.0, "mov,mp4,m4a,3gp,3g2,mj2")
    assert list(logged).index("downloaded") < list(logged).index("input read") < list(logged).index("converted")


@pytest.mark.parametrize("container", ["video/mp4", "video/ogg", None])
def test_ffmpeg_reads_the_container_the_gateway_recognised_under_the_configured_limits(run, message, ffmpeg,
                                                                                      container):
    run(message(container=container))
    assert ffmpeg.calls == [{"container": container, "limits": LIMITS}]


def test_the_mp3_s_owner_is_the_job_s(run, message, ffmpeg, jobs, mp3s):
    run(message())
    (stored,) = mp3s.files.values()
    assert stored["metadata"] == {"owner": OWNER, "job_id": JOB_ID} == {"owner": jobs.docs[JOB_ID]["owner"],
                                                                        "job_id": JOB_ID}


@pytest.mark.parametrize("make_done", [False, True])
def test_a_message_naming_another_user_is_refused_and_changes_nothing(run, message, ffmpeg, jobs, videos, mp3s,
                                                                      make_job, make_done):
    # Anything that can publish to `video` could otherwise have Bob's MP3 stored and announced as Mallory's.
    if make_done:
        jobs.docs[JOB_ID] = make_job(status="done", mp3_fid="65a1b2c3d4e5f60718293a4c")
    before = dict(jobs.docs[JOB_ID])
    forged = message(username="mallory@example.com")
    with pytest.raises(PermanentError, match="^the message's username is not the job's owner$") as caught:
        run(forged)
    assert ffmpeg.converted == [] and mp3s.calls == [] and videos.calls == []
    assert jobs.docs[JOB_ID] == before

    # Dead-lettered without failing the owner's job or telling the address the message names.
    assert handler.fail(forged, caught.value, jobs=jobs, metrics=METRICS) is None
    assert jobs.docs[JOB_ID] == before


def test_progress_is_written_during_conversion_and_done_sets_100(run, message, ffmpeg, jobs):
    ffmpeg.progress_seconds = [1.2, 3.0, 6.0, 12.0]
    run(message())
    # The run clock advances 1 s per read, so every block may write; 12 s of 12 is still only 99 until done.
    assert jobs.progress_writes == [10, 25, 50, 99]
    assert jobs.docs[JOB_ID]["progress"] == 100


def test_progress_write_failure_does_not_fail_the_conversion(run, message, ffmpeg, jobs):
    jobs.progress_error = ConnectionError("MongoDB went away")
    assert run(message())["status"] == "done"
    assert jobs.docs[JOB_ID]["status"] == "done"


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
    # Only the first attempt may skip removing leftovers: the second must delete what the first left.
    assert mp3s.fresh == [True, False]
    assert list(mp3s.files) == [fid]  # one MP3, overwritten, never duplicated
    assert jobs.docs[JOB_ID]["attempts"] == 2


@pytest.mark.parametrize("info", [InputInfo("matroska,webm", None), None])
def test_unknown_duration_converts_without_percentages(run, message, ffmpeg, jobs, info):
    ffmpeg.info = info  # "Duration: N/A", or ffmpeg never described the input
    ffmpeg.progress_seconds = [1.0, 6.0, 12.0]
    assert run(message())["status"] == "done"
    assert jobs.progress_writes == [] and jobs.docs[JOB_ID]["progress"] == 100
    assert jobs.docs[JOB_ID]["duration_s"] == 12.0  # the MP3's, known once ffmpeg is through


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
    before = counter("failed")
    result = handler.fail(message(), PermanentError("the video has no audio stream"), jobs=jobs, metrics=METRICS)

    assert result == {"job_id": JOB_ID, "video_fid": VIDEO_FID, "mp3_fid": None, "username": OWNER,
                      "filename": "holiday.mp4", "status": "failed", "error": "the video has no audio stream"}
    assert jobs.docs[JOB_ID]["status"] == "failed"
    assert jobs.docs[JOB_ID]["error"] == "the video has no audio stream"
    assert counter("failed") == before + 1


@pytest.mark.parametrize("case", ["bad message", "job gone", "job done", "job expired"])
def test_fail_announces_nothing_when_nobody_or_nothing_to_tell(jobs, message, make_job, case):
    msg = message()
    if case == "bad message":
        msg = {"job_id": "nope"}
    elif case == "job gone":
        jobs.docs.clear()
    elif case == "job done":
        jobs.docs[JOB_ID] = make_job(status="done", mp3_fid="65a1b2c3d4e5f60718293fff")
    else:
        jobs.docs[JOB_ID] = make_job(status="expired", mp3_fid=None)
    before = counter("failed")
    assert handler.fail(msg, PermanentError("x"), jobs=jobs, metrics=METRICS) is None
    assert counter("failed") == before
    if case in ("job done", "job expired"):
        assert jobs.docs[JOB_ID]["status"] == case.split()[1]


def test_fail_marks_the_job_failed_even_when_the_message_cannot_address_a_notice(jobs, message):
    """A username the contract refuses: no email can be sent, but the job must not stay `queued`."""
    before = counter("failed")
    msg = message(username="not an address")
    assert handler.fail(msg, PermanentError("message field 'username' is missing or not an email address"),
                        jobs=jobs, metrics=METRICS) is None
    assert jobs.docs[JOB_ID]["status"] == "failed" and "username" in jobs.docs[JOB_ID]["error"]
    assert counter("failed") == before + 1


# --- ProgressWriter: the throttle and ordering rules of the job's progress field ---------------------------

class Recorder:
    def __init__(self, exists: bool = True, error: Exception | None = None) -> None:
        self.writes: list[int] = []
        self.durations: list[float | None] = []
        self.exists, self.error = exists, error

    def set_duration(self, job_id, duration_s):
        self.durations.append(duration_s)
        return self.exists

    def set_progress(self, job_id, percent):
        if self.error:
            raise self.error
        self.writes.append(percent)
        return self.exists


def writer(store, clock, duration=100.0):
    write = handler.ProgressWriter(store, JOB_ID, clock)
    write.input_known(InputInfo("mov,mp4,m4a,3gp,3g2,mj2", duration))
    return write


def test_progress_writes_at_most_twice_a_second():
    store, clock = Recorder(), Clock()
    write = writer(store, clock)
    for t, seconds in [(0.0, 1), (0.2, 2), (0.49, 3), (0.5, 4), (0.7, 5), (1.0, 6), (1.1, 7), (1.6, 8)]:
        clock.now = 100.0 + t
        write(seconds)
    assert store.writes == [1, 4, 6, 8]


def test_progress_never_goes_backwards_and_stays_below_100():
    store, clock = Recorder(), Clock(step=1.0)
    write = writer(store, clock)
    for seconds in [50, 40, 50, 60, 150, 100]:
        write(seconds)
    assert store.writes == [50, 60, 99]


def test_progress_without_a_duration_writes_nothing():
    store = Recorder()
    write = writer(store, Clock(step=1.0), duration=None)
    write(5.0)
    assert store.writes == [] and store.durations == [None]


def test_progress_waits_for_the_duration_then_counts_from_it():
    store = Recorder()
    write = handler.ProgressWriter(store, JOB_ID, Clock(step=1.0))
    write(5.0)  # ffmpeg has not described the input yet
    write.input_known(InputInfo("mov,mp4,m4a,3gp,3g2,mj2", 20.0))
    write(5.0)
    write(10.0)
    assert store.durations == [20.0] and store.writes == [25, 50]


def test_duration_for_a_job_that_is_gone_raises_job_gone():
    write = handler.ProgressWriter(Recorder(exists=False), JOB_ID, Clock(step=1.0))
    with pytest.raises(handler.JobGone):
        write.input_known(InputInfo("mov,mp4,m4a,3gp,3g2,mj2", 20.0))


def test_progress_write_that_finds_no_job_raises_job_gone():
    store = Recorder()
    write = writer(store, Clock(step=1.0))
    store.exists = False  # the owner deleted the job after its duration was stored
    with pytest.raises(handler.JobGone):
        write(10.0)


def test_progress_write_failure_pauses_the_writes(caplog):
    store, clock = Recorder(error=ConnectionError("refused")), Clock()
    write = writer(store, clock)
    write(10.0)
    store.error = None
    clock.now += 10.0
    write(20.0)  # still within the pause after the failure
    clock.now += handler.PROGRESS_PAUSE_S
    write(30.0)
    assert store.writes == [30]
    assert "could not record progress" in caplog.text


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
    assert mp3_filename(filename) == expected


def test_real_ffmpeg_produces_an_mp3(clip, run, message, videos, mp3s, jobs):
    """The real ffmpeg on a generated clip; fakes only for MongoDB."""
    videos.files[VIDEO_FID] = {"data": clip.read_bytes()}

    result = run(message())

    stored = mp3s.files[result["mp3_fid"]]["data"]
    assert stored[:3] == b"ID3" or stored[0] == 0xFF  # ID3 tag or a bare MPEG audio frame sync
    assert jobs.docs[JOB_ID]["status"] == "done"
    assert jobs.docs[JOB_ID]["duration_s"] == pytest.approx(1.0, abs=0.05)  # as ffmpeg reported it
    assert list(run.work_dir.iterdir()) == []


def test_real_ffmpeg_on_a_video_without_audio_fails_permanently(silent_clip, run, message, videos, mp3s, jobs):
    videos.files[VIDEO_FID] = {"data": silent_clip.read_bytes()}

    with pytest.raises(PermanentError, match="^the video has no audio stream$"):
        run(message())

    assert mp3s.files == {} and jobs.docs[JOB_ID]["status"] == "converting"  # the consumer calls fail() next
    assert list(run.work_dir.iterdir()) == []
