"""Recognise video containers from their first bytes (pure logic, no I/O)."""

from __future__ import annotations

# How many leading bytes `sniff` wants to see: enough for three MPEG-TS packets.
SNIFF_BYTES = 512

_TS_PACKET = 188
_ASF_GUID = bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")


def sniff(head: bytes) -> str | None:
    """Return the container's MIME type when `head` starts like a known video container, else None.

    The client's Content-Type and file extension are not trusted: only the bytes decide, so the
    converter never gets a PDF or an executable to feed into ffmpeg.
    """
    if head[4:8] == b"ftyp":  # ISO-BMFF: mp4, mov, m4v, 3gp
        return "video/mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):  # EBML: mkv, webm
        return "video/x-matroska"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "video/x-msvideo"
    if head.startswith(b"FLV\x01"):
        return "video/x-flv"
    if head.startswith(b"\x00\x00\x01\xba"):  # MPEG program stream pack header
        return "video/mpeg"
    if head.startswith(_ASF_GUID):  # wmv / asf
        return "video/x-ms-asf"
    if head.startswith(b"OggS"):
        return "video/ogg"
    if _is_mpeg_ts(head):
        return "video/mp2t"
    return None


def _is_mpeg_ts(head: bytes) -> bool:
    # A lone 0x47 is just the letter "G"; require the sync byte at the start of every packet we
    # can see, and at least two packets, before calling it a transport stream.
    syncs = range(0, len(head), _TS_PACKET)
    return len(head) > _TS_PACKET and all(head[i] == 0x47 for i in syncs)
