"""converter.id3: the ID3v2.3 tag ffmpeg wrote, filtered, titled and given a cover (pure bytes, no ffmpeg)."""

from __future__ import annotations

import pytest

from converter import id3
from converter.id3 import Frame

AUDIO = b"\xff\xfb\x90\x00" + bytes(413)  # stands for the MPEG frames after the tag


def txxx(description: str, value: str) -> Frame:
    return Frame("TXXX", b"\0" + description.encode("latin-1") + b"\0" + value.encode("latin-1"))


def frames_of(data: bytes) -> list[tuple[str, list[str]]]:
    found = id3.read_tag(data)
    assert found is not None
    return [(frame.id, id3.decode_text(frame.data)) for frame in found[0] if frame.id != "APIC"]


def test_a_tag_round_trips():
    frames = [id3.text_frame("TIT2", "Tïtle"), id3.text_frame("TPE1", "日本")]
    tag = id3.build_tag(frames)
    assert tag[:5] == b"ID3\x03\x00" and id3.read_tag(tag + AUDIO) == (frames, len(tag))
    assert frames_of(tag) == [("TIT2", ["Tïtle"]), ("TPE1", ["日本"])]


def test_text_is_latin1_when_it_fits_else_utf16_with_a_bom():
    assert id3.text_frame("TIT2", "café").data == b"\0caf\xe9"
    assert id3.text_frame("TIT2", "日").data == b"\1\xff\xfe\xe5\x65"


@pytest.mark.parametrize("data", [b"", b"ID3", b"ID3\x04\x00\x00\x00\x00\x00\x00", b"ID3\x03\x00\x80\x00\x00\x00\x00",
                                  b"ID3\x03\x00\x00\x00\x00\x00\x7f" + b"TIT2\x00\x00\x00\x05\x00\x00\0ab",
                                  b"ID3\x03\x00\x00\x00\x00\x00\x0f" + b"TIT2\x00\x00\xff\xff\x00\x00\0ab\0\0\0",
                                  AUDIO])
def test_anything_but_a_plain_v2_3_tag_is_no_tag(data):
    # Another version, flags (unsynchronisation, extended header), a size past the data, a frame past the tag.
    assert id3.read_tag(data) is None


def test_padding_ends_the_frames():
    tag = bytearray(id3.build_tag([id3.text_frame("TIT2", "a")]))
    tag[6:10] = bytes([0, 0, 0, len(tag) - 10 + 20])
    assert frames_of(bytes(tag) + bytes(20)) == [("TIT2", ["a"])]


def test_only_useful_frames_are_kept_and_the_comment_becomes_comm():
    frames = [txxx("major_brand", "isom"), id3.text_frame("TIT2", "Song"), id3.text_frame("TPE1", "Artist"),
              id3.text_frame("TALB", "Album"), id3.text_frame("TYER", "2021"), txxx("location", "+48.85+002.29/"),
              txxx("COMMENT", "nice"), id3.text_frame("TSSE", "Lavf59.27.100"), Frame("PRIV", b"x\0secret"),
              Frame("CHAP", b"ch0\0")]
    kept = id3.kept_frames(frames)
    assert [frame.id for frame in kept] == ["TIT2", "TPE1", "TALB", "TYER", "COMM", "TSSE"]
    assert id3.decode_text(kept[4].data[:1] + kept[4].data[4:]) == ["", "nice"]  # no language, no description


def write_mp3(tmp_path, frames: list[Frame]):
    path = tmp_path / "audio.mp3"
    path.write_bytes(id3.build_tag(frames) + AUDIO)
    return path


def test_finish_tag_titles_an_untitled_mp3_after_its_file_and_keeps_the_audio(tmp_path):
    path = write_mp3(tmp_path, [txxx("location", "x"), id3.text_frame("TSSE", "Lavf")])
    id3.finish_tag(path, title="<img src=x onerror=alert(1)> ünï 日本")
    data = path.read_bytes()
    assert frames_of(data) == [("TIT2", ["<img src=x onerror=alert(1)> ünï 日本"]), ("TSSE", ["Lavf"])]
    assert data.endswith(AUDIO) and len(data) == id3.read_tag(data)[1] + len(AUDIO)
    assert [p.name for p in tmp_path.iterdir()] == ["audio.mp3"]


@pytest.mark.parametrize("source_title", ["From the source", "日本"])
def test_the_source_s_title_wins_over_the_file_name(tmp_path, source_title):
    path = write_mp3(tmp_path, [id3.text_frame("TIT2", source_title)])
    id3.finish_tag(path, title="upload name")
    assert frames_of(path.read_bytes()) == [("TIT2", [source_title])]


def test_an_empty_source_title_is_replaced(tmp_path):
    path = write_mp3(tmp_path, [id3.text_frame("TIT2", " ")])
    id3.finish_tag(path, title="name")
    assert frames_of(path.read_bytes()) == [("TIT2", ["name"])]


def test_an_mp3_without_a_tag_gets_one(tmp_path):
    path = tmp_path / "audio.mp3"
    path.write_bytes(AUDIO)
    id3.finish_tag(path, title="")
    assert path.read_bytes() == id3.build_tag([]) + AUDIO


def test_the_cover_is_a_front_cover_jpeg(tmp_path):
    path = write_mp3(tmp_path, [id3.text_frame("TIT2", "a")])
    id3.finish_tag(path, title="b", cover=b"\xff\xd8jpeg\xff\xd9")
    frames, _ = id3.read_tag(path.read_bytes())
    assert frames[-1] == Frame("APIC", b"\0image/jpeg\0\x03\0\xff\xd8jpeg\xff\xd9")


def test_a_huge_tag_is_replaced_without_being_read(tmp_path):
    path = write_mp3(tmp_path, [id3.text_frame("TIT2", "x" * (id3.MAX_TAG_BYTES + 10))])
    id3.finish_tag(path, title="name")
    assert path.read_bytes() == id3.build_tag([id3.text_frame("TIT2", "name")]) + AUDIO


def test_a_huge_text_frame_is_dropped():
    frames = [id3.text_frame("TPE1", "x" * (id3.MAX_TEXT_BYTES + 1)), id3.text_frame("TALB", "a")]
    assert [frame.id for frame in id3.kept_frames(frames)] == ["TALB"]
