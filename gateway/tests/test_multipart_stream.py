"""receive_upload parses multipart as a stream: any read size, boundaries split across reads."""

from __future__ import annotations

import io

import pytest

from mp3core.errors import BadRequest, PayloadTooLarge

from gateway.multipart import READ_SIZE, receive_upload

BOUNDARY = "test-boundary-7MA4YWxkTrZu0gW"


class CutStream(io.RawIOBase):
    """Returns the body in pieces ending exactly at the given offsets (then the rest)."""

    def __init__(self, data: bytes, cuts: list[int]) -> None:
        self._data = data
        self._pos = 0
        self._cuts = sorted(c for c in cuts if 0 < c < len(data))
        self.pieces: list[int] = []

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        end = len(self._data)
        while self._cuts and self._cuts[0] <= self._pos:
            self._cuts.pop(0)
        if self._cuts:
            end = self._cuts[0]
        if size is not None and size >= 0:
            end = min(end, self._pos + size)
        piece = self._data[self._pos : end]
        self._pos = end
        self.pieces.append(len(piece))
        return piece


def tricky_video(helpers, size: int) -> bytes:
    # Lines that begin like the delimiter but are not it must survive byte for byte.
    near_miss = b"\r\n--" + BOUNDARY[:-1].encode() + b"\r\n--" + BOUNDARY.encode() + b"X\r\n"
    return helpers.video_bytes(size // 2) + near_miss + helpers.video_bytes(size // 2)


def receive(storage, stream, **kwargs):
    return receive_upload(
        stream,
        BOUNDARY.encode(),
        storage=storage,
        metadata={"owner": "alice@example.com", "job_id": "j1"},
        max_body_bytes=kwargs.pop("max_body_bytes", 10**9),
        check_fields=kwargs.pop("check_fields", lambda fields: None),
        **kwargs,
    )


@pytest.mark.parametrize("max_read", [1, 2, 3, 5, 7, 13, 64, 511, 4096])
def test_file_split_across_many_small_reads(helpers, storage, max_read):
    video = tricky_video(helpers, 6000)
    body = helpers.multipart([("mode", None, b"fast"), ("file", "clip.mp4", video), ("lang", None, b"en")])
    stream = helpers.TrackingStream(body, max_read=max_read)

    upload = receive(storage, stream)

    writer = storage.videos[upload.video_fid]
    assert bytes(writer.data) == video
    assert writer.closed and not writer.aborted
    assert upload.size == len(video)
    assert upload.filename == "clip.mp4"
    assert upload.content_type == "video/mp4"
    assert upload.fields == {"mode": "fast", "lang": "en"}
    assert stream.reads > len(body) // max_read  # it really was fed piece by piece


def test_every_split_point_inside_the_closing_delimiter(helpers, storage):
    video = tricky_video(helpers, 3000)
    body = helpers.multipart([("file", "clip.mp4", video)])
    delimiter = b"\r\n--" + BOUNDARY.encode() + b"--\r\n"
    start = body.rindex(delimiter)
    for offset in range(start - 2, len(body) + 1):
        storage.videos.clear()
        upload = receive(storage, CutStream(body, [offset]))
        assert bytes(storage.videos[upload.video_fid].data) == video, f"split at {offset - start}"


def test_every_split_point_inside_a_middle_delimiter(helpers, storage):
    video = tricky_video(helpers, 3000)
    body = helpers.multipart([("file", "clip.mp4", video), ("note", None, b"after")])
    delimiter = b"\r\n--" + BOUNDARY.encode() + b"\r\n"
    start = body.index(delimiter, len(video))
    for offset in range(start - 2, start + len(delimiter) + 2):
        storage.videos.clear()
        upload = receive(storage, CutStream(body, [offset]))
        assert bytes(storage.videos[upload.video_fid].data) == video, f"split at {offset - start}"
        assert upload.fields == {"note": "after"}


def test_reads_are_bounded_by_read_size(helpers, storage):
    body = helpers.multipart([("file", "clip.mp4", helpers.video_bytes(3 * READ_SIZE))])
    stream = CutStream(body, [])
    receive(storage, stream)
    assert max(stream.pieces) <= READ_SIZE


def test_streamed_limit_counts_the_body_and_aborts(helpers, storage):
    body = helpers.multipart([("file", "clip.mp4", helpers.video_bytes(50_000))])
    with pytest.raises(PayloadTooLarge):
        receive(storage, helpers.TrackingStream(body, max_read=1000), max_body_bytes=20_000)
    assert storage.videos == {}
    assert storage.opened[0].aborted


def test_truncated_stream_is_bad_request_and_aborts(helpers, storage):
    body = helpers.multipart([("file", "clip.mp4", helpers.video_bytes(50_000))])
    with pytest.raises(BadRequest) as caught:
        receive(storage, helpers.TrackingStream(body[:30_000], max_read=4096))
    assert caught.value.message == "malformed multipart body"
    assert storage.videos == {}
    assert storage.opened[0].aborted


def test_garbage_without_boundary_is_bounded(helpers, storage):
    # No boundary ever appears: the decoder must not buffer an unbounded preamble.
    with pytest.raises(BadRequest):
        receive(storage, helpers.TrackingStream(b"x" * (3 * 1024 * 1024), max_read=1024 * 1024))
    assert storage.opened == []


def test_every_single_and_double_split_of_a_small_body(helpers, storage):
    # Regression for werkzeug 3.1.9: a read ending in "\r\n--BOUNDARY-" made the decoder hand out
    # the delimiter's CR as file data (see upload._hold_back_delimiter_suffix).
    video = helpers.MP4_HEAD + b"\r\n-\r"
    body = helpers.multipart([("file", "clip.mp4", video), ("note", None, b"x")])
    single = [[c] for c in range(1, len(body))]
    tail = range(len(body) - 60, len(body))
    double = [[a, b] for a in tail for b in tail if a < b]
    for cuts in single + double:
        storage.videos.clear()
        upload = receive(storage, CutStream(body, cuts))
        assert bytes(storage.videos[upload.video_fid].data) == video, f"cuts at {cuts}"
        assert upload.fields == {"note": "x"}, f"cuts at {cuts}"


def test_too_many_fields_is_bad_request_before_the_file(helpers, storage):
    body = helpers.multipart([(f"f{i}", None, b"x") for i in range(17)] + [("file", "clip.mp4", helpers.video_bytes(100))])
    with pytest.raises(BadRequest) as caught:
        receive(storage, helpers.TrackingStream(body))
    assert caught.value.message == "too many form fields (at most 16)"
    assert storage.opened == []


def test_check_fields_sees_each_field_as_it_completes(helpers, storage):
    seen: list[dict] = []
    body = helpers.multipart([("a", None, b"1"), ("file", "clip.mp4", helpers.video_bytes(100)), ("b", None, b"2")])
    upload = receive(storage, helpers.TrackingStream(body, max_read=7), check_fields=lambda f: seen.append(dict(f)))
    assert seen == [{"a": "1"}, {"a": "1", "b": "2"}]
    assert upload.fields == {"a": "1", "b": "2"}


def test_refused_field_before_the_file_stores_nothing(helpers, storage):
    def refuse_b(fields):
        if "b" in fields:
            raise BadRequest("no b", field="b")

    body = helpers.multipart([("b", None, b"1"), ("file", "clip.mp4", helpers.video_bytes(5000))])
    with pytest.raises(BadRequest) as caught:
        receive(storage, helpers.TrackingStream(body), check_fields=refuse_b)
    assert caught.value.field == "b"
    assert storage.opened == [] and storage.bytes_written == 0


def test_refused_field_after_the_file_aborts_the_stored_video(helpers, storage):
    def refuse_b(fields):
        if "b" in fields:
            raise BadRequest("no b", field="b")

    body = helpers.multipart([("file", "clip.mp4", helpers.video_bytes(50_000)), ("b", None, b"1")])
    with pytest.raises(BadRequest):
        receive(storage, helpers.TrackingStream(body, max_read=4096), check_fields=refuse_b)
    [writer] = storage.opened
    assert writer.aborted and not writer.closed
    assert storage.bytes_written > 0  # it had really been streaming into storage
    assert storage.videos == {}


def test_a_field_sent_twice_is_refused(helpers, storage):
    body = helpers.multipart([("a", None, b"1"), ("a", None, b"2"), ("file", "clip.mp4", helpers.video_bytes(100))])
    with pytest.raises(BadRequest) as caught:
        receive(storage, helpers.TrackingStream(body))
    assert (caught.value.message, caught.value.field) == ("form field 'a' was sent more than once", "a")
    assert storage.opened == []
