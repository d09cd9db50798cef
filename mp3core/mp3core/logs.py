"""JSON-lines logging to stdout, one schema for every service: ts, level, logger, msg, job_id, extras, exc."""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from datetime import UTC, datetime

# A context variable rather than a LoggerAdapter so that lines from adapters and retry helpers, which do not
# know the job, still carry its job_id: each worker thread (and each request) runs in its own context.
_job_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("job_id", default=None)

# Attributes every LogRecord has; anything else was passed with `extra=` and is emitted as a JSON field.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


@contextlib.contextmanager
def job_context(job_id: str | None) -> Iterator[None]:
    """Tags every line logged by this thread inside the block with job_id."""
    token = _job_id.set(job_id)
    try:
        yield
    finally:
        _job_id.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, job_id (when known), every extra, exc."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        job_id = getattr(record, "job_id", None) or _job_id.get()
        if job_id is not None:
            entry["job_id"] = job_id
        for key, value in vars(record).items():
            # setdefault: an extra can add a field but never replace one of the schema's own.
            if key not in _STANDARD and not key.startswith("_"):
                entry.setdefault(key, value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class _Stdout(logging.StreamHandler):
    """Writes to whatever sys.stdout is at emit time, so a replaced stdout (redirection, tests) is honoured."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property
    def stream(self):  # noqa: ANN201
        return sys.stdout

    @stream.setter
    def stream(self, value) -> None:  # noqa: ANN001
        pass


def setup(level: int = logging.INFO) -> None:
    """Routes all logging to stdout as JSON lines (the container runtime collects stdout); safe to repeat."""
    handler = _Stdout()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # pika logs each failed connection attempt as several ERROR lines with tracebacks; the consumer loop
    # already logs one line per failure with the cause, so only pika's critical lines are kept.
    logging.getLogger("pika").setLevel(logging.CRITICAL)


# gunicorn's `logconfig_dict` for the Flask services: its error and access lines in the same JSON schema.
GUNICORN_LOGCONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "mp3core.logs.JsonFormatter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"}},
    "root": {"level": "INFO", "handlers": ["console"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["console"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": ["console"], "propagate": False},
    },
}
