"""Recognise video containers and audio files from their first bytes (pure logic, no I/O)."""

from __future__ import annotations

# How many leading bytes `sniff` wants to see: enough for three MPEG-TS packets.
SNIFF_BYTES = 512

_TS_PACKET = 188
_ASF_GUID = bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")
# ISO-BMFF major brands of audio-only files (iTunes' .m4a, .m4b audiobooks, .m4p).
_AUDIO_BRANDS = (b"M4A ", b"M4B ", b"M4P ")
# The first packet of an Ogg stream says its codec: these are audio.
_OGG_AUDIO = (b"\x01vorbis", b"OpusHead", b"\x7fFLAC", b"Speex   ")


def sniff(head: bytes) -> str | None:
    """Return the MIME type of the container when `head` starts like a known video container or audio file,
    else None (a key of mp3core.contract.CONTAINERS).

    The client's Content-Type and file extension are not trusted: only the bytes decide, so the
    converter never gets a PDF or an executable to feed into ffmpeg.
    """
    if head[4:8] == b"ftyp":  # ISO-BMFF: mp4, mov, m4v, 3gp; m4a
        return "audio/mp4" if head[8:12] in _AUDIO_BRANDS else "video/mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):  # EBML: mkv, webm
        return "video/x-matroska"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "video/x-msvideo"
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return "audio/wav"
    if head.startswith(b"FLV\x01"):
        return "video/x-flv"
    if head.startswith(b"\x00\x00\x01\xba"):  # MPEG program stream pack header
        return "video/mpeg"
    if head.startswith(_ASF_GUID):  # wmv / asf
        return "video/x-ms-asf"
    if head.startswith(b"OggS"):
        return "audio/ogg" if _ogg_first_packet(head).startswith(_OGG_AUDIO) else "video/ogg"
    if head.startswith(b"fLaC"):
        return "audio/flac"
    if head.startswith(b"ID3") or _is_mp3_frame(head):
        return "audio/mpeg"
    if _is_mpeg_ts(head):
        return "video/mp2t"
    return None


def _ogg_first_packet(head: bytes) -> bytes:
    # Page header: 27 bytes, the last of them the number of segments, then one length byte per segment.
    if len(head) < 27:
        return b""
    return head[27 + head[26]:]


def _is_mp3_frame(head: bytes) -> bool:
    """An MPEG audio Layer III frame header (a bare MP3 with no ID3 tag): 11 sync bits, a known MPEG version,
    layer III, a bit rate and sample rate that exist. ADTS AAC (layer bits 00) is not one."""
    if len(head) < 4 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return False
    version, layer = (head[1] >> 3) & 0b11, (head[1] >> 1) & 0b11
    bitrate, sample_rate = head[2] >> 4, (head[2] >> 2) & 0b11
    return version != 0b01 and layer == 0b01 and bitrate not in (0, 15) and sample_rate != 0b11


def _is_mpeg_ts(head: bytes) -> bool:
    # A lone 0x47 is just the letter "G"; require the sync byte at the start of every packet we
    # can see, and at least two packets, before calling it a transport stream.
    syncs = range(0, len(head), _TS_PACKET)
    return len(head) > _TS_PACKET and all(head[i] == 0x47 for i in syncs)
