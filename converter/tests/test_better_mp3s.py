"""The MP3 options and tags on real ffmpeg, through the handler (fakes only for MongoDB), on generated sources."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from prometheus_client import CollectorRegistry

from converter import convert, handler
from converter.metrics import Metrics
from mp3core.contract import Options
from mp3core.errors import PermanentError
from tests.media import decoded_seconds, ffmpeg, integrated_loudness, probe

VIDEO_FID = "65a1b2c3d4e5f60718293a4b"
JOB_ID = "0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="module")
def tagged_video(media) -> Path:
    """6 s of H.264-less MPEG-4 video and AAC audio, with a title, artist, album, date, comment and a location."""
    path = media / "tagged.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10:duration=6", "-f", "lavfi",
           "-i", "sine=frequency=440:duration=6", "-c:v", "mpeg4", "-c:a", "aac", "-shortest",
           "-metadata", "title=Söng 日本", "-metadata", "artist=The Artist", "-metadata", "album=The Album",
           "-metadata", "date=2021-03-04", "-metadata", "comment=A comment", "-metadata", "location=+48.85+002.29/",
           str(path))
    return path


METRICS = Metrics.create(CollectorRegistry())


@pytest.fixture
def convert_upload(message, videos, mp3s, jobs, tmp_path):
    """convert_upload(source, filename, container, **options) -> (job, path of the stored MP3), as the converter
    handles the upload's message."""
    work_dir = tmp_path / "work"
    work_dir.mkdir()

    def convert_upload(source: Path, filename: str = "clip.mp4", container: str | None = "video/mp4", **options):
        videos.files[VIDEO_FID] = {"data": source.read_bytes()}
        result = handler.handle(message(filename=filename, container=container, options=Options(**options).to_dict()),
                                jobs=jobs, videos=videos, mp3s=mp3s, work_dir=work_dir, max_attempts=3,
                                metrics=METRICS)
        assert list(work_dir.iterdir()) == []  # the cover and the tagged copy too are gone
        job = jobs.docs[JOB_ID]
        out = tmp_path / "out.mp3"
        out.write_bytes(mp3s.files[result["mp3_fid"]]["data"])
        return job, out

    return convert_upload


def test_tags_come_from_the_source_as_id3v2_3(tagged_video, convert_upload):
    _, mp3 = convert_upload(tagged_video, filename="upload name.mp4")
    assert mp3.read_bytes()[:4] == b"ID3\x03"
    tags = probe(mp3)["format"]["tags"]
    assert tags.pop("encoder").startswith("Lavf")
    # The source's title, artist, album, date and comment; none of its other metadata (where it was shot).
    assert tags == {"title": "Söng 日本", "artist": "The Artist", "album": "The Album", "date": "2021-03-04",
                    "comment": "A comment"}


def test_an_untitled_source_is_titled_after_the_uploaded_file(media, convert_upload):
    source = media / "untitled.mkv"
    ffmpeg("-f", "lavfi", "-i", "sine=duration=1", "-c:a", "aac", "-fflags", "+bitexact", str(source))
    name = "<img src=x onerror=alert(1)>; rm -rf ~ 'ü\".final.mkv"
    _, mp3 = convert_upload(source, filename=name, container="video/x-matroska")
    tags = probe(mp3)["format"]["tags"]
    assert tags["title"] == "<img src=x onerror=alert(1)>; rm -rf ~ 'ü\".final"
    assert set(tags) == {"title", "encoder"}


# --- trim -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("options", "args"), [
    (Options(), []),
    (Options(start=0), []),
    (Options(start=1.5), ["-ss", "1.5"]),
    (Options(end=3), ["-t", "3"]),
    (Options(start=61.25, end=3600.125), ["-ss", "61.25", "-t", "3538.875"]),
])
def test_trim_is_input_seeking_before_the_input(tmp_path, options, args):
    command = convert.ffmpeg_args(tmp_path / "in", tmp_path / "out.mp3", options, container="video/mp4")
    at = command.index("-i")
    assert command[at - len(args) - 4:at] == ["-f", "mov", "-protocol_whitelist", "file", *args]
    assert command.count("-ss") == (1 if args[:1] == ["-ss"] else 0)


@pytest.mark.parametrize(("options", "input_s", "output_s", "problem"), [
    (Options(), 6.0, 6.0, None),
    (Options(), None, None, None),
    (Options(start=2), 6.0, 4.0, None),
    (Options(start=2, end=5), None, 3.0, None),
    (Options(end=6.4), 6.0, 6.0, None),  # a hair past the end: containers round their durations
    (Options(start=6), 6.0, 0.0, "start (6 s) is past the end of the file (6 s)"),
    (Options(start=1, end=7.5), 6.0, 5.0, "end (7.5 s) is past the end of the file (6 s)"),
])
def test_trim_against_the_input_s_duration(options, input_s, output_s, problem):
    assert convert.output_duration(options, input_s) == output_s
    if input_s is not None:
        assert convert.trim_problem(options, input_s) == problem


@pytest.mark.parametrize(("options", "seconds"), [
    ({"start": 1.5, "end": 4}, 2.5),
    ({"start": 2}, 4.0),
    ({"end": 3.25}, 3.25),
    ({"start": 0.5, "end": 5.5, "bitrate": 128}, 5.0),
])
def test_trim_cuts_the_mp3_and_the_job_s_duration_is_the_mp3_s(tagged_video, convert_upload, options, seconds):
    job, mp3 = convert_upload(tagged_video, **options)
    assert decoded_seconds(mp3) == pytest.approx(seconds, abs=0.1)
    assert job["duration_s"] == pytest.approx(seconds, abs=0.1)


@pytest.mark.parametrize(("options", "reason"), [
    ({"start": 10}, "start (10 s) is past the end of the file (6 s)"),
    ({"start": 2, "end": 9}, "end (9 s) is past the end of the file (6 s)"),
])
def test_trim_past_the_end_fails_the_job_with_the_reason(tagged_video, convert_upload, mp3s, options, reason):
    with pytest.raises(PermanentError) as caught:
        convert_upload(tagged_video, **options)
    assert str(caught.value) == reason and mp3s.files == {}


def test_a_start_past_the_end_of_an_input_of_unknown_length_fails_too(media, convert_upload):
    streamed = media / "streamed.mkv"  # written to a pipe: the container does not say its duration
    streamed.write_bytes(subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "sine=duration=2", "-c:a", "aac", "-f", "matroska",
         "pipe:1"], capture_output=True, check=True, timeout=60).stdout)
    with pytest.raises(PermanentError, match=r"^start \(5 s\) is past the end of the file$"):
        convert_upload(streamed, container="video/x-matroska", start=5)


# --- loudness ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def quiet_video(media) -> Path:
    """12 s of a quiet warbling tone (about -36 LUFS) under a test picture."""
    path = media / "quiet.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10:duration=12", "-f", "lavfi",
           "-i", "sine=frequency=330:duration=12,vibrato=f=3:d=0.5,volume=0.03", "-c:v", "mpeg4", "-c:a", "aac",
           "-b:a", "128k", "-shortest", str(path))
    return path


def test_normalize_brings_the_loudness_to_minus_16_lufs(quiet_video, convert_upload):
    assert integrated_loudness(quiet_video) < -30
    _, mp3 = convert_upload(quiet_video, normalize=True)
    assert integrated_loudness(mp3) == pytest.approx(-16.0, abs=1.0)
    assert decoded_seconds(mp3) == pytest.approx(12.0, abs=0.1)
    # loudnorm hands on 192 kHz; the encoder's nearest rate is what comes out unless sample_rate says otherwise.
    assert probe(mp3)["streams"][0]["sample_rate"] == "48000"


def test_normalize_keeps_a_requested_sample_rate(quiet_video, convert_upload):
    _, mp3 = convert_upload(quiet_video, normalize=True, sample_rate=44100, start=2, end=8)
    assert probe(mp3)["streams"][0]["sample_rate"] == "44100"
    assert integrated_loudness(mp3) == pytest.approx(-16.0, abs=1.0)


def test_no_normalize_by_default():
    assert "-af" not in convert.ffmpeg_args(Path("in"), Path("out.mp3"), Options(normalize=False))


# --- cover ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def wide_video(media) -> Path:
    """10 s of 1280x720 blue, green from 0.8 s to 1.3 s and from 3.5 s to 4 s, with sound."""
    path = media / "wide.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=c=blue:s=1280x720:r=10:d=10,"
                                "drawbox=c=green:t=fill:enable='between(t,0.8,1.3)+between(t,3.5,4)'",
           "-f", "lavfi", "-i", "sine=duration=10", "-c:v", "mpeg4", "-q:v", "5", "-c:a", "aac", "-shortest",
           str(path))
    return path


def cover_colour(mp3: Path) -> tuple[int, int, int]:
    """The embedded picture scaled to one pixel: its average colour."""
    rgb = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(mp3), "-map", "0:v:0", "-vf", "scale=1:1",
                          "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         capture_output=True, check=True, timeout=60).stdout
    return tuple(rgb)  # type: ignore[return-value]


def test_cover_is_the_frame_at_a_tenth_as_a_front_cover_jpeg_600_px_wide(wide_video, convert_upload):
    _, mp3 = convert_upload(wide_video, cover=True)
    [audio, picture] = probe(mp3)["streams"]
    assert audio["codec_name"] == "mp3"
    assert (picture["codec_name"], picture["width"], picture["disposition"]["attached_pic"]) == ("mjpeg", 600, 1)
    assert picture["tags"]["comment"] == "Cover (front)"
    red, green, blue = cover_colour(mp3)
    assert green > 100 and blue < 60, (red, green, blue)  # the frame at 1 s, not the first (blue) one


def test_a_trimmed_mp3_s_cover_is_a_tenth_into_what_was_kept(wide_video, convert_upload):
    _, mp3 = convert_upload(wide_video, cover=True, start=3, end=9)  # a tenth of 6 s after 3 s: 3.6 s
    red, green, blue = cover_colour(mp3)
    assert green > 100 and blue < 60, (red, green, blue)


def test_no_cover_by_default(wide_video, convert_upload):
    _, mp3 = convert_upload(wide_video)
    assert [stream["codec_type"] for stream in probe(mp3)["streams"]] == ["audio"]


@pytest.fixture
def fake_ffmpeg_for_cover(monkeypatch):
    """The cover run fails (as on a video stream ffmpeg cannot decode); the conversion itself is the real one."""
    real = convert.cover_args
    monkeypatch.setattr(convert, "cover_args", lambda *a, **kw: [*real(*a, **kw)[:-1], "/nonexistent/dir/cover.jpg"])


def test_a_video_whose_picture_cannot_be_read_still_gets_its_mp3_without_a_cover(tagged_video, convert_upload,
                                                                                  fake_ffmpeg_for_cover):
    _, mp3 = convert_upload(tagged_video, cover=True)
    assert [stream["codec_type"] for stream in probe(mp3)["streams"]] == ["audio"]


def test_the_cover_run_reads_the_same_one_container_through_the_file_protocol_only(tmp_path):
    args = convert.cover_args(tmp_path / "video", tmp_path / "cover.jpg", 1.5, container="video/x-matroska")
    at = args.index("-i")
    assert args[at - 8:at] == ["-f", "matroska", "-protocol_whitelist", "file", "-ss", "1.5", "-threads", "1"]
    assert args[args.index("-f", at):] [:2] == ["-f", "mjpeg"]  # written as one JPEG; no image2 anywhere
    assert "image2" not in args and args[args.index("-vf") + 1] == "scale=w='min(600,iw)':h=-1"


def test_the_cover_run_is_under_the_limits_with_no_environment(fake_ffmpeg, tmp_path, monkeypatch):
    seen = tmp_path / "seen"
    fake_ffmpeg(f"ulimit -t > {seen}; ulimit -v >> {seen}; env | grep -v '^PWD=\\|^SHLVL=\\|^_=' | cut -d= -f1 >> {seen}")
    monkeypatch.setenv("MONGO_URI", "mongodb://user:secret@db/")
    limits = convert.Limits(cpu_s=900, memory_mb=512)
    assert convert.cover_frame(tmp_path / "video", tmp_path, 1.0, container="video/mp4", limits=limits) is None
    assert seen.read_text().split() == ["30", str(512 * 1024), "PATH"]  # CPU capped lower still for one frame


def test_audio_files_get_no_cover_run(fake_ffmpeg, tmp_path):
    fake_ffmpeg(f"touch {tmp_path / 'ran'}")
    assert convert.cover_frame(tmp_path / "audio", tmp_path, 1.0, container="audio/flac") is None
    assert not (tmp_path / "ran").exists()


# --- audio files ------------------------------------------------------------------------------------------

AUDIO_FILES = {
    # name: (ffmpeg encoder arguments, file name, the container the gateway recognises it as)
    "wav": (["-c:a", "pcm_s16le"], "tone.wav", "audio/wav"),
    "flac": (["-c:a", "flac"], "tone.flac", "audio/flac"),
    "m4a": (["-c:a", "aac"], "tone.m4a", "audio/mp4"),
    "ogg-vorbis": (["-c:a", "libvorbis"], "tone.ogg", "audio/ogg"),
    "ogg-opus": (["-c:a", "libopus"], "tone.opus", "audio/ogg"),
    "mp3": (["-c:a", "libmp3lame", "-b:a", "128k"], "tone.mp3", "audio/mpeg"),
}


def audio_file(media: Path, name: str, **metadata: str) -> Path:
    encoder, filename, _ = AUDIO_FILES[name]
    path = media / f"{'-'.join(metadata) or 'plain'}-{filename}"
    if not path.exists():
        tags = [arg for key, value in metadata.items() for arg in ("-metadata", f"{key}={value}")]
        ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=4:sample_rate=48000", *encoder, *tags, str(path))
    return path


@pytest.mark.parametrize("name", list(AUDIO_FILES))
def test_each_audio_format_is_converted_with_its_tags(media, convert_upload, name):
    source = audio_file(media, name, title="Tone", artist="Someone")
    job, mp3 = convert_upload(source, filename=source.name, container=AUDIO_FILES[name][2], bitrate=96)
    info = probe(mp3)
    assert [(s["codec_name"], s["bit_rate"]) for s in info["streams"]] == [("mp3", "96000")]
    assert {key: info["format"]["tags"].get(key) for key in ("title", "artist")} == {"title": "Tone",
                                                                                     "artist": "Someone"}
    assert decoded_seconds(mp3) == pytest.approx(4.0, abs=0.1) and job["duration_s"] == pytest.approx(4.0, abs=0.1)


@pytest.mark.parametrize("name", ["wav", "flac"])
def test_an_audio_file_without_tags_is_titled_after_itself_and_gets_no_cover(media, convert_upload, name):
    _, mp3 = convert_upload(audio_file(media, name), filename="my recording.wav.flac",
                            container=AUDIO_FILES[name][2], cover=True)
    info = probe(mp3)
    assert info["format"]["tags"]["title"] == "my recording.wav"
    assert [s["codec_type"] for s in info["streams"]] == ["audio"]


def audio_md5(path: Path) -> str:
    """The MD5 of the audio packets as demuxed (-c copy): the same for two files whose MPEG frames are the same,
    whatever their tags."""
    return subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0", "-c", "copy",
                           "-f", "md5", "-"], capture_output=True, text=True, check=True, timeout=60).stdout.strip()


_KBPS = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
_RATES = (44100, 48000, 32000)


def frames_after_info(data: bytes) -> bytes:
    """An MPEG-1 layer III file's bytes after its ID3v2 tag and its first frame."""
    at = 0
    if data[:3] == b"ID3":
        at = 10 + ((data[6] << 21) | (data[7] << 14) | (data[8] << 7) | data[9])
    header = data[at:at + 4]
    assert header[0] == 0xFF and header[1] & 0xFE == 0xFA, header  # MPEG-1 layer III
    length = 144 * _KBPS[header[2] >> 4] * 1000 // _RATES[(header[2] >> 2) & 3] + ((header[2] >> 1) & 1)
    return data[at + length:]


def test_an_mp3_upload_is_copied_frame_for_frame_and_tagged(media, convert_upload):
    source = audio_file(media, "mp3", artist="Someone")
    job, mp3 = convert_upload(source, filename="the upload.mp3", container="audio/mpeg")
    assert audio_md5(mp3) == audio_md5(source)
    # Byte for byte: after the tag and the first frame (the encoder's Info frame, which each writer makes for
    # its own file), both files are the same MPEG frames.
    assert frames_after_info(mp3.read_bytes()) == frames_after_info(source.read_bytes())
    info = probe(mp3)
    assert [(s["codec_name"], s["bit_rate"]) for s in info["streams"]] == [("mp3", "128000")]  # not 192k
    assert {key: info["format"]["tags"].get(key) for key in ("title", "artist")} == {"title": "the upload",
                                                                                     "artist": "Someone"}
    assert job["duration_s"] == pytest.approx(4.0, abs=0.1)


@pytest.mark.parametrize("options", [{"bitrate": 128}, {"quality": 2}, {"channels": 1}, {"sample_rate": 44100},
                                     {"normalize": True}, {"start": 1}, {"end": 3}])
def test_an_mp3_upload_with_an_option_that_needs_it_is_re_encoded(media, convert_upload, options):
    source = audio_file(media, "mp3")
    assert "copy" not in convert.ffmpeg_args(source, Path("out.mp3"), Options(**options), container="audio/mpeg")
    if options == {"bitrate": 128}:  # the same bit rate, but encoded again: other frames
        _, mp3 = convert_upload(source, container="audio/mpeg", **options)
        assert audio_md5(mp3) != audio_md5(source)


@pytest.mark.parametrize(("options", "container", "copies"), [
    (Options(), "audio/mpeg", True),
    (Options(cover=True), "audio/mpeg", True),  # no picture to take from an MP3: still a copy
    (Options(start=0), "audio/mpeg", True),
    (Options(), "video/mp4", False),
    (Options(), None, False),
    (Options(), "audio/wav", False),
])
def test_what_is_copied(options, container, copies):
    assert convert.copies_audio(options, container) is copies
    args = convert.ffmpeg_args(Path("in"), Path("out.mp3"), options, container=container)
    assert (args[args.index("-c:a") + 1] == "copy") is copies


# --- audio uploads are no way around the demuxer restriction (hostile media) ------------------------------

@pytest.fixture(scope="module")
def secret(media) -> Path:
    """A local media file an attacker would like to read into their MP3."""
    path = media / "secret.m4a"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=1000:duration=3", "-c:a", "aac", str(path))
    return path


def crafted(kind: str, secret: Path) -> tuple[bytes, str]:
    """(content that passes the gateway's check for an audio file but names a local file, that container)."""
    playlist = f"#EXTM3U\n#EXT-X-TARGETDURATION:3\n#EXTINF:3,\nfile:{secret}\n#EXT-X-ENDLIST\n".encode()
    concat = f"ffconcat version 1.0\nfile '{secret}'\n".encode()
    dash = (f'<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT3S">'
            f'<Period><AdaptationSet mimeType="audio/mp4"><Representation id="a" bandwidth="64000">'
            f'<BaseURL>file:{secret}</BaseURL><SegmentBase/></Representation></AdaptationSet></Period></MPD>').encode()
    return {
        "id3-hls": (b"ID3\x03\x00\x00\x00\x00\x00\x00" + playlist, "audio/mpeg"),
        "wav-concat": (b"RIFF\x00\x00\x00\x00WAVE\n" + concat, "audio/wav"),
        "flac-concat": (b"fLaC\n" + concat, "audio/flac"),
        "m4a-dash": (b"<!--ftypM4A -->\n" + dash, "audio/mp4"),
        "ogg-hls": (b"OggS\x00\x02" + bytes(20) + b"\x01\x1e\x01vorbis\n" + playlist, "audio/ogg"),
    }[kind]


@pytest.mark.parametrize("kind", ["id3-hls", "wav-concat", "flac-concat", "m4a-dash", "ogg-hls"])
@pytest.mark.parametrize("as_sent", [True, False], ids=["container", "no-container"])
def test_a_crafted_audio_upload_fails_and_reads_no_local_file(secret, tmp_path, kind, as_sent):
    # Each passes the gateway's first-bytes check as that container (gateway/tests/test_sniff.py shows it).
    content, container = crafted(kind, secret)
    src, dst = tmp_path / "video", tmp_path / "audio.mp3"
    src.write_bytes(content)
    with pytest.raises(PermanentError) as caught:
        convert.to_mp3(src, dst, container=container if as_sent else None)
    assert not dst.exists() or decoded_or_nothing(dst) < 0.5, "the local file's audio reached the MP3"
    assert str(tmp_path) not in str(caught.value)


def decoded_or_nothing(path: Path) -> float:
    try:
        return decoded_seconds(path)
    except (subprocess.CalledProcessError, ValueError):
        return 0.0
