"""JSON log lines, each with the id of the request it belongs to."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "abpn_request_id", default=None
)
"""Id of the request being handled by the current task (set by the middleware)."""

# Attributes every LogRecord has; anything else was passed through `extra=` and is logged.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, extras."""

    def format(self, record: logging.LogRecord) -> str:
        """Render `record` as a single JSON line."""
        line: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None) or request_id.get()
        if rid:
            line["request_id"] = rid
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key != "request_id":
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


# What logging.captureWarnings writes first: "path:line: Category:", the warning's source.
_WARNING_SOURCE = re.compile(r"^.*?:\d+: \w+:")


class _OncePerSource(logging.Filter):
    """Passes the first warning from each place in the code: Pillow warns once per oversized
    EXIF tag, and one photo with thousands of them wrote thousands of lines."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        """False for a warning from a source already logged."""
        text = record.getMessage()
        found = _WARNING_SOURCE.match(text)
        source = found.group(0) if found else text
        if source in self._seen:
            return False
        self._seen.add(source)
        return True


def configure(level: str = "info") -> None:
    """Send every log record (uvicorn's included) to stderr as JSON lines at `level`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Pillow logs what it thinks of malformed files, some at ERROR: that is the client's data,
    # already answered 400, and a fuzzer could fill the log with it.
    logging.getLogger("PIL").setLevel(logging.CRITICAL)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        # uvicorn's own handlers would print plain text; let records reach the root instead.
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # Python warnings would print plain text on stderr: log them, once per source, as JSON.
    logging.captureWarnings(True)
    warned = logging.getLogger("py.warnings")
    warned.handlers[:] = []
    warned.propagate = True
    warned.filters[:] = [_OncePerSource()]
