"""Unit tests for converter.convert: command line, progress parsing, and real ffmpeg on tiny generated clips."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from converter import convert
from converter.convert import ConversionTimeout, Mp3Options
from converter.errors import PermanentError

needs_ffmpeg = pytest.mark.skipif(not (shutil.which("ffmpeg") and shutil.which("ffprobe")),
                                  reason="ffmpeg/ffprobe not installed")


def test_default_command_is_cbr_192k_first_audio_stream(tmp_path):
    src, dst = tmp_path / "in", tmp_path / "out.mp3"
    assert convert.ffmpeg_args(src, dst) == [
        "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-nostats", "-progress", "pipe:1",
        "-y", "-i", str(src), "-vn", "-map", "0:a:0", "-c:a", "libmp3lame", "-b:a", "192k", str(dst)]


def test_options_change_the_encoder_settings(tmp_path):
    args = convert.ffmpeg_args(tmp_path / "in", tmp_path / "out.mp3",
                               Mp3Options(quality=2, channels=1, sample_rate=44100))
    assert args[-9:] == ["-c:a", "libmp3lame", "-q:a", "2", "-ac", "1", "-ar", "44100", str(tmp_path / "out.mp3")]
    assert "-b:a" not in args


@pytest.mark.parametrize(("raw", "expected"), [
    (None, Mp3Options()),
    ({}, Mp3Options()),
    ({"bitrate": None, "quality": None, "channels": None, "sample_rate": None}, Mp3Options()),
    ({"bitrate": 128}, Mp3Options(bitrate="128k")),
    ({"bitrate": 320, "channels": 1, "sample_rate": 48000, "quality": None},
     Mp3Options(bitrate="320k", channels=1, sample_rate=48000)),
    ({"quality": 0, "bitrate": None}, Mp3Options(quality=0)),
    ({"quality": 9, "channels": 2, "sample_rate": 22050}, Mp3Options(quality=9, channels=2, sample_rate=22050)),
])
def test_parse_options(raw, expected):
    assert convert.parse_options(raw) == expected


@pytest.mark.parametrize(("raw", "error"), [
    ([128], "message field 'options' is not an object"),
    ("bitrate=128", "message field 'options' is not an object"),
    ({"bitrat": 128}, "unknown conversion option 'bitrat'"),
    ({"bitrate": 100}, "conversion option 'bitrate' must be one of 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, "
                       "not 100"),
    ({"bitrate": "128"}, "conversion option 'bitrate' must be one of 64, 80, 96, 112, 128, 160, 192, 224, 256, "
                         "320, not '128'"),
    ({"bitrate": 128.0}, "conversion option 'bitrate' must be one of 64, 80, 96, 112, 128, 160, 192, 224, 256, "
                         "320, not 128.0"),
    ({"quality": 10}, "conversion option 'quality' must be one of 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, not 10"),
    ({"quality": -1}, "conversion option 'quality' must be one of 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, not -1"),
    ({"channels": True}, "conversion option 'channels' must be one of 1, 2, not True"),
    ({"channels": 6}, "conversion option 'channels' must be one of 1, 2, not 6"),
    ({"sample_rate": 96000}, "conversion option 'sample_rate' must be one of 22050, 44100, 48000, not 96000"),
    ({"sample_rate": "44100; rm -rf /"},
     "conversion option 'sample_rate' must be one of 22050, 44100, 48000, not '44100; rm -rf /'"),
    ({"bitrate": 128, "quality": 2}, "conversion options 'bitrate' and 'quality' exclude each other"),
])
def test_bad_options_are_permanent(raw, error):
    with pytest.raises(PermanentError) as caught:
        convert.parse_options(raw)
    assert str(caught.value) == error


def test_parsed_options_make_the_expected_command(tmp_path):
    args = convert.ffmpeg_args(tmp_path / "in", tmp_path / "out.mp3",
                               convert.parse_options({"bitrate": 128, "channels": 1, "sample_rate": 48000}))
    assert args[-9:] == ["-c:a", "libmp3lame", "-b:a", "128k", "-ac", "1", "-ar", "48000", str(tmp_path / "out.mp3")]


@pytest.mark.parametrize(("value", "seconds"), [
    ("00:00:01.500000", 1.5),
    ("01:02:03.250000", 3723.25),
    ("00:00:00.000000", 0.0),
    ("N/A", None),
    ("-00:00:00.023220", None),
    ("garbage", None),
    ("", None),
    ("aa:bb:cc", None),
])
def test_parse_out_time(value, seconds):
    assert convert.parse_out_time(value) == seconds


def test_progress_times_yields_one_value_per_block():
    lines = ["bitrate=N/A\n", "out_time_us=N/A\n", "out_time=N/A\n", "progress=continue\n",
             "out_time_us=2000000\n", "out_time=00:00:02.000000\n", "speed=40x\n", "progress=continue\n",
             "out_time=00:00:04.100000\n", "progress=end\n"]
    assert list(convert.progress_times(lines)) == [(2.0, False), (4.1, True)]


def test_throttle_reports_at_most_once_per_interval_and_always_the_end():
    now = [0.0]
    seen: list[float] = []
    throttle = convert._Throttle(seen.append, 5.0, lambda: now[0])
    for t, seconds in [(0, 1), (1, 2), (4.9, 3), (5.0, 4), (6, 5), (10.1, 6)]:
        now[0] = t
        throttle(seconds)
    now[0] = 10.2
    throttle(7, final=True)
    assert seen == [1, 4, 6, 7]


def _probe_json(path: Path) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-print_format", "json", "-show_streams", str(path)],
                         capture_output=True, check=True, timeout=60).stdout
    return json.loads(out)


def test_probe_reads_duration_and_audio(clip):
    info = convert.probe(clip)
    assert info.has_audio and info.audio_codec == "aac"
    assert info.duration_s == pytest.approx(1.0, abs=0.2)
    assert "mp4" in info.format_name


def test_probe_sees_no_audio(silent_clip):
    assert convert.probe(silent_clip).has_audio is False


@needs_ffmpeg
def test_probe_garbage_is_permanent(tmp_path):
    junk = tmp_path / "video"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(PermanentError) as caught:
        convert.probe(junk)
    reason = str(caught.value)
    assert reason.startswith("the file is not a readable video: ")
    assert str(junk) not in reason  # our temp path means nothing to the user


def test_to_mp3_converts_and_reports_progress(clip, tmp_path):
    dst = tmp_path / "out.mp3"
    progress: list[float] = []
    convert.to_mp3(clip, dst, on_progress=progress.append)

    stream = _probe_json(dst)["streams"][0]
    assert stream["codec_name"] == "mp3" and stream["bit_rate"] == "192000"
    assert progress and progress[-1] == pytest.approx(1.0, abs=0.2)


def test_defaults_cap_channels_at_two_and_keep_the_source_rate(surround_clip, tmp_path):
    dst = tmp_path / "out.mp3"
    convert.to_mp3(surround_clip, dst)
    stream = _probe_json(dst)["streams"][0]
    assert (stream["channels"], stream["sample_rate"]) == (2, "22050")


@pytest.mark.parametrize(("options", "expected"), [
    (Mp3Options(bitrate="96k", channels=1, sample_rate=48000), {"channels": 1, "sample_rate": "48000",
                                                                "bit_rate": "96000"}),
    (Mp3Options(quality=9, channels=2, sample_rate=22050), {"channels": 2, "sample_rate": "22050"}),
])
def test_to_mp3_applies_the_options(clip, tmp_path, options, expected):
    dst = tmp_path / "out.mp3"
    convert.to_mp3(clip, dst, options)
    stream = _probe_json(dst)["streams"][0]
    assert {key: stream[key] for key in expected} == expected


def test_to_mp3_without_audio_stream_is_permanent(silent_clip, tmp_path):
    with pytest.raises(PermanentError, match="^the video has no audio stream$"):
        convert.to_mp3(silent_clip, tmp_path / "out.mp3")


@needs_ffmpeg
def test_to_mp3_garbage_is_permanent(tmp_path):
    junk = tmp_path / "video"
    junk.write_bytes(b"\x00garbage" * 512)
    with pytest.raises(PermanentError, match="^the file is not a readable video: "):
        convert.to_mp3(junk, tmp_path / "out.mp3")


@pytest.fixture
def hanging_ffmpeg(tmp_path, monkeypatch):
    """An `ffmpeg` on PATH that never finishes, to exercise the time limit without a real slow input."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "ffmpeg"
    script.write_text("#!/bin/sh\nexec sleep 30\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


@pytest.mark.skipif(shutil.which("sleep") is None, reason="needs sleep(1)")
def test_to_mp3_time_limit_is_transient(hanging_ffmpeg, tmp_path):
    with pytest.raises(ConversionTimeout):
        convert.to_mp3(tmp_path / "in", tmp_path / "out.mp3", timeout_s=0.3)
    assert not isinstance(ConversionTimeout("x"), PermanentError)

