"""
Structured JSON log lines through stdlib ``logging``.

Each event is logged as one JSON object (the record's message), so it reads the
same under any handler the host configures. Values are bounded: strings are cut
at :data:`MAX_FIELD_CHARS`, and headers are never logged.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

__all__ = [
    "MAX_FIELD_CHARS",
    "OWNED_LOGGERS",
    "JsonLineFormatter",
    "RateLimitedLog",
    "json_line",
    "log_event",
    "own_logging",
    "say_line",
]

MAX_FIELD_CHARS = 256


def _bounded(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_FIELD_CHARS:
        return value[:MAX_FIELD_CHARS] + "…"
    return value


def json_line(level: int, event: str, **fields: Any) -> str:
    """
    One JSON object ``{"ts", "level", "event", **fields}`` (no newline).
    """
    now = time.time()
    record = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
        + f".{int(now * 1000) % 1000:03d}Z",
        "level": logging.getLevelName(level).lower(),
        "event": event,
    }
    record.update({key: _bounded(value) for key, value in fields.items()})
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False, default=str)


def say_line(level: int, event: str, **fields: Any) -> None:
    """
    Write one JSON line straight to stderr, bypassing ``logging``.

    One ``write`` per line: ``print`` writes the newline separately, so another
    thread's line (an exporter's, say) could land between a line and its end.
    """
    sys.stderr.write(json_line(level, event, **fields) + "\n")
    sys.stderr.flush()


def log_event(logger: logging.Logger, level: int, event: str, **fields: Any) -> None:
    """
    Log one JSON line ``{"ts", "level", "event", **fields}`` if ``level`` is enabled.
    """
    if logger.isEnabledFor(level):
        logger.log(level, json_line(level, event, **fields))


class RateLimitedLog:
    """
    One JSON line per event kind per ``interval`` seconds; the rest are counted.

    An attack produces a line an operator can see, not a flood: each line carries
    ``suppressed``, the number of events of that kind left out since the last one.
    """

    def __init__(self, logger: logging.Logger, interval: float = 1.0) -> None:
        self._logger = logger
        self._interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def log(self, level: int, event: str, **fields: Any) -> None:
        """
        Log ``event`` now, or count it as suppressed if one was logged recently.
        """
        now = time.monotonic()
        last = self._last.get(event)
        if last is not None and now - last < self._interval:
            self._suppressed[event] = self._suppressed.get(event, 0) + 1
            return
        self._last[event] = now
        suppressed = self._suppressed.pop(event, 0)
        log_event(self._logger, level, event, suppressed=suppressed, **fields)


# Loggers whose records a ron-metrics-owned handler takes: ours, and the OTel
# SDK's and exporters' (their "Failed to export" and retry lines).
OWNED_LOGGERS = ("ron_metrics", "opentelemetry")
_URL_PASSWORD = re.compile(r"(://[^/@\s:]*):[^/@\s]*@")


class JsonLineFormatter(logging.Formatter):
    """
    Every record as one JSON line: ours as they are, any other wrapped as
    ``{"ts", "level", "event": "library_log", "logger", "message"}``.
    """

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.name.startswith("ron_metrics") and message.startswith('{"ts":'):
            return message
        # Another library may print a URL with its password: mask it.
        message = _URL_PASSWORD.sub(r"\1:***@", message)
        fields: dict[str, Any] = {"logger": record.name, "message": message}
        if record.exc_info and record.exc_info[1] is not None:
            fields["error"] = repr(record.exc_info[1])
        return json_line(record.levelno, "library_log", **fields)


class _LibraryRateLimit(logging.Filter):
    # Another library's records: one per message template per second, the rest
    # counted into the next one that passes (ours are rate-limited where logged).
    def __init__(self, interval: float = 1.0) -> None:
        super().__init__()
        self._interval = interval
        self._last: dict[tuple[str, object], float] = {}
        self._suppressed: dict[tuple[str, object], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("ron_metrics"):
            return True
        key = (record.name, record.msg)
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        self._last[key] = now
        suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            record.msg = f"{record.msg} (and {suppressed} more like it)"
        return True


def own_logging(stream: Any = None, *, root: bool = False) -> logging.Handler | None:
    """
    Send ron-metrics' and the OpenTelemetry SDK's records to ``stream`` (stderr by
    default) as JSON lines, one stream for all. ``root`` takes every logger's
    records (a process ron-metrics runs entirely, like the demo).

    ``RON_METRICS_OWN_LOGGING=0`` opts out: the records are left to the program's
    own logging configuration. Returns the handler installed, if any.
    """
    import os
    import sys

    if os.environ.get("RON_METRICS_OWN_LOGGING", "1") == "0":
        return None
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonLineFormatter())
    handler.addFilter(_LibraryRateLimit())
    if root:
        logging.root.addHandler(handler)
        logging.root.setLevel(logging.INFO)
        return handler
    for name in OWNED_LOGGERS:
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.propagate = False
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO if name == "ron_metrics" else logging.WARNING)
    return handler
