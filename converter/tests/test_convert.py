"""Unit tests for converter.convert: command line, progress and log parsing, time limit, and real ffmpeg on tiny
generated clips."""

from __future__ import annotations

import io
import json
import random
import shutil
import subprocess
import threading
import time
import tracemalloc
from pathlib import Path

import pytest

from converter import convert
from converter.convert import ConversionTimeout, InputInfo
from mp3core.contract import CONTAINERS, Options, parse_options
from mp3core.errors import PermanentError

needs_ffmpeg = pytest.mark.skipif(not (shutil.which("ffmpeg") and shutil.which("ffprobe")),
                                  reason="ffmpeg/ffprobe not installed")


def test_default_command_is_cbr_192k_first_audio_stream(tmp_path):
    src, dst = tmp_path / "in", tmp_path / "out.mp3"
    # No container named (a message from before the field): any container demuxer the gateway accepts, no other.
    whitelist = ",".join(sorted(set(CONTAINERS.values())))
    assert convert.ffmpeg_args(src, dst) == [
        "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "level+info", "-nostats", "-progress", "pipe:1",
        "-y", "-format_whitelist", whitelist, "-protocol_whitelist", "file",
        "-i", str(src), "-vn", "-map", "0:a:0", "-t", "14402", "-fs", str(14400 * 40_000 + 1024 * 1024),
        "-map_metadata", "0", "-map_metadata", "0:s:a:0",  # it may be an Ogg file, whose tags are on its streams
        "-c:a", "libmp3lame", "-b:a", "192k", "-id3v2_version", "3", str(dst)]
    # Container demuxers only: none that opens other files or streams named in the input (issue: hostile media).
    assert set(whitelist.split(",")) <= {"asf", "avi", "flac", "flv", "matroska", "mov", "mp3", "mpeg", "mpegts",
                                         "ogg", "wav"}


def test_the_default_job_for_a_video_is_one_plain_conversion(tmp_path):
    args = convert.ffmpeg_args(tmp_path / "in", tmp_path / "out.mp3", container="video/mp4")
    assert args[args.index("-fs") + 2:] == ["-c:a", "libmp3lame", "-b:a", "192k", "-id3v2_version", "3",
                                            str(tmp_path / "out.mp3")]


@pytest.mark.parametrize(("container", "demuxer"), [("video/mp4", "mov"), ("video/x-matroska", "matroska"),
                                                    ("video/ogg", "ogg"), ("video/mp2t", "mpegts")])
def test_the_message_s_container_names_the_one_demuxer(tmp_path, container, demuxer):
    args = convert.ffmpeg_args(tmp_path / "in", tmp_path / "out.mp3", container=container)
    at = args.index("-i")
    assert args[at - 4:at] == ["-f", demuxer, "-protocol_whitelist", "file"]
    assert "-format_whitelist" not in args


def test_output_caps_follow_the_maximum_duration(tmp_path):
    args = convert.ffmpeg_args(tmp_path / "in", tmp_path / "out.mp3", limits=convert.Limits(max_duration_s=60))
    # 60 s at 320 kbit/s (the MP3 maximum, whatever the options) is 2.4 MB, plus a 1 MiB margin.
    assert args[args.index("-t") + 1] == "62" and args[args.index("-fs") + 1] == str(2_400_000 + 1024 * 1024)


def test_options_change_the_encoder_settings(tmp_path):
    args = convert.ffmpeg_args(tmp_path / "in", tmp_path / "out.mp3",
                               Options(quality=2, channels=1, sample_rate=44100))
    assert args[-11:] == ["-c:a", "libmp3lame", "-q:a", "2", "-ac", "1", "-ar", "44100", "-id3v2_version", "3",
                          str(tmp_path / "out.mp3")]
    assert "-b:a" not in args


def test_parsed_options_make_the_expected_command(tmp_path):
    args = convert.ffmpeg_args(tmp_path / "in", tmp_path / "out.mp3",
                               parse_options({"bitrate": 128, "channels": 1, "sample_rate": 48000}))
    assert args[-11:] == ["-c:a", "libmp3lame", "-b:a", "128k", "-ac", "1", "-ar", "48000", "-id3v2_version", "3",
                          str(tmp_path / "out.mp3")]


@pytest.mark.parametrize(("value", "seconds"), [
    ("00:00:01.500000", 1.5),
    ("01:02:03.250000", 3723.25),
    ("00:00:00.000000", 0.0),
    ("N/A", None),
    ("-00:00:00.023220", None),
    ("garbage", None),
    ("", None),
    ("aa:bb:cc", None),
    ("00:00:nan", None),   # a forged Duration line: float() takes these
    ("00:00:inf", None),
    ("00:00:-5", None),
    ("00:-1:00", None),
])
def test_parse_out_time(value, seconds):
    assert convert.parse_out_time(value) == seconds


def test_progress_times_yields_one_value_per_block():
    lines = ["bitrate=N/A\n", "out_time_us=N/A\n", "out_time=N/A\n", "progress=continue\n",
             "out_time_us=2000000\n", "out_time=00:00:02.000000\n", "speed=40x\n", "progress=continue\n",
             "out_time=00:00:04.100000\n", "progress=end\n"]
    assert list(convert.progress_times(lines)) == [2.0, 4.1]


def _probe_json(path: Path) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-print_format", "json", "-show_streams", str(path)],
                         capture_output=True, check=True, timeout=60).stdout
    return json.loads(out)


def test_to_mp3_converts_and_reports_progress(clip, tmp_path):
    dst = tmp_path / "out.mp3"
    progress: list[float] = []
    convert.to_mp3(clip, dst, on_progress=progress.append)

    stream = _probe_json(dst)["streams"][0]
    assert stream["codec_name"] == "mp3" and stream["bit_rate"] == "192000"
    assert progress and progress[-1] == pytest.approx(1.0, abs=0.2)


def test_to_mp3_reports_format_and_duration_once_before_the_progress(clip, tmp_path):
    events: list[object] = []
    info = convert.to_mp3(clip, tmp_path / "out.mp3", on_progress=events.append, on_input=events.append)

    assert info == InputInfo(format_name="mov,mp4,m4a,3gp,3g2,mj2", duration_s=pytest.approx(1.0, abs=0.05))
    assert events[0] == info and events.count(info) == 1
    assert all(isinstance(seconds, float) for seconds in events[1:]) and len(events) > 1


def test_the_input_is_reported_first_even_when_the_progress_pipe_is_read_sooner(clip, tmp_path, monkeypatch):
    # Two pipes, two threads: the stderr reader can fall behind the progress on stdout (seen in CI). Here it always
    # does, by a lot: the progress loop must still wait for the input's description before its first report.
    parse = convert._Stderr._parse

    def slow_parse(self, line: str) -> None:
        time.sleep(0.02)
        parse(self, line)

    monkeypatch.setattr(convert._Stderr, "_parse", slow_parse)
    events: list[object] = []
    info = convert.to_mp3(clip, tmp_path / "out.mp3", on_progress=events.append, on_input=events.append)

    assert info is not None and events[0] == info and events.count(info) == 1


def _mkv(path: Path, *, audio: bool, metadata: dict[str, str]) -> Path:
    """A Matroska clip written to a pipe, so the container holds no duration (ffmpeg says "Duration: N/A")."""
    args = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error",
            "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10:duration=1"]
    if audio:
        args += ["-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "aac"]
    for key, value in metadata.items():
        args += ["-metadata", f"{key}={value}"]
    args += ["-c:v", "mpeg4", "-shortest", "-f", "matroska", "pipe:1"]
    path.write_bytes(subprocess.run(args, capture_output=True, check=True, timeout=60).stdout)
    return path


# The file's own metadata is printed in ffmpeg's info log: none of it may pass for ffmpeg's header or errors.
TRAPS = {"title": "No space left on device", "comment": "x\n  Duration: 99:00:00.00, start: 0\n[error] junk",
         "Duration: 77:00:00.00, x": "y"}


@needs_ffmpeg
def test_to_mp3_unknown_duration_is_none_and_still_converts(tmp_path):
    src = _mkv(tmp_path / "streamed.mkv", audio=True, metadata=TRAPS)
    seen: list[InputInfo] = []
    progress: list[float] = []

    info = convert.to_mp3(src, tmp_path / "out.mp3", on_progress=progress.append, on_input=seen.append)

    assert seen == [info] and info == InputInfo(format_name="matroska,webm", duration_s=None)
    assert progress[-1] == pytest.approx(1.0, abs=0.2)


@needs_ffmpeg
def test_metadata_text_is_not_taken_for_an_error(tmp_path):
    src = _mkv(tmp_path / "silent.mkv", audio=False, metadata=TRAPS)
    with pytest.raises(PermanentError, match="^the video has no audio stream$"):  # not OSError (disk full)
        convert.to_mp3(src, tmp_path / "out.mp3")


def test_defaults_cap_channels_at_two_and_keep_the_source_rate(surround_clip, tmp_path):
    dst = tmp_path / "out.mp3"
    convert.to_mp3(surround_clip, dst)
    stream = _probe_json(dst)["streams"][0]
    assert (stream["channels"], stream["sample_rate"]) == (2, "22050")


@pytest.mark.parametrize(("options", "expected"), [
    (Options(bitrate=96, channels=1, sample_rate=48000), {"channels": 1, "sample_rate": "48000",
                                                                "bit_rate": "96000"}),
    (Options(quality=9, channels=2, sample_rate=22050), {"channels": 2, "sample_rate": "22050"}),
])
def test_to_mp3_applies_the_options(clip, tmp_path, options, expected):
    dst = tmp_path / "out.mp3"
    convert.to_mp3(clip, dst, options)
    stream = _probe_json(dst)["streams"][0]
    assert {key: stream[key] for key in expected} == expected


def test_to_mp3_without_audio_stream_is_permanent(silent_clip, tmp_path):
    with pytest.raises(PermanentError, match="^the video has no audio stream$"):
        convert.to_mp3(silent_clip, tmp_path / "out.mp3")


@pytest.mark.parametrize("content", ["garbage", "random", "truncated"])
def test_to_mp3_unreadable_input_is_permanent_with_ffmpeg_s_error(clip, tmp_path, content):
    junk = tmp_path / "video"
    # Seeded: some random bytes pass for an MP3 at first sight, and then ffmpeg's error is another one.
    junk.write_bytes({"garbage": b"\x00garbage" * 512, "random": random.Random(0).randbytes(4096),
                      "truncated": clip.read_bytes()[:2000]}[content])
    with pytest.raises(PermanentError) as caught:
        convert.to_mp3(junk, tmp_path / "out.mp3")
    # ffmpeg's own error, not one of the info lines around it, and without our temp path.
    assert str(caught.value) == "the file is not a readable video: Invalid data found when processing input"


SAMPLE_LOG = """\
[info] Input #0, mov,mp4,m4a,3gp,3g2,mj2, from '/tmp/job-1/video':
[info]   Duration: 00:00:10.00, start: 0.000000, bitrate: 6593 kb/s
[aac @ 0x55d1c0] [error] Error decoding a frame
[mov,mp4,m4a,3gp,3g2,mj2 @ 0x55d1c0] [error] stream 1, offset 0x4000: partial file
[info] size=     236kB time=00:00:10.03 bitrate= 193.1kbits/s speed= 115x
[info] video:0kB audio:236kB subtitle:0kB other streams:0kB global headers:0kB muxing overhead: 0.32%
"""


def test_the_reason_is_the_last_error_not_the_summary_after_it():
    assert [level for level, _ in convert._messages(SAMPLE_LOG)] == ["info", "info", "error", "error", "info", "info"]
    error = convert._failure(SAMPLE_LOG, Path("/tmp/job-1/video"))
    assert isinstance(error, PermanentError) and str(error) == (
        "the file is not a readable video: [mov,mp4,m4a,3gp,3g2,mj2 @ 0x55d1c0] stream 1, offset 0x4000: partial file")


@pytest.mark.parametrize(("log", "error"), [
    ("[info] Output #0, mp3, to '/tmp/job-1/audio.mp3':\n"
     "[error] Error writing trailer of /tmp/job-1/audio.mp3: No space left on device\n"
     "[info] video:0kB audio:236kB subtitle:0kB other streams:0kB global headers:0kB muxing overhead: 0.32%\n",
     OSError("ffmpeg: Error writing trailer of /tmp/job-1/audio.mp3: No space left on device")),
    ("[info]     title           : No space left on device\n"
     "[fatal] Stream map '0:a:0' matches no streams.\nTo ignore this, add a trailing '?' to the map.\n",
     PermanentError("the video has no audio stream")),
    ("[info]     comment         : matches no streams\n"
     "[error] /tmp/job-1/video: Invalid data found when processing input\n",
     PermanentError("the file is not a readable video: Invalid data found when processing input")),
    ("Segmentation fault\n", PermanentError("the file is not a readable video: Segmentation fault")),
    ("", PermanentError("the file is not a readable video: no details")),
])
def test_failure_maps_ffmpeg_s_errors_only(log, error):
    found = convert._failure(log, Path("/tmp/job-1/video"))
    assert type(found) is type(error) and str(found) == str(error)


def test_a_message_s_first_line_is_its_reason_and_our_path_is_hidden():
    messages = convert._messages("[fatal] Stream map '0:a:0' matches no streams.\n"
                                 "To ignore this, add a trailing '?' to the map.\n"
                                 "[error] /tmp/job-1/video: Invalid data found when processing input\n")
    assert messages == [("fatal", "Stream map '0:a:0' matches no streams.\n"
                                  "To ignore this, add a trailing '?' to the map."),
                        ("error", "/tmp/job-1/video: Invalid data found when processing input")]
    assert convert._reason(messages[0][1], Path("/x")) == "Stream map '0:a:0' matches no streams."
    assert convert._reason(messages[1][1], Path("/tmp/job-1/video")) == "Invalid data found when processing input"


def _stderr_of(data: bytes) -> convert._Stderr:
    reader = convert._Stderr(io.BytesIO(data))
    reader.join()
    return reader


def test_stderr_reader_reads_the_header_and_keeps_only_the_tail():
    flood = b"".join(b"[aac @ 0x55d1c0] [error] Error decoding frame %d\n" % n for n in range(100_000))
    data = SAMPLE_LOG.encode()[:150] + flood + b"[error] the last word\n"
    tracemalloc.start()
    try:
        reader = _stderr_of(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert len(data) > 4_000_000 and peak < 200_000  # memory does not follow the flood
    assert reader.input == InputInfo(format_name="mov,mp4,m4a,3gp,3g2,mj2", duration_s=10.0)
    tail = reader.tail()
    assert len(tail) <= convert._STDERR_TAIL and tail.endswith("[error] the last word\n")
    assert tail.startswith("[aac @ 0x55d1c0] [error] Error decoding frame ")  # no half line at the cut


@pytest.mark.parametrize(("line", "duration"), [
    (b"[info]   Duration: 01:02:03.25, start: 0.000000, bitrate: 1 kb/s\n", 3723.25),
    (b"[info]   Duration: N/A, start: 0.000000, bitrate: N/A\n", None),
])
def test_stderr_reader_parses_the_duration(line, duration):
    reader = _stderr_of(b"[info] Input #0, matroska,webm, from 'video':\n[info]   Metadata:\n"
                        b"[info]     Duration: 99:00:00.00, tag\n" + line)
    assert reader.input == InputInfo(format_name="matroska,webm", duration_s=duration)


@pytest.mark.parametrize("forged", [
    b"  Duration: 00:00:00.01, start\n",          # a metadata key with a newline: the continuation is untagged
    b"[info]   Duration: 00:00:00.01, start\n",   # ... or carries a forged tag too
    b"[info]   Duration: 00:00:nan, start\n",     # ... or a value that compares false with everything
])
def test_a_forged_duration_line_cannot_make_the_file_look_shorter(forged):
    reader = _stderr_of(b"[info] Input #0, matroska,webm, from 'video':\n[info]   Metadata:\n[info]     A\n"
                        + forged + b"[info]   Duration: 05:00:00.00, start: 0.000000, bitrate: 1 kb/s\n"
                        b"[info]   Stream #0:0: Audio: flac\n")
    assert reader.input == InputInfo(format_name="matroska,webm", duration_s=18000.0)


def test_the_cpu_limit_is_permanent_as_ffmpeg_reports_it(fake_ffmpeg, tmp_path):
    # Real ffmpeg catches SIGXCPU, logs it and exits 255 (it does not die of the signal).
    fake_ffmpeg("echo '[info] Received signal 24: terminating.' >&2; "
                "echo '[info] Exiting normally, received signal 24.' >&2; exit 255")
    with pytest.raises(PermanentError, match="used up its 900 s of CPU time"):
        convert.to_mp3(tmp_path / "in", tmp_path / "out.mp3")


@needs_ffmpeg
def test_the_cpu_limit_on_real_ffmpeg(tmp_path):
    src = tmp_path / "long.mkv"  # 20 minutes of audio: several seconds of CPU to encode
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "sine=duration=1200",
                    "-c:a", "flac", str(src)], check=True, timeout=120)
    with pytest.raises(PermanentError, match="used up its 1 s of CPU time"):
        convert.to_mp3(src, tmp_path / "out.mp3", container="video/x-matroska", limits=convert.Limits(cpu_s=1))


def test_the_file_s_own_text_cannot_pass_for_the_cpu_limit(fake_ffmpeg, tmp_path):
    fake_ffmpeg("echo '[info]     comment         : Exiting normally, received signal 24.' >&2; "
                "echo '[error] Invalid data found when processing input' >&2; exit 1")
    with pytest.raises(PermanentError, match="not a readable video"):
        convert.to_mp3(tmp_path / "in", tmp_path / "out.mp3")


@pytest.mark.parametrize("signum", [2, 15])
def test_ffmpeg_stopped_from_outside_is_transient(fake_ffmpeg, tmp_path, signum):
    fake_ffmpeg(f"echo '[info] Exiting normally, received signal {signum}.' >&2; exit 255")
    with pytest.raises(ConversionTimeout, match=f"stopped by signal {signum}"):
        convert.to_mp3(tmp_path / "in", tmp_path / "out.mp3")


def test_a_crash_of_ffmpeg_on_the_input_is_permanent_not_a_timeout(fake_ffmpeg, tmp_path):
    fake_ffmpeg("kill -SEGV $$")
    with pytest.raises(PermanentError, match="ffmpeg crashed"):
        convert.to_mp3(tmp_path / "in", tmp_path / "out.mp3")


def test_stderr_reader_without_a_header_knows_nothing():
    assert _stderr_of(b"[error] video: Invalid data found when processing input\n").input is None


@pytest.fixture
def hanging_ffmpeg(fake_ffmpeg):
    """An `ffmpeg` on PATH that never finishes, to exercise the time limit without a real slow input."""
    fake_ffmpeg("exec sleep 30")


@pytest.mark.skipif(shutil.which("sleep") is None, reason="needs sleep(1)")
def test_to_mp3_time_limit_is_transient(hanging_ffmpeg, tmp_path):
    with pytest.raises(ConversionTimeout, match="after 0.3 s limit"):
        convert.to_mp3(tmp_path / "in", tmp_path / "out.mp3", time_limit=lambda duration_s: 0.3)
    assert not isinstance(ConversionTimeout("x"), PermanentError)


@pytest.mark.skipif(shutil.which("sleep") is None, reason="needs sleep(1)")
def test_the_time_limit_follows_the_duration_ffmpeg_reports(fake_ffmpeg, tmp_path):
    # Hangs after printing its input's header: only the limit for the reported 2 s can stop it in time.
    fake_ffmpeg("printf \"[info] Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'in':\\n"
                "[info]   Duration: 00:00:02.00, start: 0.000000, bitrate: 1 kb/s\\n\" >&2\nexec sleep 30")
    asked: list[float | None] = []

    def limit(duration_s):
        asked.append(duration_s)
        return 10.0 if duration_s is None else duration_s / 10

    with pytest.raises(ConversionTimeout, match="after 0.2 s limit"):
        convert.to_mp3(tmp_path / "in", tmp_path / "out.mp3", time_limit=limit)
    assert asked == [None, 2.0]


def test_stderr_flood_from_ffmpeg_ends_in_its_last_error(fake_ffmpeg, tmp_path):
    # Names its input (the argument after -i) in the last error, as ffmpeg does.
    fake_ffmpeg("yes '[aac @ 0x55d1c0] [error] Error decoding a frame' | head -n 100000 >&2\n"
                "while [ \"$1\" != -i ]; do shift; done\n"
                "echo \"[error] $2: Invalid data found when processing input\" >&2\nexit 1")
    with pytest.raises(PermanentError) as caught:
        convert.to_mp3(tmp_path / "video", tmp_path / "out.mp3")
    assert str(caught.value) == "the file is not a readable video: Invalid data found when processing input"


def test_input_described_after_the_last_progress_is_still_told(fake_ffmpeg, tmp_path):
    # The two pipes are read apart: the header can arrive after all the progress (a very short input).
    fake_ffmpeg("printf 'out_time=00:00:01.000000\\nprogress=end\\n'\nsleep 0.2\n"
                "printf \"[info] Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'in':\\n"
                "[info]   Duration: 00:00:01.00, start: 0.000000, bitrate: 1 kb/s\\n\" >&2\n"
                "for last; do :; done\necho mp3 > \"$last\"")
    seen: list[InputInfo] = []
    convert.to_mp3(tmp_path / "in", tmp_path / "out.mp3", on_input=seen.append)
    assert seen == [InputInfo(format_name="mov,mp4,m4a,3gp,3g2,mj2", duration_s=1.0)]


def test_time_limit_is_600_s_plus_the_duration_or_an_hour_more_when_unknown_capped_by_the_timeout():
    limits = convert.Limits(timeout_s=86400)
    assert limits.time_limit_s(None) == 4200.0
    assert limits.time_limit_s(0.0) == 4200.0  # a zero duration says nothing either
    assert limits.time_limit_s(12.5) == 612.5
    # Whatever the file claims, the run never gets more than the cap (1800 s by default).
    assert convert.Limits().time_limit_s(317_440.0) == convert.Limits().time_limit_s(None) == 1800.0
    assert convert.Limits().time_limit_s(60.0) == 660.0


def test_watchdog_counts_a_new_limit_from_the_start():
    now = [1000.0]
    killed = threading.Event()
    limits = convert.Limits(timeout_s=86400)
    watchdog = convert._Watchdog(killed.set, limits.time_limit_s(None), clock=lambda: now[0])
    try:
        now[0] = 1100.0
        assert watchdog.remaining_s() == 4100.0
        watchdog.set_limit(limits.time_limit_s(60.0))
        assert watchdog.remaining_s() == 560.0 and not watchdog.fired
        now[0] = 1661.0  # past start + 600 + 60: the next look at the clock kills
        watchdog.set_limit(limits.time_limit_s(60.0))
        assert killed.wait(10)
        assert watchdog.fired
    finally:
        watchdog.stop()


def test_watchdog_stopped_in_time_does_not_kill():
    killed: list[bool] = []
    watchdog = convert._Watchdog(lambda: killed.append(True), 3600.0)
    watchdog.stop()
    assert not watchdog.fired and killed == []

