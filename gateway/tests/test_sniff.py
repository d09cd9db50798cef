"""sniff(): known video containers and audio files are recognised from their first bytes, anything else is not."""

from __future__ import annotations

import pytest

from gateway.sniff import sniff

TS_PACKET = b"\x47" + b"\x00" * 187
OGG_PAGE = b"OggS\x00\x02" + bytes(20) + b"\x01\x1e"  # a first page: header, one segment of 30 bytes


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00", "video/mp4"),
        (b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00", "video/mp4"),  # QuickTime .mov
        (b"\x00\x00\x00\x1cftyp3gp4\x00\x00\x00\x00", "video/mp4"),  # 3GP
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01", "video/x-matroska"),  # mkv / webm
        (b"RIFF\x24\x00\x10\x00AVI LIST", "video/x-msvideo"),
        (b"FLV\x01\x05\x00\x00\x00\x09", "video/x-flv"),
        (b"\x00\x00\x01\xba\x44\x00\x04\x00", "video/mpeg"),
        (bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c") + b"\x00" * 8, "video/x-ms-asf"),
        (b"OggS\x00\x02\x00\x00", "video/ogg"),
        (TS_PACKET * 3, "video/mp2t"),
        (TS_PACKET * 2, "video/mp2t"),
        (b"\x00\x00\x00\x20ftypM4A \x00\x00\x02\x00", "audio/mp4"),
        (b"\x00\x00\x00\x20ftypM4B \x00\x00\x02\x00", "audio/mp4"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "audio/wav"),
        (b"fLaC\x00\x00\x00\x22", "audio/flac"),
        (b"ID3\x04\x00\x00\x00\x00", "audio/mpeg"),
        (b"\xff\xfb\x90\x64", "audio/mpeg"),  # MPEG-1 layer III, 128 kbit/s, 44.1 kHz, no ID3 tag
        (b"\xff\xf3\x48\xc4", "audio/mpeg"),  # MPEG-2 layer III
        (OGG_PAGE + b"\x01vorbis\x00\x00", "audio/ogg"),
        (OGG_PAGE + b"OpusHead\x01\x02", "audio/ogg"),
        (OGG_PAGE + b"\x80theora\x03", "video/ogg"),
    ],
    ids=["mp4", "mov", "3gp", "mkv", "avi", "flv", "mpeg-ps", "asf", "ogg", "mpeg-ts", "mpeg-ts-2-packets",
         "m4a", "m4b", "wav", "flac", "mp3-id3", "mp3-bare", "mp3-mpeg2", "ogg-vorbis", "ogg-opus", "ogg-theora"],
)
def test_known_containers(head, expected):
    assert sniff(head) == expected


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"%PDF-1.7\n%\xe2\xe3\xcf\xd3",
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
        b"PK\x03\x04\x14\x00\x00\x00",
        b"MZ\x90\x00\x03\x00\x00\x00",
        b"RIFF\x24\x00\x00\x00WEBPVP8 ",  # RIFF but an image
        b"GIF89a\x01\x00\x01\x00",  # starts with 0x47 like an MPEG-TS sync byte
        TS_PACKET,  # a single packet could be any text starting with "G"
        TS_PACKET + b"\x00" * 188,  # second sync byte missing
        b"\xff\xf1\x50\x80",  # ADTS AAC: frame sync, but layer bits 00
        b"\xff\xfb\xf0\x64",  # layer III with the forbidden bit rate index 15
        b"\xff\xfb\x9c\x64",  # ... with the reserved sample rate index 3
        b"\xff\xd8\xff\xe0",  # JPEG
        b"hello world, this is plain text",
    ],
    ids=["empty", "pdf", "png", "zip", "exe", "webp", "gif", "one-ts-packet", "bad-second-sync", "adts", "mp3-bad-bitrate",
         "mp3-bad-rate", "jpeg", "text"],
)
def test_anything_else_is_rejected(head):
    assert sniff(head) is None


@pytest.mark.parametrize(("head", "expected"), [
    (b"ID3\x03\x00\x00\x00\x00\x00\x00#EXTM3U\n", "audio/mpeg"),
    (b"RIFF\x00\x00\x00\x00WAVE\nffconcat version 1.0\n", "audio/wav"),
    (b"fLaC\nffconcat version 1.0\n", "audio/flac"),
    (b"<!--ftypM4A -->\n<MPD ", "audio/mp4"),
    (OGG_PAGE + b"\x01vorbis\n#EXTM3U\n", "audio/ogg"),
], ids=["id3-hls", "wav-concat", "flac-concat", "m4a-dash", "ogg-hls"])
def test_text_behind_an_audio_signature_passes_the_check(head, expected):
    # Only the first bytes are checked: the converter reads these with the one demuxer named (converter tests,
    # "crafted audio upload"), which fails on them instead of opening the files they name.
    assert sniff(head) == expected
