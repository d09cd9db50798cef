"""ffmpeg wrapper: extracts a video's first audio stream to an MP3 file on disk, in one ffmpeg run that also
reports the input's format and duration (no ffprobe: its start-up alone costs 0.08 s of CPU per job)."""

from __future__ import annotations

import io
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO

from mp3core.contract import DEFAULT_BITRATE, Options
from mp3core.errors import PermanentError

_STDERR_TAIL = 4096  # ffmpeg can print an error per corrupt frame: only the end is worth reading
_STDERR_LINE = 8192  # a longer "line" is read in pieces, so one endless line cannot grow memory either


@dataclass(frozen=True)
class InputInfo:
    """What ffmpeg reports about its input before converting it."""

    format_name: str | None  # the demuxer's names, as ffprobe's format_name: "mov,mp4,m4a,3gp,3g2,mj2"
    duration_s: float | None  # None when the container does not say (ffmpeg prints "Duration: N/A")


class ConversionTimeout(RuntimeError):
    """ffmpeg ran past its time limit; transient, as it may be load rather than the file."""


def time_limit_s(duration_s: float | None) -> float:
    """How long ffmpeg may run on an input of this duration (None: not known, or not yet)."""
    # Audio extraction runs far faster than real time; a run this long means ffmpeg is stuck.
    return 600.0 + (duration_s or 3600.0)


def ffmpeg_args(src: Path, dst: Path, options: Options = Options()) -> list[str]:
    """The ffmpeg command line: first audio stream only, no video, machine-readable progress on stdout.

    stderr is at info level, where ffmpeg describes its input (format, duration); `level` tags each message
    with its severity, so that an error can be told apart from that description.
    """
    args = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "level+info", "-nostats", "-progress", "pipe:1",
            "-y", "-i", str(src), "-vn", "-map", "0:a:0", "-c:a", "libmp3lame"]
    if options.quality is not None:
        args += ["-q:a", str(options.quality)]
    else:
        args += ["-b:a", f"{options.bitrate or DEFAULT_BITRATE}k"]
    if options.channels is not None:
        args += ["-ac", str(options.channels)]
    if options.sample_rate is not None:
        args += ["-ar", str(options.sample_rate)]
    return args + [str(dst)]


def to_mp3(src: Path, dst: Path, options: Options = Options(),
           on_progress: Callable[[float], None] | None = None, *,
           on_input: Callable[[InputInfo], None] | None = None,
           time_limit: Callable[[float | None], float] | None = time_limit_s) -> InputInfo | None:
    """Converts src to dst with ffmpeg, all on disk; returns what ffmpeg said about the input (None: nothing).

    on_input(info) is called once, as soon as ffmpeg has described the input and before the progress that
    follows (on success at the latest when ffmpeg has finished); on_progress(seconds of output done) once per
    progress block ffmpeg writes (about twice a second). Both run in the calling thread; an exception from either stops ffmpeg and propagates.
    time_limit(duration_s) is how long ffmpeg may run, counted from its start: asked with None at the start and
    again with the duration when ffmpeg reports it; time_limit=None runs without a limit.

    PermanentError for inputs ffmpeg cannot convert; ConversionTimeout or OSError for transient trouble.
    """
    proc = subprocess.Popen(ffmpeg_args(src, dst, options), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    watchdog = _Watchdog(proc.kill, time_limit(None)) if time_limit else None

    def new_limit(info: InputInfo) -> None:  # in the reader's thread, at once; the caller hears in this one
        if watchdog and time_limit:
            watchdog.set_limit(time_limit(info.duration_s))

    stderr = _Stderr(proc.stderr, on_input=new_limit)
    told = False

    def tell_input() -> None:
        nonlocal told
        if on_input and not told and stderr.input is not None:
            told = True
            on_input(stderr.input)

    try:
        with io.TextIOWrapper(proc.stdout, encoding="utf-8", errors="replace") as progress:
            for seconds in progress_times(progress):
                tell_input()
                if on_progress:
                    on_progress(seconds)
        returncode = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        if watchdog:
            watchdog.stop()
        stderr.join()
    if returncode == 0:
        if not dst.exists() or dst.stat().st_size == 0:
            raise PermanentError("the video's audio stream is empty")
        tell_input()  # a short input may end before its first progress block reached us
        return stderr.input
    if returncode < 0:  # killed: our watchdog, or the OOM killer
        raise ConversionTimeout(f"ffmpeg was killed (signal {-returncode}) after {watchdog.limit_s:g} s limit"
                                if watchdog and watchdog.fired else f"ffmpeg was killed by signal {-returncode}")
    raise _failure(stderr.tail(), src)


def progress_times(lines: Iterable[str]) -> Iterator[float]:
    """Parses `ffmpeg -progress` key=value blocks; yields the out_time in seconds of each block."""
    current: float | None = None
    for line in lines:
        key, _, value = line.strip().partition("=")
        if key == "out_time":
            parsed = parse_out_time(value)
            if parsed is not None:
                current = parsed
        elif key == "progress" and current is not None:
            yield current


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


# ffmpeg's `-loglevel level+...` tag: "[error] msg", or "[mov,mp4,m4a,3gp,3g2,mj2 @ 0x55d1c0] [error] msg".
_LEVEL = re.compile(r"(\[[^\]]* @ 0x[0-9a-f]+\] )?\[(trace|debug|verbose|info|warning|error|fatal|panic)\] ")
_ERROR_LEVELS = ("error", "fatal", "panic")
# The input's header as av_dump_format prints it. Metadata lines (the file's own text) are indented deeper, so a
# tag named "Duration" cannot pass for the real one.
_INPUT = re.compile(r"Input #0, (.+?), from '")
_DURATION = re.compile(r"  Duration: ([^,]+),")


class _Stderr:
    """Reads ffmpeg's stderr in a daemon thread (a pipe nobody reads would fill up and stall ffmpeg): the input's
    format and duration from its header, and only the last _STDERR_TAIL bytes for the error message."""

    def __init__(self, stream: IO[bytes], on_input: Callable[[InputInfo], None] | None = None) -> None:
        self.input: InputInfo | None = None
        self._stream, self._on_input = stream, on_input
        self._format: str | None = None
        self._kept = bytearray()
        self._cut = False
        self._thread = threading.Thread(target=self._read, name="ffmpeg-stderr", daemon=True)
        self._thread.start()

    def join(self, timeout_s: float = 10.0) -> None:
        """Waits for the end of the stream (ffmpeg's exit); the timeout is for a stray child holding it open."""
        self._thread.join(timeout_s)

    def tail(self) -> str:
        """The last lines, at most _STDERR_TAIL bytes, without a line cut in two."""
        kept = bytes(self._kept)
        if self._cut or len(kept) > _STDERR_TAIL:
            kept = kept[-_STDERR_TAIL:]
            kept = kept[kept.find(b"\n") + 1:]
        return kept.decode("utf-8", "replace")

    def _read(self) -> None:
        try:
            for line in iter(partial(self._stream.readline, _STDERR_LINE), b""):
                if self.input is None:
                    self._parse(line.decode("utf-8", "replace"))
                self._kept += line
                if len(self._kept) > 2 * _STDERR_TAIL:  # trimmed in steps, not per line
                    del self._kept[:-_STDERR_TAIL]
                    self._cut = True
        finally:
            self._stream.close()

    def _parse(self, line: str) -> None:
        tag = _LEVEL.match(line)
        text = line[tag.end():] if tag else line
        if self._format is None:
            found = _INPUT.match(text)
            if found:
                self._format = found.group(1)
            return
        found = _DURATION.match(text)
        if found:
            self.input = InputInfo(format_name=self._format, duration_s=parse_out_time(found.group(1)))
            if self._on_input:
                self._on_input(self.input)


class _Watchdog:
    """Kills ffmpeg once it has run past its limit; the limit can change while it runs (when the duration is known)."""

    def __init__(self, kill: Callable[[], None], limit_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit_s, self.fired = limit_s, False
        self._kill, self._clock, self._started = kill, clock, clock()
        self._stopped = False
        self._wake = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="ffmpeg-watchdog", daemon=True)
        self._thread.start()

    def set_limit(self, limit_s: float) -> None:
        """A new limit, counted from the start like the first one."""
        with self._wake:
            self.limit_s = limit_s
            self._wake.notify()

    def remaining_s(self) -> float:
        return self._started + self.limit_s - self._clock()

    def stop(self) -> None:
        with self._wake:
            self._stopped = True
            self._wake.notify()
        self._thread.join()

    def _run(self) -> None:
        with self._wake:
            while not self._stopped:
                remaining = self.remaining_s()
                if remaining <= 0:
                    self.fired = True
                    self._kill()
                    return
                self._wake.wait(remaining)


def _failure(log: str, src: Path) -> Exception:
    """The exception for an ffmpeg run that failed, from the end of its log."""
    # Only what ffmpeg logged as an error counts: the input's description holds the file's own metadata text.
    messages = _messages(log)
    errors = [text for level, text in messages if level in _ERROR_LEVELS]
    reason = _reason(errors[-1] if errors else messages[-1][1] if messages else "no details", src)
    if any("No space left on device" in text for text in errors):
        return OSError(f"ffmpeg: {reason}")
    if any("matches no streams" in text for text in errors):
        return PermanentError("the video has no audio stream")
    return PermanentError(f"the file is not a readable video: {reason}")


def _messages(log: str) -> list[tuple[str | None, str]]:
    """ffmpeg's tagged log as (level, text) per message, without the tag; an untagged line continues the message
    above it (level None for lines before the first tag, e.g. where the tail was cut)."""
    messages: list[tuple[str | None, str]] = []
    for raw in log.splitlines():
        line = raw.strip()
        if not line:
            continue
        tag = _LEVEL.match(line)
        if tag:
            messages.append((tag.group(2), (tag.group(1) or "") + line[tag.end():]))
        elif messages:
            level, text = messages[-1]
            messages[-1] = (level, f"{text}\n{line}")
        else:
            messages.append((None, line))
    return messages


def _reason(message: str, src: Path) -> str:
    """A message's first line, which says what went wrong, without our temp path (meaningless to the user),
    at most 200 chars."""
    line = message.splitlines()[0]
    line = line.replace(str(src) + ": ", "").replace(str(src), "input")
    return line[:200]
