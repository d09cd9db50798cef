"""The MP3's ID3v2.3 tag, finished in Python: the source's useful tags kept, its other metadata dropped, the title
and the cover added.

ffmpeg (with -id3v2_version 3) copies all of the source's metadata into the tag: besides the title, artist and the
like, container details (major_brand, ...) and whatever a camera or phone recorded, such as where the video was shot
(`location`). Which tags a source has is only known once ffmpeg has read it, so instead of a probe before the
conversion (a second program start per job) the tag ffmpeg wrote is filtered afterwards: the frames in KEEP stay,
the `comment` ffmpeg writes as a TXXX frame becomes a real COMM frame, the rest goes. The file name (user input)
becomes the title only here, as frame data: it never reaches ffmpeg's command line.
"""

from __future__ import annotations

import os
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

# Title, artist, album, year/day-month/time (ffmpeg splits `date` into these in v2.3), the encoder, track and disc
# numbers, genre, album artist, comment, cover.
KEEP = frozenset({"TIT2", "TPE1", "TALB", "TYER", "TDAT", "TIME", "TSSE", "TRCK", "TPOS", "TCON", "TPE2", "COMM",
                  "APIC"})
_HEADER = struct.Struct(">3sBBBI")  # "ID3", major, revision, flags, size (syncsafe)
_FRAME = struct.Struct(">4sIH")     # id, size (plain in v2.3), flags
FRONT_COVER = 3                     # APIC picture type
_COPY_BYTES = 1024 * 1024
# ffmpeg writes whatever text the source's metadata holds: a tag larger than this is not read into memory (the MP3
# gets a new one without the source's tags), and a kept text frame larger than MAX_TEXT_BYTES is dropped.
MAX_TAG_BYTES = 1024 * 1024
MAX_TEXT_BYTES = 16 * 1024


@dataclass(frozen=True)
class Frame:
    id: str
    data: bytes


def read_tag(head: bytes) -> tuple[list[Frame], int] | None:
    """The frames of the ID3v2.3 tag at the start of `head` and the tag's whole size; None when there is none (or it
    is of another version, or has flags this reader does not handle: ffmpeg writes none of them)."""
    if len(head) < _HEADER.size:
        return None
    magic, major, _, flags, _ = _HEADER.unpack_from(head)
    if magic != b"ID3" or major != 3 or flags:
        return None
    size = _syncsafe(head[6:10])
    if size is None or _HEADER.size + size > len(head):
        return None
    frames, at, end = [], _HEADER.size, _HEADER.size + size
    while at + _FRAME.size <= end:
        raw_id, length, _ = _FRAME.unpack_from(head, at)
        if raw_id[:1] == b"\0":  # padding
            break
        at += _FRAME.size
        if at + length > end:
            return None
        frames.append(Frame(raw_id.decode("latin-1"), head[at:at + length]))
        at += length
    return frames, end


def build_tag(frames: list[Frame]) -> bytes:
    body = b"".join(_FRAME.pack(frame.id.encode("latin-1"), len(frame.data), 0) + frame.data for frame in frames)
    size = len(body)
    syncsafe = bytes(((size >> shift) & 0x7F) for shift in (21, 14, 7, 0))
    return b"ID3\x03\x00\x00" + syncsafe + body


def text_frame(frame_id: str, text: str) -> Frame:
    """A text frame: ISO-8859-1 when it fits, else UTF-16 with a byte-order mark (v2.3 knows no UTF-8)."""
    return Frame(frame_id, _encoded(text))


def comment_frame(text: str) -> Frame:
    """COMM with no language ('XXX') and an empty description, as players show it."""
    encoded = _encoded(text)
    empty = b"\0" if encoded[0] == 0 else b"\xff\xfe\0\0"
    return Frame("COMM", encoded[:1] + b"XXX" + empty + encoded[1:])


def picture_frame(jpeg: bytes) -> Frame:
    """APIC: the front cover, a JPEG, no description."""
    return Frame("APIC", b"\0image/jpeg\0" + bytes([FRONT_COVER]) + b"\0" + jpeg)


def decode_text(data: bytes) -> list[str]:
    """The strings of a text frame's data (after its encoding byte, NUL-separated); [] for an unknown encoding."""
    if not data:
        return []
    encoding, raw = data[0], data[1:]
    if encoding == 0:
        return raw.decode("latin-1").split("\0")
    if encoding == 1:
        parts = [raw[i:i + 2] for i in range(0, len(raw) - 1, 2)]
        strings, current = [], b""
        for pair in parts:
            if pair == b"\0\0":
                strings.append(current.decode("utf-16", "replace"))
                current = b""
            else:
                current += pair
        return [*strings, current.decode("utf-16", "replace")]
    return []


def kept_frames(frames: list[Frame]) -> list[Frame]:
    """The frames worth keeping; a TXXX `comment` (how ffmpeg writes a comment) as COMM."""
    kept = []
    for frame in frames:
        if len(frame.data) > MAX_TEXT_BYTES and frame.id != "APIC":
            continue
        if frame.id in KEEP:
            kept.append(frame)
        elif frame.id == "TXXX":
            strings = decode_text(frame.data)
            if len(strings) >= 2 and strings[0].lower() == "comment" and not any(f.id == "COMM" for f in frames):
                kept.append(comment_frame(strings[1]))
    return kept


def finish_tag(path: Path, *, title: str, cover: bytes | None = None) -> None:
    """Rewrites the MP3 at `path` with its tag filtered (kept_frames), `title` as the title if the source had none
    ('' adds none) and `cover` (JPEG bytes) as the front cover. The audio after the tag is copied unchanged."""
    with path.open("rb") as mp3:
        head = mp3.read(_HEADER.size)
        size = _syncsafe(head[6:10]) if head[:3] == b"ID3" else None
        if size is not None and size > MAX_TAG_BYTES:
            found = ([], _HEADER.size + size) if head[3:6] == b"\x03\x00\x00" else None  # skipped unread
        else:
            found = read_tag(head + mp3.read(size or 0)) if size is not None else None
        frames, tag_end = found if found is not None else ([], 0)
        frames = kept_frames(frames)
        if title and not any(frame.id == "TIT2" and "".join(decode_text(frame.data)).strip() for frame in frames):
            frames = [text_frame("TIT2", title), *[frame for frame in frames if frame.id != "TIT2"]]
        if cover is not None:
            frames = [*[frame for frame in frames if frame.id != "APIC"], picture_frame(cover)]
        tmp = path.with_name(path.name + ".tag")
        try:
            with tmp.open("wb") as out:
                out.write(build_tag(frames))
                mp3.seek(tag_end)
                shutil.copyfileobj(mp3, out, _COPY_BYTES)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


def _encoded(text: str) -> bytes:
    try:
        return b"\0" + text.encode("latin-1")
    except UnicodeEncodeError:
        return b"\1" + text.encode("utf-16")  # Python writes the BOM


def _syncsafe(four: bytes) -> int | None:
    if len(four) != 4 or any(byte & 0x80 for byte in four):
        return None
    return (four[0] << 21) | (four[1] << 14) | (four[2] << 7) | four[3]
