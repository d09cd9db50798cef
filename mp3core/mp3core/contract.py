"""The inter-service contract, in one place: queues, messages, job statuses, options, ids and file names.

The gateway and the converter build their messages here and the consumers parse them here, so a producer
cannot drift from its consumer. docs/design.md describes the same contract in prose.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import PureWindowsPath
from typing import Any

from .errors import ContractError

# --- queues ---------------------------------------------------------------------------------------------
VIDEO_QUEUE = "video"  # gateway -> converter: an uploaded video to convert
MP3_QUEUE = "mp3"      # converter -> notification: a job that ended, done or failed
# A message handed out this many times without being settled (its consumer died with it each time) is
# dead-lettered by the broker: a crash loop cannot hold a queue forever. Transient failures are retried in
# place by the consumer (mp3core/consumer.py), so an outage of MongoDB or SMTP does not count.
DELIVERY_LIMIT = 10

# Each queue has its own exchange: publishers write to exchange `<queue>` (direct, routing key = the queue's
# name), never to the default one, so a broker user's write permission names exactly the queues it may feed.
# A rejected message goes through exchange `<queue>.dlx` to the quorum queue `<queue>.dead`, which only an
# operator reads. (`<queue>.dlq` was the dead-letter queue of the classic queues before; see docs/broker.md.)


def exchange(queue: str) -> str:
    """The exchange publishers of `queue` write to (routing key: the queue's name)."""
    return queue


def dead_letter_exchange(queue: str) -> str:
    return queue + ".dlx"


def dead_letter_queue(queue: str) -> str:
    """Where the broker puts a message its consumer rejected for good (or that hit DELIVERY_LIMIT)."""
    return queue + ".dead"


def queue_arguments(queue: str) -> dict[str, Any]:
    """The exact declare arguments of `queue`: every declarer must pass the same, or the broker refuses it."""
    return {"x-queue-type": "quorum", "x-delivery-limit": DELIVERY_LIMIT,
            "x-dead-letter-exchange": dead_letter_exchange(queue),
            "x-dead-letter-routing-key": dead_letter_queue(queue)}


def declare_queue(channel: Any, queue: str, *, publish: bool = True, consume: bool = True) -> None:
    """Declares what a publisher and/or a consumer of `queue` needs on a pika channel, and nothing more, so
    each service's broker user needs permissions only for its part (rabbit/service-users.sh):
    - both: the quorum queue (its dead-letter arguments need write on `<queue>.dlx` and read on the queue);
    - a publisher: exchange `<queue>` bound to the queue (needs write on the queue: the same name);
    - a consumer: the dead-letter exchange and queue, bound (only a consumer rejects).
    """
    channel.queue_declare(queue, durable=True, arguments=queue_arguments(queue))
    if publish:
        channel.exchange_declare(exchange(queue), "direct", durable=True)
        channel.queue_bind(queue, exchange(queue), routing_key=queue)
    if consume:
        dlx, dlq = dead_letter_exchange(queue), dead_letter_queue(queue)
        channel.exchange_declare(dlx, "direct", durable=True)
        channel.queue_declare(dlq, durable=True, arguments={"x-queue-type": "quorum"})
        channel.queue_bind(dlq, dlx, routing_key=dlq)


# --- ids --------------------------------------------------------------------------------------------------
JOB_ID = re.compile(r"[0-9a-f]{32}")   # uuid4().hex
FILE_ID = re.compile(r"[0-9a-f]{24}")  # a GridFS ObjectId as str() prints it
# One address, no display name: no separators that could smuggle in a second recipient. (An apostrophe is
# allowed, as in o'neil@example.com: whoever puts the address into a shell command quotes it.)
EMAIL = re.compile(r"[^@\s,;<>\"]+@[^@\s,;<>\"']+")


def is_job_id(value: object) -> bool:
    return isinstance(value, str) and JOB_ID.fullmatch(value) is not None


def is_file_id(value: object) -> bool:
    return isinstance(value, str) and FILE_ID.fullmatch(value) is not None


# --- job statuses -----------------------------------------------------------------------------------------
QUEUED, CONVERTING, DONE, FAILED, EXPIRED = "queued", "converting", "done", "failed", "expired"
STATUSES = (QUEUED, CONVERTING, DONE, FAILED, EXPIRED)
UNFINISHED = (QUEUED, CONVERTING)  # a converter may (still) work on these
ENDED = (DONE, FAILED)             # the statuses an `mp3` message announces

# --- output options ---------------------------------------------------------------------------------------
OPTION_VALUES: dict[str, tuple[int, ...]] = {
    "bitrate": (64, 80, 96, 112, 128, 160, 192, 224, 256, 320),  # LAME CBR kbit/s
    "quality": tuple(range(10)),                                   # LAME VBR -q:a, 0 best
    "channels": (1, 2),
    "sample_rate": (22050, 44100, 48000),
}
TIME_OPTIONS = ("start", "end")         # seconds into the source (a JSON number), cut with ffmpeg's input seeking
FLAG_OPTIONS = ("normalize", "cover")   # true/false; null = false
OPTION_NAMES = (*OPTION_VALUES, *TIME_OPTIONS, *FLAG_OPTIONS)
MAX_TIME_S = 359_999.999  # 99:59:59.999, the largest hh:mm:ss[.fff]
OPTION_HINTS = {
    "bitrate": "bitrate must be one of " + ", ".join(map(str, OPTION_VALUES["bitrate"]))
               + " (kbit/s, constant bit rate)",
    "quality": "quality must be an integer from 0 (best) to 9 (variable bit rate)",
    "channels": "channels must be 1 or 2",
    "sample_rate": "sample_rate must be one of " + ", ".join(map(str, OPTION_VALUES["sample_rate"])),
    **{name: f"{name} must be a time from 0 to 99:59:59.999: seconds (90 or 90.5) or hh:mm:ss[.fff] (00:01:30.5)"
       for name in TIME_OPTIONS},
    **{name: f"{name} must be true or false" for name in FLAG_OPTIONS},
}
DEFAULT_BITRATE = 192  # used when neither bitrate nor quality is set
LOUDNESS_LUFS = -16    # normalize=true: EBU R128 integrated loudness target (the usual one for spoken audio)


def _is_time(value: object) -> bool:
    # bool is an int subclass: true must not pass as 1 s.
    return (type(value) in (int, float) and math.isfinite(value)  # type: ignore[arg-type]
            and 0 <= value <= MAX_TIME_S)  # type: ignore[operator]


@dataclass(frozen=True)
class Options:
    """Output options; None = the default (CBR 192 kbit/s, the source's channels and sample rate, the whole
    source, no loudness normalisation, no cover picture)."""

    bitrate: int | None = None
    quality: int | None = None
    channels: int | None = None
    sample_rate: int | None = None
    start: float | None = None  # seconds into the source where the MP3 begins
    end: float | None = None    # seconds into the source where it ends (not a length)
    normalize: bool | None = None
    cover: bool | None = None

    def __post_init__(self) -> None:
        for name in OPTION_VALUES:
            value = getattr(self, name)
            # bool is an int subclass: true must not pass as channels=1.
            if value is not None and (type(value) is not int or value not in OPTION_VALUES[name]):
                raise ContractError(OPTION_HINTS[name], field=name)
        for name in TIME_OPTIONS:
            if getattr(self, name) is not None and not _is_time(getattr(self, name)):
                raise ContractError(OPTION_HINTS[name], field=name)
        for name in FLAG_OPTIONS:
            if type(getattr(self, name)) not in (type(None), bool):
                raise ContractError(OPTION_HINTS[name], field=name)
        if self.bitrate is not None and self.quality is not None:
            raise ContractError("send either bitrate (constant) or quality (variable bit rate), not both",
                                field="quality")
        if self.end is not None and self.end <= (self.start or 0):
            raise ContractError("end must be after start" if self.start else "end must be greater than 0", field="end")

    @property
    def trimmed(self) -> bool:
        """Whether start or end cut anything off (start=0 alone does not)."""
        return bool(self.start) or self.end is not None

    def to_dict(self) -> dict[str, int | float | bool | None]:
        """Every option, unset ones as None: the shape stored on the job and sent in the message."""
        return asdict(self)


def parse_options(raw: object) -> Options:
    """The `options` of a message or job; absent or null (whole or per key) = default; ContractError if bad."""
    if raw is None:
        return Options()
    if not isinstance(raw, dict):
        raise ContractError("options must be an object", field="options")
    unknown = sorted(set(raw) - set(OPTION_NAMES))
    if unknown:
        raise ContractError(f"unknown option {unknown[0]!r}"[:200], field=unknown[0][:64])
    return Options(**{name: raw.get(name) for name in OPTION_NAMES})


# --- containers -------------------------------------------------------------------------------------------
# What the gateway recognises from an upload's first bytes, video or audio (its MIME type, carried in the
# `video` message as `container`) and the one ffmpeg demuxer the converter reads it with: ffmpeg never probes the format itself,
# so a file that merely starts like an MP4 cannot be read as a playlist, a manifest or a network description.
CONTAINERS: dict[str, str] = {
    "video/mp4": "mov",
    "video/x-matroska": "matroska",
    "video/x-msvideo": "avi",
    "video/x-flv": "flv",
    "video/mpeg": "mpeg",
    "video/x-ms-asf": "asf",
    "video/ogg": "ogg",
    "video/mp2t": "mpegts",
    # Audio files, converted like a video's sound track (an MP3 with nothing to re-encode is copied).
    "audio/mpeg": "mp3",
    "audio/wav": "wav",
    "audio/flac": "flac",
    "audio/mp4": "mov",  # M4A: AAC (or ALAC) in ISO-BMFF, read as MP4
    "audio/ogg": "ogg",  # Vorbis, Opus (or FLAC) in Ogg
}


# --- file names -------------------------------------------------------------------------------------------
DEFAULT_FILENAME = "video"
MAX_FILENAME = 255
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def clean_filename(raw: str | None) -> str:
    """An uploaded file's name as stored: no client directory part, no control characters, at most 255 chars."""
    name = PureWindowsPath(raw or "").name  # drops any client-side directory, / or \
    name = "".join(ch for ch in name if ch.isprintable()).strip()
    if name in ("", ".", ".."):
        return DEFAULT_FILENAME
    return name[:MAX_FILENAME]


def stem(filename: str) -> str:
    """The name without directory, extension or control characters ('' if nothing is left)."""
    name = PureWindowsPath(filename).name
    base = name.rsplit(".", 1)[0] if "." in name[1:] else name
    return _CONTROL.sub("", base).strip(" .")


def mp3_filename(filename: str) -> str:
    """'<stem>.mp3': the name the MP3 of an upload called `filename` is stored and offered under."""
    return f"{stem(filename) or 'audio'}.mp3"


# --- messages ---------------------------------------------------------------------------------------------
def _check(name: str, ok: bool, what: str) -> None:
    if not ok:
        raise ContractError(f"message field {name!r} is missing or not {what}", field=name)


def is_email(value: object) -> bool:
    return isinstance(value, str) and EMAIL.fullmatch(value) is not None


def _text(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip()) and len(value) <= 1024


def _object(raw: object) -> dict:
    if not isinstance(raw, dict):
        raise ContractError("message is not a JSON object")
    return raw


@dataclass(frozen=True)
class VideoMessage:
    """On `video`: the gateway stored a video for job_id; the converter turns it into an MP3.

    Validated when built, so a producer cannot publish what the consumer would refuse.
    """

    job_id: str
    video_fid: str
    username: str
    filename: str
    options: Options = field(default_factory=Options)
    # A key of CONTAINERS; None only in messages from before the field existed (then the converter allows
    # every demuxer of CONTAINERS and no other).
    container: str | None = None

    def __post_init__(self) -> None:
        _check("job_id", is_job_id(self.job_id), "a 32-character hex id")
        _check("video_fid", is_file_id(self.video_fid), "a 24-character hex file id")
        _check("username", is_email(self.username), "an email address")
        _check("filename", _text(self.filename), "a non-empty string")
        _check("options", isinstance(self.options, Options), "an object")
        known = self.container is None or (isinstance(self.container, str) and self.container in CONTAINERS)
        _check("container", known, "one of " + ", ".join(CONTAINERS))

    def to_dict(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "video_fid": self.video_fid, "username": self.username,
                "filename": self.filename, "options": self.options.to_dict(), "container": self.container}

    def done(self, mp3_fid: str) -> Mp3Message:
        """The `mp3` message announcing this job's MP3."""
        return Mp3Message(self.job_id, self.video_fid, self.username, self.filename, DONE, mp3_fid=mp3_fid)

    def failed(self, reason: str) -> Mp3Message:
        """The `mp3` message announcing that this job failed, and why."""
        return Mp3Message(self.job_id, self.video_fid, self.username, self.filename, FAILED,
                          error=reason or "conversion failed")


def parse_video_message(raw: object, *, options: bool = True) -> VideoMessage:
    """Validates a `video` message; ContractError naming the first bad field.

    options=False skips (and defaults) the options: enough to tell the user that the job failed, even when it
    failed because of its options.
    """
    raw = _object(raw)
    return VideoMessage(raw.get("job_id"), raw.get("video_fid"), raw.get("username"), raw.get("filename"),
                        parse_options(raw.get("options")) if options else Options(), raw.get("container"))


@dataclass(frozen=True)
class Mp3Message:
    """On `mp3`: job_id ended, `done` with mp3_fid or `failed` with a reason; notification emails the owner.

    Validated when built, like VideoMessage.
    """

    job_id: str
    video_fid: str | None
    username: str
    filename: str
    status: str
    mp3_fid: str | None = None
    error: str | None = None

    def __post_init__(self) -> None:
        _check("job_id", is_job_id(self.job_id), "a 32-character hex id")
        _check("video_fid", self.video_fid is None or is_file_id(self.video_fid), "a 24-character hex file id")
        _check("username", is_email(self.username), "an email address")
        _check("filename", _text(self.filename), "a non-empty string")
        _check("status", self.status in ENDED, f"{DONE!r} or {FAILED!r}")
        if self.status == DONE:
            _check("mp3_fid", is_file_id(self.mp3_fid), "a 24-character hex file id")
        else:
            _check("error", self.error is None or isinstance(self.error, str), "a string or null")

    def to_dict(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "video_fid": self.video_fid, "mp3_fid": self.mp3_fid,
                "username": self.username, "filename": self.filename, "status": self.status, "error": self.error}


def parse_mp3_message(raw: object) -> Mp3Message:
    """Validates an `mp3` message; ContractError naming the first bad field."""
    raw = _object(raw)
    done = raw.get("status") == DONE
    return Mp3Message(raw.get("job_id"), raw.get("video_fid"), raw.get("username"), raw.get("filename"),
                      raw.get("status"), mp3_fid=raw.get("mp3_fid") if done else None,
                      error=None if done else raw.get("error"))
