"""JSON-lines logging to stdout, shared by the app and gunicorn's own loggers."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

# Extra attributes callers pass with `extra=` that are worth a field of their own.
_FIELDS = ("job_id", "video_fid", "mp3_fid", "status", "bytes", "endpoint", "client")


class JsonFormatter(logging.Formatter):
    """One JSON object per line so the cluster's log collector can index job_id without regexes."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in _FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                entry[field] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: int = logging.INFO) -> None:
    """Attach one stdout JSON handler to the `gateway` logger; safe to call once per app."""
    logger = logging.getLogger("gateway")
    logger.setLevel(level)
    if not any(getattr(h, "_gateway_json", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(JsonFormatter())
        handler._gateway_json = True  # marker: tests create many apps in one process
        logger.addHandler(handler)
    # Our handler is the only one; the root logger may print text (gunicorn's defaults).
    logger.propagate = False
