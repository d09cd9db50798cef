"""Streaming multipart/form-data: the upload body parsed piece by piece straight into video storage."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Protocol

from mp3core.contract import clean_filename
from mp3core.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import NEED_DATA, Data, Epilogue, Event, Field, File, MultipartDecoder

from .sniff import SNIFF_BYTES, sniff

log = logging.getLogger(__name__)

READ_SIZE = 1024 * 1024  # bytes asked of the request stream per read
FIELD_MAX = 1024  # a text field is an option such as a bitrate, never a document
MAX_FIELDS = 16
# The decoder buffers only what it cannot yet classify (part headers, a possible boundary);
# bounding it keeps garbage without boundaries from growing memory.
_DECODER_BUFFER_MAX = READ_SIZE + 64 * 1024
FILE_FIELD = "file"
# RFC 2046 boundary: 1..70 "bchars", not ending in a space.
BOUNDARY_RE = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")


class VideoWriter(Protocol):
    @property
    def file_id(self) -> object: ...

    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...


class VideoStorage(Protocol):
    def open_video_upload(self, filename: str, metadata: dict) -> VideoWriter: ...


@dataclass
class ReceivedVideo:
    """A video stored completely: its GridFS id, sniffed type, size and the small text fields."""

    video_fid: str
    filename: str
    content_type: str
    size: int
    fields: dict[str, str] = field(default_factory=dict)


def boundary(content_type: str) -> bytes:
    """The boundary of a multipart/form-data Content-Type; BadRequest for any other body."""
    mimetype, options = parse_options_header(content_type)
    if mimetype != "multipart/form-data":
        raise BadRequest("the body must be multipart/form-data with one file part named 'file'")
    value = options.get("boundary", "")
    if not BOUNDARY_RE.fullmatch(value):
        raise BadRequest("the multipart boundary is missing or invalid")
    return value.encode("ascii")


def receive_upload(
    stream: IO[bytes],
    boundary: bytes,
    *,
    storage: VideoStorage,
    metadata: dict,
    max_body_bytes: int,
    check_fields: Callable[[dict[str, str]], object],
) -> ReceivedVideo:
    """Store the single `file` part of a multipart body in `storage`.

    `check_fields` is called with the text fields received so far each time one is complete, and
    raises (BadRequest) to refuse them: fields sent before the file are thereby refused before a
    byte of video is stored, fields after it before the video is committed.

    Raises BadRequest / PayloadTooLarge / UnsupportedMediaType for bad input. Whatever goes wrong
    (including a dependency failure or the client vanishing), a partially written video is aborted,
    so a failed upload leaves nothing behind.
    """
    decoder = MultipartDecoder(boundary, max_form_memory_size=_DECODER_BUFFER_MAX)
    writer: VideoWriter | None = None
    try:
        upload, writer = _consume(
            _events(stream, decoder, max_body_bytes),
            storage=storage,
            metadata=metadata,
            check_fields=check_fields,
        )
        writer.close()
        return upload
    except BaseException:
        if writer is not None:
            _abort(writer)
        raise


def _consume(
    events: Iterator[Event],
    *,
    storage: VideoStorage,
    metadata: dict,
    check_fields: Callable[[dict[str, str]], object],
):
    writer: VideoWriter | None = None
    upload: ReceivedVideo | None = None
    fields: dict[str, str] = {}
    head = bytearray()  # the file's first bytes, held back until the container is recognised
    current: str | None = None  # "file" or the name of the text field whose data follows
    field_value = bytearray()
    try:
        for event in events:
            if isinstance(event, File):
                if event.name != FILE_FIELD:
                    raise BadRequest(f"unexpected file part {event.name!r}; send one file part named 'file'")
                if upload is not None or current == FILE_FIELD:
                    raise BadRequest("send exactly one file part named 'file', not several")
                current = FILE_FIELD
                upload = ReceivedVideo(video_fid="", filename=clean_filename(event.filename), content_type="", size=0)
            elif isinstance(event, Field):
                if not event.name:
                    raise BadRequest("every form part needs a name")
                if event.name == FILE_FIELD:
                    # curl -F file=clip.mp4 (without @) sends the name as text, not the file.
                    raise BadRequest(
                        "the 'file' part has no filename, so it is not a file upload (curl -F file=@clip.mp4)",
                        field=FILE_FIELD,
                    )
                if event.name in fields:
                    raise BadRequest(f"form field {event.name!r} was sent more than once", field=event.name)
                if len(fields) >= MAX_FIELDS:
                    raise BadRequest(f"too many form fields (at most {MAX_FIELDS})")
                current, field_value = event.name, bytearray()
            elif isinstance(event, Data) and current == FILE_FIELD:
                if writer is None:
                    head += event.data
                    if len(head) >= SNIFF_BYTES or not event.more_data:
                        writer = _start(bytes(head), upload, storage=storage, metadata=metadata)
                        head = bytearray()
                elif event.data:
                    writer.write(event.data)
                    upload.size += len(event.data)
                if not event.more_data:
                    current = None
            elif isinstance(event, Data) and current is not None:
                field_value += event.data
                if len(field_value) > FIELD_MAX:
                    raise BadRequest(f"form field {current!r} is longer than {FIELD_MAX} bytes", field=current)
                if not event.more_data:
                    fields[current] = _text(current, field_value)
                    current = None
                    check_fields(fields)
            elif isinstance(event, Epilogue):
                break
        if upload is None:
            raise BadRequest("no file part named 'file' in the form")
        upload.fields = fields
        return upload, writer
    except BaseException:
        if writer is not None:
            _abort(writer)
        raise


def _start(head: bytes, upload: ReceivedVideo, *, storage: VideoStorage, metadata: dict) -> VideoWriter:
    """Check the file's first bytes, then open the GridFS writer and store them."""
    if not head:
        raise BadRequest("the uploaded file is empty")
    content_type = sniff(head[:SNIFF_BYTES])
    if content_type is None:
        raise UnsupportedMediaType("the file is not a supported video or audio file")
    upload.content_type = content_type
    writer = storage.open_video_upload(upload.filename, {**metadata, "content_type": content_type})
    try:
        writer.write(head)
    except BaseException:
        _abort(writer)
        raise
    upload.video_fid = str(writer.file_id)
    upload.size = len(head)
    return writer


def _events(stream: IO[bytes], decoder: MultipartDecoder, max_body_bytes: int) -> Iterator[Event]:
    """Feed the decoder from `stream` one read at a time and yield its events, counting bytes."""
    delimiter = b"--" + decoder.boundary
    received = 0
    fed_tail = b""  # the last bytes given to the decoder, to spot a delimiter cut by a read
    held = b""
    while True:
        chunk = stream.read(READ_SIZE)
        if chunk:
            received += len(chunk)
            # Content-Length was checked up front, but chunked bodies have none: count here too.
            if received > max_body_bytes:
                raise too_large(max_body_bytes)
            data, held = _hold_back_delimiter_suffix(fed_tail, held + chunk, delimiter)
            fed_tail = (fed_tail + data[-(len(delimiter) + 4) :])[-(len(delimiter) + 4) :]
        else:
            data, held = held, b""
        try:
            if data:
                decoder.receive_data(data)
            if not chunk:
                decoder.receive_data(None)
            while (event := decoder.next_event()) is not NEED_DATA:
                yield event
                if isinstance(event, Epilogue):
                    return
        except RequestEntityTooLarge:
            raise BadRequest("malformed multipart body: a part header or preamble is too long") from None
        except (ValueError, LookupError, AttributeError, TypeError) as exc:
            # werkzeug signals truncated or garbled multipart with ValueError (and, for some
            # hostile inputs, lower-level errors); none of them is our bug, all are bad input.
            log.info("malformed multipart body: %r", exc)
            raise BadRequest("malformed multipart body") from None
        if not chunk:
            # The decoder raises on a premature end; reaching here means it produced no epilogue.
            raise BadRequest("malformed multipart body")


def _hold_back_delimiter_suffix(fed_tail: bytes, data: bytes, delimiter: bytes) -> tuple[bytes, bytes]:
    """Split `data` into (feed now, keep for the next read).

    Werkzeug 3.1.9's MultipartDecoder mis-trims when its buffer ends with a delimiter followed by
    only part of its suffix (e.g. "\r\n--BOUNDARY-"): it hands out the delimiter's CR as file
    data, so a read ending there would corrupt the video. Holding back the 1-3 bytes after a
    delimiter near the end until more data (or the end of the body) arrives avoids that state.
    """
    window = fed_tail + data[-(len(delimiter) + 3) :]
    at = window.rfind(delimiter, max(0, len(window) - len(delimiter) - 3))
    if at == -1:
        return data, b""
    after = len(window) - (at + len(delimiter))
    if after == 0 or after > len(data):
        return data, b""
    return data[:-after], data[-after:]


def too_large(limit: int) -> PayloadTooLarge:
    mib = 1024 * 1024
    size = f"{limit // mib} MiB" if limit % mib == 0 else f"{limit} bytes"
    return PayloadTooLarge(f"the upload is larger than {size}")


def _text(name: str, value: bytearray) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(f"form field {name!r} is not UTF-8 text", field=name) from None


def _abort(writer: VideoWriter) -> None:
    try:
        writer.abort()
    except Exception:  # noqa: BLE001 - the original error matters more; log this one
        log.exception("could not delete a partial upload")
