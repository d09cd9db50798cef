"""Upload options as form fields: parsing, where they end up, and what a refusal leaves behind."""

from __future__ import annotations

import pytest

from mp3core.errors import BadRequest

from gateway.options import parse_form_options

UNSET = {"bitrate": None, "quality": None, "channels": None, "sample_rate": None, "start": None, "end": None,
         "normalize": None, "cover": None}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, {}),
        ({"bitrate": "64"}, {"bitrate": 64}),
        ({"bitrate": "320", "channels": "2", "sample_rate": "48000"}, {"bitrate": 320, "channels": 2, "sample_rate": 48000}),
        ({"quality": "0"}, {"quality": 0}),
        ({"quality": "9", "channels": "1", "sample_rate": "22050"}, {"quality": 9, "channels": 1, "sample_rate": 22050}),
        ({"sample_rate": " 44100 "}, {"sample_rate": 44100}),  # curl users pad; whitespace is harmless
        ({"bitrate": "0128"}, {"bitrate": 128}),
        ({"start": "90"}, {"start": 90.0}),
        ({"start": "90.5", "end": "120.25"}, {"start": 90.5, "end": 120.25}),
        ({"start": "1:30"}, {"start": 90.0}),
        ({"start": "00:01:30.5", "end": "01:00:00.125"}, {"start": 90.5, "end": 3600.125}),
        ({"start": " 0 "}, {"start": 0.0}),
        ({"end": "99:59:59.999"}, {"end": 359999.999}),
        ({"start": "0:05", "end": "6"}, {"start": 5.0, "end": 6.0}),
        ({"normalize": "true", "cover": "false"}, {"normalize": True, "cover": False}),
        ({"normalize": "True", "cover": "1"}, {"normalize": True, "cover": True}),  # True: Python's str(True)
        ({"cover": "0"}, {"cover": False}),
    ],
)
def test_valid_options(fields, expected):
    assert parse_form_options(fields).to_dict() == {**UNSET, **expected}


ALL_BITRATES = "bitrate must be one of 64, 80, 96, 112, 128, 160, 192, 224, 256, 320 (kbit/s, constant bit rate)"
QUALITY = "quality must be an integer from 0 (best) to 9 (variable bit rate)"
CHANNELS = "channels must be 1 or 2"
RATES = "sample_rate must be one of 22050, 44100, 48000"
UNKNOWN = ("unknown form field {!r}; the form takes 'file' and the options bitrate, quality, channels, sample_rate, "
           "start, end, normalize, cover")
TIME = "{} must be a time from 0 to 99:59:59.999: seconds (90 or 90.5) or hh:mm:ss[.fff] (00:01:30.5)"
BOTH = "send either bitrate (constant) or quality (variable bit rate), not both"

BAD_OPTIONS = [
    # (id, fields, error, field)
    ("bitrate-not-allowed", {"bitrate": "100"}, ALL_BITRATES, "bitrate"),
    ("bitrate-with-unit", {"bitrate": "192k"}, ALL_BITRATES, "bitrate"),
    ("bitrate-empty", {"bitrate": ""}, ALL_BITRATES, "bitrate"),
    ("bitrate-negative", {"bitrate": "-128"}, ALL_BITRATES, "bitrate"),
    ("bitrate-plus", {"bitrate": "+128"}, ALL_BITRATES, "bitrate"),
    ("bitrate-float", {"bitrate": "128.0"}, ALL_BITRATES, "bitrate"),
    ("bitrate-underscore", {"bitrate": "1_28"}, ALL_BITRATES, "bitrate"),
    ("bitrate-arabic-indic-digits", {"bitrate": "١٢٨"}, ALL_BITRATES, "bitrate"),
    ("bitrate-huge", {"bitrate": "9" * 400}, ALL_BITRATES, "bitrate"),
    ("quality-10", {"quality": "10"}, QUALITY, "quality"),
    ("quality-word", {"quality": "best"}, QUALITY, "quality"),
    ("channels-0", {"channels": "0"}, CHANNELS, "channels"),
    ("channels-6", {"channels": "6"}, CHANNELS, "channels"),
    ("channels-stereo", {"channels": "stereo"}, CHANNELS, "channels"),
    ("sample-rate-8000", {"sample_rate": "8000"}, RATES, "sample_rate"),
    ("sample-rate-khz", {"sample_rate": "44.1"}, RATES, "sample_rate"),
    ("unknown-field", {"bitrat": "128"}, UNKNOWN.format("bitrat"), "bitrat"),
    ("bitrate-then-quality", {"bitrate": "128", "quality": "2"}, BOTH, "quality"),
    ("quality-then-bitrate", {"quality": "2", "bitrate": "128"}, BOTH, "bitrate"),
    ("start-negative", {"start": "-1"}, "start must not be negative", "start"),
    ("end-negative-clock", {"end": "-00:00:01"}, "end must not be negative", "end"),
    ("start-word", {"start": "soon"}, TIME.format("start"), "start"),
    ("start-empty", {"start": ""}, TIME.format("start"), "start"),
    ("start-60-seconds", {"start": "1:60"}, TIME.format("start"), "start"),
    ("start-60-minutes", {"start": "1:60:00"}, TIME.format("start"), "start"),
    ("start-100-hours", {"start": "100:00:00"}, TIME.format("start"), "start"),
    ("start-microseconds", {"start": "1.0001"}, TIME.format("start"), "start"),
    ("start-exponent", {"start": "1e3"}, TIME.format("start"), "start"),
    ("start-nan", {"start": "nan"}, TIME.format("start"), "start"),
    ("start-too-large", {"start": "999999"}, TIME.format("start"), "start"),
    ("end-with-unit", {"end": "10s"}, TIME.format("end"), "end"),
    ("end-zero", {"end": "0"}, "end must be greater than 0", "end"),
    ("end-before-start", {"start": "10", "end": "5"}, "end must be after start", "end"),
    ("end-equals-start", {"start": "0:10", "end": "10"}, "end must be after start", "end"),
    ("start-after-end", {"end": "5", "start": "10"}, "end must be after start", "start"),
    ("normalize-yes", {"normalize": "yes"}, "normalize must be true or false", "normalize"),
    ("cover-empty", {"cover": ""}, "cover must be true or false", "cover"),
]


@pytest.mark.parametrize(("fields", "error", "field"), [c[1:] for c in BAD_OPTIONS], ids=[c[0] for c in BAD_OPTIONS])
def test_invalid_options_name_the_field(fields, error, field):
    with pytest.raises(BadRequest) as caught:
        parse_form_options(fields)
    assert (caught.value.status, caught.value.message, caught.value.field) == (400, error, field)


def assert_nothing_left(storage, jobs, publisher):
    assert storage.videos == {}
    assert jobs.docs == {}
    assert publisher.messages == []


@pytest.mark.parametrize(("fields", "error", "field"), [c[1:] for c in BAD_OPTIONS], ids=[c[0] for c in BAD_OPTIONS])
def test_invalid_option_before_the_file_is_400_and_stores_nothing(
    post_upload, helpers, storage, jobs, publisher, fields, error, field
):
    parts = [(name, None, value.encode()) for name, value in fields.items()]
    body = helpers.multipart([*parts, ("file", "a.mp4", helpers.video_bytes(200_000))])
    response, stream = post_upload(body, max_read=4096)

    assert response.status_code == 400
    assert response.get_json() == {"error": error, "field": field}
    assert storage.opened == [] and storage.bytes_written == 0, "a byte of video was stored"
    assert stream.bytes_read < len(body), "the whole body was read although the options were refused first"
    assert_nothing_left(storage, jobs, publisher)


@pytest.mark.parametrize(("fields", "error", "field"), [c[1:] for c in BAD_OPTIONS], ids=[c[0] for c in BAD_OPTIONS])
def test_invalid_option_after_the_file_is_400_and_deletes_the_stored_video(
    post_upload, helpers, storage, jobs, publisher, fields, error, field
):
    parts = [(name, None, value.encode()) for name, value in fields.items()]
    body = helpers.multipart([("file", "a.mp4", helpers.video_bytes(100_000)), *parts])
    response, _ = post_upload(body, max_read=4096)

    assert response.status_code == 400
    assert response.get_json() == {"error": error, "field": field}
    [writer] = storage.opened
    assert storage.bytes_written > 0  # it was streaming into storage...
    assert writer.aborted and not writer.closed  # ...and was deleted, never committed
    assert_nothing_left(storage, jobs, publisher)


def test_options_split_around_the_file_are_combined(post_upload, helpers, jobs, publisher):
    body = helpers.multipart(
        [("quality", None, b"2"), ("file", "a.mp4", helpers.video_bytes(3000)), ("sample_rate", None, b"22050")]
    )
    response, _ = post_upload(body)

    assert response.status_code == 202
    expected = {**UNSET, "quality": 2, "sample_rate": 22050}
    assert [job["options"] for job in jobs.docs.values()] == [expected]
    assert [message["options"] for message in publisher.messages] == [expected]


def test_no_options_means_all_unset_in_job_and_message(post_upload, helpers, jobs, publisher):
    response, _ = post_upload(helpers.multipart([("file", "a.mp4", helpers.video_bytes(3000))]))
    assert response.status_code == 202
    assert [job["options"] for job in jobs.docs.values()] == [UNSET]
    assert [message["options"] for message in publisher.messages] == [UNSET]


def test_option_sent_twice_is_400(post_upload, helpers, storage, jobs, publisher):
    body = helpers.multipart([("bitrate", None, b"128"), ("bitrate", None, b"192"), ("file", "a.mp4", helpers.video_bytes(100))])
    response, _ = post_upload(body)
    assert response.status_code == 400
    assert response.get_json() == {"error": "form field 'bitrate' was sent more than once", "field": "bitrate"}
    assert_nothing_left(storage, jobs, publisher)
