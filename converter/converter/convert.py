"""ffprobe/ffmpeg wrappers: probe a video file and extract its first audio stream to an MP3 file on disk."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import PermanentError

PROGRESS_INTERVAL_S = 5.0
_STDERR_TAIL = 4096  # ffmpeg can print an error per corrupt frame: only the end is worth reading


@dataclass(frozen=True)
class MediaInfo:
    duration_s: float | None  # None when the container does not say (e.g. some streamed formats)
    has_audio: bool
    format_name: str | None
    audio_codec: str | None


@dataclass(frozen=True)
class Mp3Options:
    """Encoder settings; the defaults give the contract's CBR 192 kbit/s."""

    bitrate: str = "192k"          # CBR bitrate, used when quality is None
    quality: int | None = None     # LAME VBR quality 0 (best) .. 9, replaces bitrate when set
    channels: int | None = None    # None keeps the source's; libmp3lame's encoder downmixes more than 2 to stereo
    sample_rate: int | None = None  # None keeps the source's (LAME picks the nearest MP3 rate)


# The values the gateway accepts (docs/design.md, "Jobs API, options, retention"); checked again here because
# the queue is an API too: anything that can publish to it must not be able to pass ffmpeg arbitrary values.
BITRATES = (64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
QUALITIES = tuple(range(10))
CHANNELS = (1, 2)
SAMPLE_RATES = (22050, 44100, 48000)
_ALLOWED = {"bitrate": BITRATES, "quality": QUALITIES, "channels": CHANNELS, "sample_rate": SAMPLE_RATES}


def parse_options(raw: object) -> Mp3Options:
    """The `options` of a `video` message as Mp3Options; absent or null (whole or per key) = default.

    PermanentError naming the bad option: an unknown key or value means the user asked for something we
    would not deliver, so failing says so rather than silently making a default MP3.
    """
    if raw is None:
        return Mp3Options()
    if not isinstance(raw, dict):
        raise PermanentError("message field 'options' is not an object")
    unknown = sorted(set(raw) - set(_ALLOWED))
    if unknown:
        raise PermanentError(f"unknown conversion option {unknown[0]!r}")
    values: dict[str, int] = {}
    for name, allowed in _ALLOWED.items():
        value = raw.get(name)
        if value is None:
            continue
        # bool is an int subclass: true must not pass as channels=1.
        if type(value) is not int or value not in allowed:
            raise PermanentError(f"conversion option {name!r} must be one of "
                                 f"{', '.join(map(str, allowed))}, not {value!r}"[:200])
        values[name] = value
    if "bitrate" in values and "quality" in values:
        raise PermanentError("conversion options 'bitrate' and 'quality' exclude each other")
    bitrate = values.pop("bitrate", None)
    return Mp3Options(**values) if bitrate is None else Mp3Options(bitrate=f"{bitrate}k", **values)


class ConversionTimeout(RuntimeError):
    """ffmpeg ran past its time limit; transient, as it may be load rather than the file."""


def probe(src: Path, *, timeout_s: float = 120.0) -> MediaInfo:
    """Reads the container and stream headers with ffprobe; PermanentError when the file is not a video."""
    proc = subprocess.run(
        ["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams", str(src)],
        stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout_s, check=False)
    if proc.returncode != 0:
        raise PermanentError(f"the file is not a readable video: {_last_line(proc.stderr, src)}")
    try:
        data = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise PermanentError("the file is not a readable video: ffprobe output is not JSON") from None
    streams = data.get("streams") or []
    if not streams:
        raise PermanentError("the file is not a readable video: it contains no streams")
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    fmt = data.get("format") or {}
    return MediaInfo(duration_s=_float(fmt.get("duration")), has_audio=audio is not None,
                     format_name=fmt.get("format_name"), audio_codec=audio and audio.get("codec_name"))


def ffmpeg_args(src: Path, dst: Path, options: Mp3Options = Mp3Options()) -> list[str]:
    """The ffmpeg command line: first audio stream only, no video, machine-readable progress on stdout."""
    args = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-nostats", "-progress", "pipe:1",
            "-y", "-i", str(src), "-vn", "-map", "0:a:0", "-c:a", "libmp3lame"]
    if options.quality is not None:
        args += ["-q:a", str(options.quality)]
    else:
        args += ["-b:a", options.bitrate]
    if options.channels is not None:
        args += ["-ac", str(options.channels)]
    if options.sample_rate is not None:
        args += ["-ar", str(options.sample_rate)]
    return args + [str(dst)]


def to_mp3(src: Path, dst: Path, options: Mp3Options = Mp3Options(),
           on_progress: Callable[[float], None] | None = None, *, timeout_s: float | None = None,
           progress_interval_s: float = PROGRESS_INTERVAL_S,
           clock: Callable[[], float] = time.monotonic) -> None:
    """Converts src to dst with ffmpeg, all on disk; on_progress(seconds of output done), throttled.

    PermanentError for inputs ffmpeg cannot convert; ConversionTimeout or OSError for transient trouble.
    """
    report = _Throttle(on_progress, progress_interval_s, clock)
    # stderr goes to a file, not a pipe: nobody reads a pipe while we read progress, so it could fill and stall.
    with tempfile.TemporaryFile(dir=dst.parent) as err:
        proc = subprocess.Popen(ffmpeg_args(src, dst, options), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=err, text=True)
        timer = threading.Timer(timeout_s, proc.kill) if timeout_s else None
        if timer:
            timer.daemon = True
            timer.start()
        try:
            assert proc.stdout is not None
            for seconds, final in progress_times(proc.stdout):
                report(seconds, final)
            returncode = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            if timer:
                timer.cancel()
        if returncode == 0:
            if not dst.exists() or dst.stat().st_size == 0:
                raise PermanentError("the video's audio stream is empty")
            return
        stderr = _tail(err)
    if returncode < 0:  # killed: our timer, or the OOM killer
        raise ConversionTimeout(f"ffmpeg was killed (signal {-returncode}) after {timeout_s} s limit"
                                if timeout_s else f"ffmpeg was killed by signal {-returncode}")
    if "No space left on device" in stderr:
        raise OSError(f"ffmpeg: {_last_line(stderr, src)}")
    if "matches no streams" in stderr:
        raise PermanentError("the video has no audio stream")
    raise PermanentError(f"the file is not a readable video: {_last_line(stderr, src)}")


def progress_times(lines: Iterable[str]) -> Iterator[tuple[float, bool]]:
    """Parses `ffmpeg -progress` key=value blocks; yields (out_time in seconds, is_last_block) per block."""
    current: float | None = None
    for line in lines:
        key, _, value = line.strip().partition("=")
        if key == "out_time":
            parsed = parse_out_time(value)
            if parsed is not None:
                current = parsed
        elif key == "progress" and current is not None:
            yield current, value == "end"


def parse_out_time(value: str) -> float | None:
    """'HH:MM:SS.micro' -> seconds; None for 'N/A', negatives (ffmpeg prints those before the first packet), junk."""
    parts = value.strip().split(":")
    if len(parts) != 3 or value.startswith("-"):
        return None
    try:
        hours, minutes, seconds = int(parts[0]), int(parts[1]), float(parts[2])
    except ValueError:
        return None
    return hours * 3600 + minutes * 60 + seconds


class _Throttle:
    """Calls back at most once per interval, plus always for the final block."""

    def __init__(self, callback: Callable[[float], None] | None, interval_s: float,
                 clock: Callable[[], float]) -> None:
        self._callback, self._interval, self._clock = callback, interval_s, clock
        self._last: float | None = None

    def __call__(self, seconds: float, final: bool = False) -> None:
        if self._callback is None:
            return
        now = self._clock()
        if final or self._last is None or now - self._last >= self._interval:
            self._last = now
            self._callback(seconds)


def _tail(file) -> str:  # noqa: ANN001 - a binary temp file
    size = file.seek(0, os.SEEK_END)
    file.seek(max(0, size - _STDERR_TAIL))
    return file.read().decode("utf-8", "replace")


def _last_line(stderr: str | bytes, src: Path) -> str:
    """The last non-empty stderr line, without our temp path (meaningless to the user), at most 200 chars."""
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else stderr
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    line = lines[-1] if lines else "no details"
    line = line.replace(str(src) + ": ", "").replace(str(src), "input")
    return line[:200]


def _float(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
