"""The contract at unit level: what producers build is what consumers accept, and every bad shape is refused."""

from __future__ import annotations


import pytest

from mp3core import contract
from mp3core.contract import (
    Mp3Message,
    Options,
    VideoMessage,
    clean_filename,
    mp3_filename,
    parse_mp3_message,
    parse_options,
    parse_video_message,
)
from mp3core.errors import ContractError, PermanentError

JOB_ID = "0123456789abcdef0123456789abcdef"
VIDEO_FID = "65a1b2c3d4e5f60718293a4b"
MP3_FID = "65a1b2c3d4e5f60718293a4c"
VIDEO = VideoMessage(JOB_ID, VIDEO_FID, "alice@example.com", "holiday.mp4", Options(quality=2, channels=1),
                     "video/mp4")


def test_a_video_message_survives_its_round_trip():
    assert parse_video_message(VIDEO.to_dict()) == VIDEO
    assert VIDEO.to_dict()["options"] == {"bitrate": None, "quality": 2, "channels": 1, "sample_rate": None,
                                          "start": None, "end": None, "normalize": None, "cover": None}


@pytest.mark.parametrize("result", [VIDEO.done(MP3_FID), VIDEO.failed("the video has no audio stream"),
                                    VIDEO.failed("")])
def test_the_converter_s_mp3_messages_parse_with_notification_s_validator(result):
    parsed = parse_mp3_message(result.to_dict())
    assert parsed == result
    assert (parsed.job_id, parsed.username, parsed.filename) == (JOB_ID, "alice@example.com", "holiday.mp4")


def test_a_failure_always_carries_a_reason():
    assert VIDEO.failed("").error == "conversion failed"
    assert VIDEO.done(MP3_FID).status == "done" and VIDEO.done(MP3_FID).mp3_fid == MP3_FID


def video(**changes):
    return {**VIDEO.to_dict(), **changes}


@pytest.mark.parametrize(("message", "field", "reason"), [
    ([1, 2], None, "message is not a JSON object"),
    (video(job_id=None), "job_id", "message field 'job_id' is missing or not a 32-character hex id"),
    (video(job_id="0123456789ABCDEF0123456789ABCDEF"), "job_id", "32-character hex id"),
    (video(job_id="../" * 11), "job_id", "32-character hex id"),
    (video(video_fid="65a1b2c3"), "video_fid", "a 24-character hex file id"),
    (video(video_fid="65A1B2C3D4E5F60718293A4B"), "video_fid", "a 24-character hex file id"),
    (video(video_fid=["65a1b2c3d4e5f60718293a4b"]), "video_fid", "a 24-character hex file id"),
    (video(username="alice"), "username", "an email address"),
    (video(username="a@x.com, b@y.com"), "username", "an email address"),
    (video(username="a@x.com\r\nBcc: b@y.com"), "username", "an email address"),
    (video(filename="  "), "filename", "a non-empty string"),
    (video(filename=7), "filename", "a non-empty string"),
    (video(filename="x" * 1025), "filename", "a non-empty string"),
    (video(options=[128]), "options", "options must be an object"),
    (video(options={"speed": 2}), "speed", "unknown option 'speed'"),
    (video(options={"bitrate": 100}), "bitrate", "bitrate must be one of 64, 80"),
    (video(options={"bitrate": "128"}), "bitrate", "bitrate must be one of"),
    (video(options={"channels": True}), "channels", "channels must be 1 or 2"),
    (video(options={"sample_rate": "44100; rm -rf /"}), "sample_rate", "sample_rate must be one of"),
    (video(options={"quality": 10}), "quality", "quality must be an integer from 0 (best) to 9"),
    (video(options={"bitrate": 128, "quality": 2}), "quality", "not both"),
    (video(container="application/dash+xml"), "container", "one of video/mp4"),
    (video(container=["video/mp4"]), "container", "one of video/mp4"),
])
def test_bad_video_messages_are_refused_naming_the_field(message, field, reason):
    with pytest.raises(ContractError) as caught:
        parse_video_message(message)
    assert reason in str(caught.value) and caught.value.field == field
    assert isinstance(caught.value, PermanentError)  # a consumer dead-letters it instead of retrying


def test_a_message_from_before_containers_were_named_is_still_read():
    legacy = {key: value for key, value in VIDEO.to_dict().items() if key != "container"}
    assert parse_video_message(legacy).container is None


def test_every_container_has_its_demuxer():
    assert set(contract.CONTAINERS.values()) == {"mov", "matroska", "avi", "flv", "mpeg", "asf", "ogg", "mpegts",
                                                 "mp3", "wav", "flac"}


def test_a_message_with_bad_options_still_names_its_job():
    message = parse_video_message(video(options={"bitrate": 100}), options=False)
    assert message.job_id == JOB_ID and message.options == Options()


def mp3(**changes):
    return {**VIDEO.done(MP3_FID).to_dict(), **changes}


@pytest.mark.parametrize(("message", "field"), [
    ("done", None),
    (mp3(status="converting"), "status"),
    (mp3(status=None), "status"),
    (mp3(mp3_fid=None), "mp3_fid"),
    (mp3(mp3_fid="../../etc/passwd"), "mp3_fid"),
    (mp3(job_id="x"), "job_id"),
    (mp3(video_fid="nope"), "video_fid"),
    (mp3(username="root"), "username"),
    (mp3(filename=""), "filename"),
    ({**VIDEO.failed("x").to_dict(), "error": 42}, "error"),
])
def test_bad_mp3_messages_are_refused_naming_the_field(message, field):
    with pytest.raises(ContractError) as caught:
        parse_mp3_message(message)
    assert caught.value.field == field


def test_a_failed_message_needs_no_file_ids():
    parsed = parse_mp3_message({**VIDEO.failed("x").to_dict(), "video_fid": None, "mp3_fid": None, "error": None})
    assert parsed.status == "failed" and parsed.error is None and parsed.video_fid is None


def test_only_ended_statuses_can_be_announced():
    with pytest.raises(ContractError):
        Mp3Message(JOB_ID, VIDEO_FID, "alice@example.com", "a.mp4", "queued")


@pytest.mark.parametrize(("raw", "expected"), [
    (None, Options()),
    ({}, Options()),
    (dict.fromkeys(contract.OPTION_NAMES), Options()),
    ({"bitrate": 320, "channels": 1, "sample_rate": 48000}, Options(bitrate=320, channels=1, sample_rate=48000)),
    ({"quality": 0}, Options(quality=0)),
])
def test_parse_options(raw, expected):
    assert parse_options(raw) == expected


@pytest.mark.parametrize(("options", "field"), [
    ({"start": -0.5}, "start"),
    ({"start": True}, "start"),
    ({"start": "10"}, "start"),
    ({"end": float("inf")}, "end"),
    ({"end": 360_000}, "end"),
    ({"end": 0}, "end"),
    ({"start": 10, "end": 10}, "end"),
    ({"start": 10.5, "end": 3}, "end"),
    ({"normalize": 1}, "normalize"),
    ({"cover": "true"}, "cover"),
])
def test_bad_trim_and_flag_options_name_the_field(options, field):
    with pytest.raises(ContractError) as caught:
        parse_options(options)
    assert caught.value.field == field


def test_trim_and_flags_round_trip():
    options = parse_options({"start": 1.5, "end": 60, "normalize": True, "cover": False})
    assert parse_options(options.to_dict()) == options and options.trimmed
    assert not Options(start=0).trimmed and Options(end=3).trimmed


def test_every_allowed_value_is_accepted_and_hinted():
    for name, values in contract.OPTION_VALUES.items():
        for value in values:
            assert getattr(Options(**{name: value}), name) == value
        assert name in contract.OPTION_HINTS[name]


@pytest.mark.parametrize(("raw", "stored", "mp3"), [
    ("holiday.mp4", "holiday.mp4", "holiday.mp3"),
    ("C:\\Users\\ann\\My Clip.mov", "My Clip.mov", "My Clip.mp3"),
    ("../../etc/passwd", "passwd", "passwd.mp3"),
    ("archive.tar.gz", "archive.tar.gz", "archive.tar.mp3"),
    (".hidden", ".hidden", "hidden.mp3"),
    ("bad\x00na\x1bme\x7f.mp4", "badname.mp4", "badname.mp3"),
    ("", "video", "video.mp3"),
    ("..", "video", "video.mp3"),
    (None, "video", "video.mp3"),
    ("x" * 300 + ".mp4", "x" * 255, "x" * 255 + ".mp3"),
])
def test_file_name_rules(raw, stored, mp3):
    assert clean_filename(raw) == stored
    assert mp3_filename(clean_filename(raw)) == mp3


def test_mp3_name_of_a_name_with_nothing_left():
    assert mp3_filename("...") == "audio.mp3" and mp3_filename("\x01.mp4") == "audio.mp3"
