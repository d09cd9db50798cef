"""ffmpeg wrapper: extracts a video's (or an audio file's) first audio stream to an MP3 file on disk, in one ffmpeg
run that also reports the input's format and duration (no ffprobe: its start-up alone costs 0.08 s of CPU per job),
trimmed and loudness-normalised as the options say, or copied for an MP3 upload with nothing to re-encode; then
finishes its tag, with a cover taken by a second, short ffmpeg run when asked for (finish_mp3).

The input is hostile until proven otherwise: ffmpeg reads it only with the demuxer the gateway recognised (never
its own probe, which would take a text file for a DASH manifest or an SDP description), through the `file`
protocol only, with no environment (no credentials), under CPU, file size and memory limits, and the output is
capped in duration and size whatever the file claims.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import math
import os
import re
import resource
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO

from mp3core.contract import CONTAINERS, DEFAULT_BITRATE, LOUDNESS_LUFS, Options
from mp3core.errors import PermanentError

from . import id3

log = logging.getLogger(__name__)

_STDERR_TAIL = 4096  # ffmpeg can print an error per corrupt frame: only the end is worth reading
_STDERR_LINE = 8192  # a longer "line" is read in pieces, so one endless line cannot grow memory either


@dataclass(frozen=True)
class InputInfo:
    """What ffmpeg reports about its input before converting it."""

    format_name: str | None  # the demuxer's names, as ffprobe's format_name: "mov,mp4,m4a,3gp,3g2,mj2"
    duration_s: float | None  # None when the container does not say (ffmpeg prints "Duration: N/A")


class ConversionTimeout(RuntimeError):
    """ffmpeg ran past its time limit; transient, as it may be load rather than the file."""


# The highest MP3 bit rate (MPEG-1 Layer III), whatever the options: what the output size cap assumes.
MAX_MP3_KBPS = 320
_SIZE_MARGIN = 1024 * 1024  # ID3 tag, Xing header, one packet past -fs
# Encoder delay and padding make an output a little longer than its input: inputs up to the limit plus this
# margin pass; -t stops an output at twice the margin, so getting past the margin tells a too long input.
_DURATION_MARGIN_S = 1.0


@dataclass(frozen=True)
class Limits:
    """What one ffmpeg run may take (README, "Configuration" and "Security"; the defaults are config.py's).

    max_duration_s: the longest audio converted; an input that says it is longer fails at once, one that lies
    is stopped when its output gets there. timeout_s: wall-clock cap on a run, whatever the file claims
    (transient when hit: it may be load). cpu_s: CPU time ffmpeg may use (permanent when hit: that is the
    file's doing). memory_mb: ffmpeg's address space (its shared libraries alone map about 300 MB).
    """

    max_duration_s: int = 4 * 3600
    timeout_s: int = 1800
    cpu_s: int = 900
    memory_mb: int = 512

    @property
    def max_output_bytes(self) -> int:
        """The largest MP3 max_duration_s can make: MAX_MP3_KBPS for the whole duration, plus a margin."""
        return self.max_duration_s * MAX_MP3_KBPS * 1000 // 8 + _SIZE_MARGIN

    def time_limit_s(self, duration_s: float | None) -> float:
        """How long ffmpeg may run on an input of this duration (None: not known, or not yet), at most timeout_s."""
        # Audio extraction runs far faster than real time (about 190x on one core for AAC); a run this long
        # means ffmpeg is stuck. The cap keeps a file that claims a long duration from buying itself hours.
        return min(float(self.timeout_s), 600.0 + (duration_s or 3600.0))

    def rlimits(self) -> list[tuple[int, tuple[int, int]]]:
        """(resource, (soft, hard)) for ffmpeg's process. The soft CPU and file size limits send SIGXCPU and
        SIGXFSZ, which to_mp3 reports; the hard ones (a little higher) SIGKILL an ffmpeg that ignored them."""
        fsize = self.max_output_bytes + _SIZE_MARGIN
        memory = self.memory_mb * 1024 * 1024
        return [(resource.RLIMIT_CPU, (self.cpu_s, self.cpu_s + 5)),
                (resource.RLIMIT_FSIZE, (fsize, fsize + _SIZE_MARGIN)),
                (resource.RLIMIT_AS, (memory, memory)),
                (resource.RLIMIT_CORE, (0, 0))]  # SIGXCPU/SIGXFSZ would otherwise dump core into the work dir


def input_args(container: str | None) -> list[str]:
    """How ffmpeg may read the input: the one demuxer of the container the gateway recognised (a key of
    CONTAINERS), or for a message without one (from before the field existed) any demuxer of CONTAINERS and no
    other; either way through the `file` protocol only, so nothing the file says can open a network stream."""
    if container is not None:
        demuxer = ["-f", CONTAINERS[container]]
    else:
        demuxer = ["-format_whitelist", ",".join(sorted(set(CONTAINERS.values())))]
    return [*demuxer, "-protocol_whitelist", "file"]


def trim_args(options: Options) -> list[str]:
    """Input options cutting the source to [start, end): ffmpeg seeks to start in the container (what lies before
    it is not decoded, where the container has an index) and stops reading at end."""
    args = ["-ss", _seconds(options.start)] if options.start else []
    if options.end is not None:
        args += ["-t", _seconds(options.end - (options.start or 0))]
    return args


def copies_audio(options: Options, container: str | None) -> bool:
    """Whether the MP3 is the source's own audio, copied frame for frame: an MP3 upload with no option that needs
    re-encoding (trimming is done by re-encoding too, so that it is exact to the sample, not to the frame)."""
    encoding = (options.bitrate, options.quality, options.channels, options.sample_rate, options.normalize)
    return container == "audio/mpeg" and not options.trimmed and not any(encoding)


_STREAM_TAGS = ("audio/ogg", "video/ogg", None)


def ffmpeg_args(src: Path, dst: Path, options: Options = Options(), *, container: str | None = None,
                limits: Limits = Limits()) -> list[str]:
    """The ffmpeg command line: first audio stream only, no video, machine-readable progress on stdout.

    stderr is at info level, where ffmpeg describes its input (format, duration); `level` tags each message
    with its severity, so that an error can be told apart from that description. -t and -fs stop an input
    that lies about its duration (to_mp3 tells that apart from a complete conversion). The tag is ID3v2.3, the
    version every player reads; id3.finish_tag completes it.
    """
    args = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "level+info", "-nostats", "-progress", "pipe:1",
            "-y", *input_args(container), *trim_args(options), "-i", str(src), "-vn", "-map", "0:a:0",
            "-t", f"{limits.max_duration_s + 2 * _DURATION_MARGIN_S:g}", "-fs", str(limits.max_output_bytes)]
    if container in _STREAM_TAGS:
        # Ogg keeps a file's tags on its streams (Vorbis comments): the audio stream's go into the tag too (the
        # file's own, if any, first).
        args += ["-map_metadata", "0", "-map_metadata", "0:s:a:0"]
    if copies_audio(options, container):
        return args + ["-c:a", "copy", "-id3v2_version", "3", str(dst)]
    args += ["-c:a", "libmp3lame"]
    if options.quality is not None:
        args += ["-q:a", str(options.quality)]
    else:
        args += ["-b:a", f"{options.bitrate or DEFAULT_BITRATE}k"]
    if options.channels is not None:
        args += ["-ac", str(options.channels)]
    if options.sample_rate is not None:
        args += ["-ar", str(options.sample_rate)]
    if options.normalize:
        # One pass (dynamic mode): within 1 LU of the target for speech and music. loudnorm works at 192 kHz and
        # hands that on; without -ar, ffmpeg then picks the encoder's closest rate, 48 kHz.
        args += ["-af", f"loudnorm=I={LOUDNESS_LUFS}:TP=-1.5:LRA=11"]
    return args + ["-id3v2_version", "3", str(dst)]


def output_duration(options: Options, input_s: float | None) -> float | None:
    """How long the MP3 of an input this long will be, trimmed by the options (None: not known)."""
    start = options.start or 0.0
    if input_s is None:
        return options.end - start if options.end is not None else None
    end = input_s if options.end is None else min(options.end, input_s)
    return max(0.0, end - start)


# An end a little past the end of the input is the end: container durations are approximate.
_END_SLACK_S = 0.5


def trim_problem(options: Options, input_s: float) -> str | None:
    """Why start/end do not fit an input of this duration (None: they do)."""
    if options.start and options.start >= input_s:
        return f"start ({_seconds(options.start)} s) is past the end of the file ({_seconds(input_s)} s)"
    if options.end is not None and options.end > input_s + _END_SLACK_S:
        return f"end ({_seconds(options.end)} s) is past the end of the file ({_seconds(input_s)} s)"
    return None


def _seconds(value: float | None) -> str:
    """12.5 -> '12.5', 3.0 -> '3': seconds with at most millisecond digits."""
    return f"{value or 0:.3f}".rstrip("0").rstrip(".")


def to_mp3(src: Path, dst: Path, options: Options = Options(),
           on_progress: Callable[[float], None] | None = None, *,
           on_input: Callable[[InputInfo], None] | None = None, container: str | None = None,
           limits: Limits = Limits(),
           time_limit: Callable[[float | None], float] | None = None) -> InputInfo | None:
    """Converts src to dst with ffmpeg, all on disk; returns what ffmpeg said about the input (None: nothing).

    container: the key of CONTAINERS the gateway recognised (None: any of them). on_input(info) is called once,
    as soon as ffmpeg has described the input and before the progress that follows (on success at the latest
    when ffmpeg has finished); on_progress(seconds of output done) once per progress block ffmpeg writes (about
    twice a second). Both run in the calling thread; an exception from either stops ffmpeg and propagates.
    time_limit(duration_s) is how long ffmpeg may run, counted from its start: asked with None at the start and
    again with the duration when ffmpeg reports it; None means limits.time_limit_s.

    PermanentError for inputs ffmpeg cannot or may not convert (over a limit of `limits`); ConversionTimeout or
    OSError for transient trouble.
    """
    time_limit = time_limit or limits.time_limit_s
    # No inherited environment: the converter's holds MONGO_URI and RABBITMQ_URL with their passwords. The limits
    # are set by util-linux's prlimit, which execs ffmpeg under them: not by a preexec_fn, which Python warns is
    # unsafe in a threaded process (the consumer, reaper and health threads run beside us), nor from here after
    # the start, which would leave ffmpeg a moment without them.
    proc = subprocess.Popen(_prlimit(limits) + ffmpeg_args(src, dst, options, container=container, limits=limits),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={"PATH": os.environ.get("PATH", os.defpath)}, cwd=dst.parent,
                            # Its own session: a Ctrl-C or a process-group SIGTERM meant for the converter must not
                            # reach ffmpeg (it would exit and fail the job); stopping it is our watchdog's business.
                            start_new_session=True)
    assert proc.stdout is not None and proc.stderr is not None
    watchdog = _Watchdog(proc.kill, time_limit(None))
    refused: list[PermanentError] = []  # why ffmpeg was stopped as soon as the input's duration was known

    def input_known(info: InputInfo) -> None:  # in the reader's thread, at once; the caller hears in this one
        # The limit is on the audio converted: a long input trimmed to a short MP3 is fine (ffmpeg seeks).
        output_s = output_duration(options, info.duration_s)
        problem = trim_problem(options, info.duration_s) if info.duration_s is not None else None
        if problem:
            refused.append(PermanentError(problem))
            proc.kill()
        elif output_s is not None and output_s > limits.max_duration_s + _DURATION_MARGIN_S:
            refused.append(_too_long(limits, output_s))
            proc.kill()
        else:
            watchdog.set_limit(time_limit(info.duration_s))

    stderr = _Stderr(proc.stderr, on_input=input_known)
    told = waited = False
    converted_s = 0.0

    def tell_input() -> None:
        nonlocal told
        if on_input and not told and stderr.input is not None and not refused:
            told = True
            on_input(stderr.input)

    try:
        with io.TextIOWrapper(proc.stdout, encoding="utf-8", errors="replace") as progress:
            for seconds in progress_times(progress):
                if seconds > limits.max_duration_s + _DURATION_MARGIN_S:  # the input did not say, or lied
                    raise _too_long(limits, None)
                converted_s = max(converted_s, seconds)
                if not waited:  # the first block: the input's description must be read before it is reported
                    stderr.described.wait(_DESCRIBED_WAIT_S)
                    waited = True
                tell_input()
                if on_progress:
                    on_progress(seconds)
        returncode = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        watchdog.stop()
        stderr.join()
    if refused:
        raise refused[0]
    if returncode == 0:
        if not dst.exists() or dst.stat().st_size == 0:
            raise PermanentError("the video's audio stream is empty")
        if options.trimmed and converted_s <= 0:  # a start past the end of an input that did not say its duration
            raise PermanentError(f"start ({_seconds(options.start)} s) is past the end of the file")
        if dst.stat().st_size >= limits.max_output_bytes:  # -fs stopped it
            raise PermanentError(f"the MP3 would be larger than {limits.max_output_bytes} bytes")
        tell_input()  # a short input may end before its first progress block reached us
        return stderr.input
    tail = stderr.tail()
    if watchdog.fired:
        raise ConversionTimeout(f"ffmpeg was killed (signal {-returncode}) after {watchdog.limit_s:g} s limit")
    if returncode == -signal.SIGKILL:  # the OOM killer, or load: worth another attempt
        raise ConversionTimeout("ffmpeg was killed by signal 9")
    # ffmpeg catches SIGXCPU, SIGINT and SIGTERM itself and exits 255 with this as its last message; the file's own
    # text (metadata) can contain the words, so only the last message, exactly, counts.
    caught = _caught_signal(tail)
    if returncode == -signal.SIGXCPU or caught == signal.SIGXCPU:
        raise PermanentError(f"ffmpeg used up its {limits.cpu_s} s of CPU time")
    if caught in (signal.SIGINT, signal.SIGTERM):  # stopped from outside (a shutdown), not the file's doing
        raise ConversionTimeout(f"ffmpeg was stopped by signal {caught}")
    if returncode == -signal.SIGXFSZ:
        raise PermanentError(f"the MP3 would be larger than {limits.max_output_bytes} bytes")
    if returncode < 0:  # a crash (SIGSEGV, SIGABRT, ...) on this input: another attempt would crash again
        raise PermanentError(f"ffmpeg crashed (signal {-returncode}) reading this file")
    raise _failure(tail, src, limits, container)


# The cover: one frame, at most this wide, made by a second short ffmpeg run under the same limits (CPU time
# capped lower still: seeking to one frame and decoding it takes a fraction of a second).
COVER_WIDTH = 600
_COVER_TIMEOUT_S = 60
_COVER_CPU_S = 30
_COVER_BYTES = 4 * 1024 * 1024


def cover_args(src: Path, dst: Path, at_s: float, *, container: str | None) -> list[str]:
    """ffmpeg reading src as the same one container (input_args) and writing the frame at at_s as a JPEG at most
    COVER_WIDTH wide. -ss before -i: ffmpeg seeks in the container, decoding from the keyframe before at_s. One
    decoding thread: a thread per core each with its frame buffers does not fit the memory limit for an HD video."""
    return ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-filter_threads", "1",
            *input_args(container), "-ss", _seconds(at_s), "-threads", "1", "-i", str(src), "-map", "0:v:0", "-an", "-sn", "-dn", "-frames:v", "1",
            "-vf", f"scale=w='min({COVER_WIDTH},iw)':h=-1", "-pix_fmt", "yuvj420p", "-q:v", "3",
            "-fs", str(_COVER_BYTES), "-c:v", "mjpeg", "-f", "mjpeg", str(dst)]


def cover_frame(src: Path, work_dir: Path, at_s: float, *, container: str | None,
                limits: Limits = Limits()) -> bytes | None:
    """The JPEG of the video's frame at at_s; None for an audio upload, or when ffmpeg makes none (no video stream,
    an undecodable one, over a limit): the MP3 is then finished without a cover, as the conversion itself worked."""
    if container is not None and not container.startswith("video/"):
        return None
    jpeg = work_dir / "cover.jpg"
    bounded = dataclasses.replace(limits, cpu_s=min(limits.cpu_s, _COVER_CPU_S))
    try:
        # Like to_mp3's run: under prlimit, no environment, its own session; no output worth reading.
        done = subprocess.run(_prlimit(bounded) + cover_args(src, jpeg, at_s, container=container),
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={"PATH": os.environ.get("PATH", os.defpath)}, cwd=work_dir,
                              start_new_session=True, timeout=min(limits.timeout_s, _COVER_TIMEOUT_S))
    except subprocess.TimeoutExpired:
        log.warning("no cover: ffmpeg took longer than %d s to make it", min(limits.timeout_s, _COVER_TIMEOUT_S))
        return None
    size = jpeg.stat().st_size if jpeg.exists() else 0
    if done.returncode != 0 or not 0 < size < _COVER_BYTES:
        log.warning("no cover: ffmpeg made none (exit status %d)", done.returncode)
        return None
    return jpeg.read_bytes()


def finish_mp3(src: Path, dst: Path, options: Options = Options(), *, title: str, duration_s: float | None,
               container: str | None = None, limits: Limits = Limits()) -> None:
    """Completes the MP3 to_mp3 made: its tag (id3.finish_tag: the source's tags, title) and, with options.cover,
    the video's frame at a tenth of the MP3's length (duration_s) as its front cover."""
    cover = None
    if options.cover:
        at_s = (options.start or 0) + (duration_s or 0) / 10
        cover = cover_frame(src, dst.parent, at_s, container=container, limits=limits)
    id3.finish_tag(dst, title=title, cover=cover)


_CAUGHT = re.compile(r"Exiting normally, received signal (\d+)\.")


def _caught_signal(tail: str) -> int | None:
    """The signal ffmpeg caught and exited on, when its last logged message says so."""
    messages = _messages(tail)
    if not messages or messages[-1][0] != "info":
        return None
    found = _CAUGHT.fullmatch(messages[-1][1])
    return int(found.group(1)) if found else None


_PRLIMIT_OPTIONS = {resource.RLIMIT_CPU: "--cpu", resource.RLIMIT_FSIZE: "--fsize", resource.RLIMIT_AS: "--as",
                    resource.RLIMIT_CORE: "--core"}


def _prlimit(limits: Limits) -> list[str]:
    """`setpriv --pdeathsig KILL -- prlimit --cpu=soft:hard ... --` for limits.rlimits(): the command that runs
    ffmpeg under them, and kills it should the converter die first (killed, or gone at the end of its grace
    period): in a session of its own, ffmpeg would otherwise convert on for nobody."""
    return ["setpriv", "--pdeathsig", "KILL", "--",
            "prlimit", *(f"{_PRLIMIT_OPTIONS[which]}={soft}:{hard}" for which, (soft, hard) in limits.rlimits()),
            "--"]


def _too_long(limits: Limits, duration_s: float | None) -> PermanentError:
    said = f" ({duration_s:.0f} s)" if duration_s is not None else ""
    return PermanentError(f"the video is longer{said} than the {limits.max_duration_s} s of audio allowed")


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
    if len(parts) != 3 or "-" in value:
        return None
    try:
        hours, minutes, seconds = int(parts[0]), int(parts[1]), float(parts[2])
    except ValueError:
        return None
    # float() also takes "nan" and "inf", which a file can put in a forged Duration line.
    return hours * 3600 + minutes * 60 + seconds if math.isfinite(seconds) else None


# ffmpeg's `-loglevel level+...` tag: "[error] msg", or "[mov,mp4,m4a,3gp,3g2,mj2 @ 0x55d1c0] [error] msg".
_LEVEL = re.compile(r"(\[[^\]]* @ 0x[0-9a-f]+\] )?\[(trace|debug|verbose|info|warning|error|fatal|panic)\] ")
_ERROR_LEVELS = ("error", "fatal", "panic")
# The input's header as av_dump_format prints it. ffmpeg prints metadata keys unescaped, so a file can forge a
# whole "Duration" line (tag included) with a newline in a key: every Duration line of the run is read and the
# largest one counts. A forger can only make their own file look longer (and fail), never shorter.
_INPUT = re.compile(r"Input #0, (.+?), from '")
_DURATION = re.compile(r"  Duration: ([^,]+),")
# A file's metadata can forge these lines too (a key with a line break): then only its own job may report a
# duration before the real one; the limits and the stored duration do not rely on that report.
_DESCRIBED = ("Stream mapping:", "Output #0")
_DESCRIBED_WAIT_S = 2.0  # how long the first progress block waits for the stderr reader to catch up


class _Stderr:
    """Reads ffmpeg's stderr in a daemon thread (a pipe nobody reads would fill up and stall ffmpeg): the input's
    format and duration from its header, and only the last _STDERR_TAIL bytes for the error message."""

    def __init__(self, stream: IO[bytes], on_input: Callable[[InputInfo], None] | None = None) -> None:
        self.input: InputInfo | None = None
        # Set once the input's description is over ("Stream mapping:", which ffmpeg writes before any progress) or
        # the stream has ended: progress on the other pipe can overtake this thread, so its reader waits for it.
        self.described = threading.Event()
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
                self._parse(line.decode("utf-8", "replace"))
                self._kept += line
                if len(self._kept) > 2 * _STDERR_TAIL:  # trimmed in steps, not per line
                    del self._kept[:-_STDERR_TAIL]
                    self._cut = True
        finally:
            self.described.set()
            self._stream.close()

    def _parse(self, line: str) -> None:
        tag = _LEVEL.match(line)
        text = line[tag.end():] if tag else line
        if text.startswith(_DESCRIBED):
            self.described.set()
        if self._format is None:
            found = _INPUT.match(text)
            if found:
                self._format = found.group(1)
            return
        found = _DURATION.match(text)
        if found:
            duration = parse_out_time(found.group(1))
            known = self.input.duration_s if self.input is not None else None
            if self.input is not None and (duration is None or (known is not None and duration <= known)):
                return
            self.input = InputInfo(format_name=self._format, duration_s=duration)
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


# What ffmpeg says when the input asks for more than input_args allows.
_NOT_ALLOWED_FORMAT = re.compile(r"^\[(\w+) @ 0x[0-9a-f]+\] Format not on whitelist")
_NOT_ALLOWED_PROTOCOL = re.compile(r"Protocol '([^']{1,32})' not on whitelist")


def _failure(log: str, src: Path, limits: Limits = Limits(), container: str | None = None) -> Exception:
    """The exception for an ffmpeg run that failed, from the end of its log."""
    # Only what ffmpeg logged as an error counts: the input's description holds the file's own metadata text.
    messages = _messages(log)
    errors = [text for level, text in messages if level in _ERROR_LEVELS]
    reason = _reason(errors[-1] if errors else messages[-1][1] if messages else "no details", src)
    if any("No space left on device" in text for text in errors):
        return OSError(f"ffmpeg: {reason}")
    if any("matches no streams" in text for text in errors):
        return PermanentError("the video has no audio stream")
    for text in errors:
        if found := _NOT_ALLOWED_FORMAT.match(text):
            return PermanentError(f"the file is not in a supported video or audio container (it reads as {found.group(1)})")
        if found := _NOT_ALLOWED_PROTOCOL.search(text):
            return PermanentError(f"the file refers to a {found.group(1)} stream; only the uploaded file is read")
    if any("Cannot allocate memory" in text for text in errors):
        return PermanentError(f"ffmpeg needed more than its {limits.memory_mb} MB of memory")
    read_as = f" (read as {container})" if container else ""
    return PermanentError(f"the file is not a readable video{read_as}: {reason}")


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
