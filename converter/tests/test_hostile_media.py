"""Crafted inputs against real ffmpeg (issue 11, sections 1 and 2): each is generated here, passes the gateway's
first-bytes check, and must end in a PermanentError within seconds without any local file reaching an MP3."""

from __future__ import annotations

import shutil
import struct
import subprocess
import time
from pathlib import Path

import pytest

from converter import convert
from converter.convert import Limits
from mp3core.errors import PermanentError

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")

FAST_S = 10.0  # "within seconds": each case takes well under a second here


def _audio(path: Path, seconds: float, *, codec: str = "aac", fmt: str | None = None) -> Path:
    args = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
            "-i", f"sine=frequency=1000:duration={seconds}:sample_rate=8000", "-c:a", codec]
    subprocess.run(args + (["-f", fmt] if fmt else []) + [str(path)], check=True, timeout=60)
    return path


@pytest.fixture(scope="module")
def secret(tmp_path_factory) -> Path:
    """A local media file an attacker would like to read (a media extension, so DASH would open it)."""
    return _audio(tmp_path_factory.mktemp("local") / "secret.m4a", 3)


def dash_manifest(secret: Path, *, live: bool) -> bytes:
    """A DASH manifest whose bytes 4..7 read `ftyp` (the gateway's MP4 check), naming a local file."""
    if live:  # ffmpeg refreshes a live manifest forever at full CPU, never reporting a duration
        kind = ('type="dynamic" availabilityStartTime="1970-01-01T00:00:00Z" minimumUpdatePeriod="PT500S" '
                'timeShiftBufferDepth="PT5S"')
        body = (f'<SegmentTemplate timescale="1000" duration="1000" startNumber="1" media="file:{secret}?$Number$" '
                f'initialization="file:{secret}"/><Representation id="a" bandwidth="64000" codecs="mp4a.40.2"/>')
    else:
        kind = 'type="static" mediaPresentationDuration="PT3S"'
        body = (f'<Representation id="a" bandwidth="64000" codecs="mp4a.40.2"><BaseURL>file:{secret}</BaseURL>'
                '<SegmentBase/></Representation>')
    return (f'<!--ftypjp2 -->\n<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" minBufferTime="PT1S" '
            f'profiles="urn:mpeg:dash:profile:isoff-{"live" if live else "on-demand"}:2011" {kind}>'
            f'<Period id="0" start="PT0S"><AdaptationSet mimeType="audio/mp4">{body}</AdaptationSet></Period>'
            '</MPD>\n').encode()


def ogg_sdp() -> bytes:
    """An `OggS`-prefixed SDP description: probed, ffmpeg would open RTP on UDP port 5004."""
    return (b"OggS\nv=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            b"m=audio 5004 RTP/AVP 0\r\n")


def ogg_tracker_module() -> bytes:
    """A 2 KB ProTracker module titled `OggS!` that plays for 317,440 s: 128 orders of one 64-row pattern, each
    row at speed 31 and 32 BPM (2.42 s) repeated 16 times by a pattern delay (EEF)."""
    title = b"OggS!".ljust(20, b"\0")  # byte 4 is not Ogg's version 0, so ffmpeg's own probe says tracker module
    samples = b"".join(bytes(22) + struct.pack(">HBBHH", 0, 0, 0, 0, 1) for _ in range(31))
    row = b"".join(bytes([0, 0, effect, param]) for effect, param in ((0xF, 0x1F), (0xF, 0x20), (0xE, 0xEF), (0, 0)))
    return title + samples + bytes([128, 127]) + bytes(128) + b"M.K." + row * 64


def crafted(name: str, secret: Path) -> tuple[bytes, str]:
    """(content, the container the gateway recognises it as)."""
    return {
        "dash-static": (dash_manifest(secret, live=False), "video/mp4"),
        "dash-live": (dash_manifest(secret, live=True), "video/mp4"),
        "sdp": (ogg_sdp(), "video/ogg"),
        "tracker": (ogg_tracker_module(), "video/ogg"),
    }[name]


CASES = ["dash-static", "dash-live", "sdp", "tracker"]


def _sniff(head: bytes) -> str | None:
    """The gateway's first-bytes rule for these two containers (gateway/gateway/sniff.py), restated so the test
    shows each crafted file really gets past it."""
    return "video/mp4" if head[4:8] == b"ftyp" else "video/ogg" if head.startswith(b"OggS") else None


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("as_sent", [True, False], ids=["container", "no-container"])
def test_crafted_file_fails_fast_and_reads_no_local_file(case, as_sent, secret, tmp_path):
    content, container = crafted(case, secret)
    assert _sniff(content) == container
    src, dst = tmp_path / "video", tmp_path / "audio.mp3"
    src.write_bytes(content)

    started = time.monotonic()
    with pytest.raises(PermanentError) as caught:
        convert.to_mp3(src, dst, container=container if as_sent else None)
    assert time.monotonic() - started < FAST_S
    assert not dst.exists() or dst.stat().st_size == 0
    reason = str(caught.value)
    assert str(tmp_path) not in reason
    if as_sent:  # read with the one demuxer named: the content is just not that container
        assert reason.startswith(f"the file is not a readable video (read as {container}): ")
    else:  # probed among the accepted demuxers only: ffmpeg's own choice is refused, and named
        demuxer = {"dash-static": "dash", "dash-live": "dash", "sdp": "sdp", "tracker": "libopenmpt"}[case]
        assert reason == f"the file is not in a supported video or audio container (it reads as {demuxer})"


def test_the_static_dash_trick_reads_a_local_file_when_ffmpeg_probes(secret, tmp_path):
    # What the restrictions prevent, shown with ffmpeg's own probing (today's command before this fix).
    src, dst = tmp_path / "video", tmp_path / "leak.mp3"
    src.write_bytes(dash_manifest(secret, live=False))
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(src), "-vn", str(dst)],
                   check=True, timeout=60)
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
                            str(dst)], capture_output=True, text=True, check=True, timeout=60)
    assert float(probe.stdout) == pytest.approx(3.0, abs=0.5)  # the secret's 3 s of audio


@pytest.fixture
def long_flac_mkv(tmp_path) -> Path:
    """A small FLAC-in-Matroska file (an ordinary container) holding 90 s of audio."""
    return _audio(tmp_path / "long.mkv", 90, codec="flac")


def test_a_duration_over_the_limit_fails_as_soon_as_ffmpeg_reports_it(long_flac_mkv, tmp_path):
    told: list[object] = []
    started = time.monotonic()
    with pytest.raises(PermanentError, match=r"^the video is longer \(90 s\) than the 60 s of audio allowed$"):
        convert.to_mp3(long_flac_mkv, tmp_path / "out.mp3", on_progress=told.append, on_input=told.append,
                       container="video/x-matroska", limits=Limits(max_duration_s=60))
    # Progress (stdout) and the input's description (stderr) arrive on two pipes read by two threads: on a busy
    # machine the first progress block can be read before the duration line, so a report of where ffmpeg starts
    # may slip through, but not a report of converted audio.
    progress = [t for t in told if isinstance(t, float)]
    assert time.monotonic() - started < FAST_S and all(t < 1 for t in progress), told


def _without_duration(path: Path) -> Path:
    """Matroska as written to a pipe: no Duration element, so the file says nothing about its length (AAC, as
    FLAC's own header or a copied DURATION tag would tell it)."""
    out = subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(path), "-map_metadata", "-1",
                          "-c:a", "aac", "-f", "matroska", "pipe:1"], capture_output=True, check=True, timeout=60).stdout
    piped = path.with_name("piped.mkv")
    piped.write_bytes(out)
    return piped


def _lying_about_duration(path: Path, claimed_s: float) -> Path:
    """The same file with its Matroska Duration (ms, an 8-byte float after ID 0x4489) rewritten to claimed_s."""
    data = bytearray(path.read_bytes())
    at = data.find(b"\x44\x89\x88")
    assert at > 0, "no 8-byte Duration element"
    data[at + 3:at + 11] = struct.pack(">d", claimed_s * 1000)
    lying = path.with_name("lying.mkv")
    lying.write_bytes(bytes(data))
    return lying


@pytest.mark.parametrize("disguise", ["no duration", "claims 10 s"])
def test_an_input_longer_than_it_says_is_stopped_at_the_limit(long_flac_mkv, tmp_path, disguise):
    src = _without_duration(long_flac_mkv) if disguise == "no duration" else _lying_about_duration(long_flac_mkv, 10)
    dst = tmp_path / "out.mp3"
    with pytest.raises(PermanentError, match=r"^the video is longer than the 30 s of audio allowed$"):
        convert.to_mp3(src, dst, container="video/x-matroska", limits=Limits(max_duration_s=30))


def test_an_input_as_long_as_the_limit_still_converts(long_flac_mkv, tmp_path):
    info = convert.to_mp3(long_flac_mkv, tmp_path / "out.mp3", container="video/x-matroska",
                          limits=Limits(max_duration_s=90))
    assert info is not None and info.duration_s == pytest.approx(90, abs=0.1)


def test_ffmpeg_gets_no_credentials_and_runs_under_resource_limits(fake_ffmpeg, tmp_path, monkeypatch):
    monkeypatch.setenv("MONGO_URI", "mongodb://converter:s3cret@db/x")
    monkeypatch.setenv("RABBITMQ_URL", "amqp://converter:s3cret@mq/")
    report = tmp_path / "report"
    fake_ffmpeg(f"env > {report}.env; ulimit -t > {report}.cpu; ulimit -f > {report}.fsize; "
                   f"ulimit -v > {report}.as; ulimit -c > {report}.core; pwd > {report}.cwd\n"
                   "for last; do :; done\necho mp3 > \"$last\"")
    limits = Limits(max_duration_s=60, cpu_s=42, memory_mb=300)
    work = tmp_path / "work"
    work.mkdir()
    convert.to_mp3(work / "video", work / "out.mp3", limits=limits)

    env = dict(line.split("=", 1) for line in Path(f"{report}.env").read_text().splitlines() if "=" in line)
    assert "s3cret" not in Path(f"{report}.env").read_text()
    assert set(env) - {"PWD", "SHLVL", "_", "OLDPWD"} == {"PATH"}
    assert Path(f"{report}.cpu").read_text().strip() == "42"
    assert int(Path(f"{report}.fsize").read_text()) == (limits.max_output_bytes + 1024 * 1024) // 512  # blocks
    assert int(Path(f"{report}.as").read_text()) == 300 * 1024  # in KiB
    assert Path(f"{report}.core").read_text().strip() == "0"
    assert Path(f"{report}.cwd").read_text().strip() == str(tmp_path / "work")  # not the service's directory


@pytest.mark.parametrize(("signal_name", "reason"), [
    ("XCPU", "^ffmpeg used up its 900 s of CPU time$"),
    ("XFSZ", r"^the MP3 would be larger than \d+ bytes$"),
])
def test_hitting_a_resource_limit_is_permanent(fake_ffmpeg, tmp_path, signal_name, reason):
    fake_ffmpeg(f"kill -{signal_name} $$")
    with pytest.raises(PermanentError, match=reason):
        convert.to_mp3(tmp_path / "video", tmp_path / "out.mp3")


def test_the_cpu_limit_really_stops_a_spinning_ffmpeg(fake_ffmpeg, tmp_path):
    fake_ffmpeg("while :; do :; done")  # busy forever: only RLIMIT_CPU stops it before the wall-clock limit
    started = time.monotonic()
    with pytest.raises(PermanentError, match="^ffmpeg used up its 1 s of CPU time$"):
        convert.to_mp3(tmp_path / "video", tmp_path / "out.mp3", limits=Limits(cpu_s=1))
    assert time.monotonic() - started < FAST_S


def test_running_out_of_memory_is_permanent_with_the_limit_named():
    log = "[error] Cannot allocate memory\n[error] video: Cannot allocate memory\n"
    error = convert._failure(log, Path("video"), Limits(memory_mb=512))
    assert isinstance(error, PermanentError) and str(error) == "ffmpeg needed more than its 512 MB of memory"
