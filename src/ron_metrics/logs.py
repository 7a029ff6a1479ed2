"""
Structured JSON log lines through stdlib ``logging``.

Each event is logged as one JSON object (the record's message), so it reads the
same under any handler the host configures. Values are bounded: strings are cut
at :data:`MAX_FIELD_CHARS`, and headers are never logged.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

__all__ = ["MAX_FIELD_CHARS", "RateLimitedLog", "log_event"]

MAX_FIELD_CHARS = 256


def _bounded(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_FIELD_CHARS:
        return value[:MAX_FIELD_CHARS] + "…"
    return value


def log_event(logger: logging.Logger, level: int, event: str, **fields: Any) -> None:
    """
    Log one JSON line ``{"ts", "level", "event", **fields}`` if ``level`` is enabled.
    """
    if not logger.isEnabledFor(level):
        return
    record = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        + f".{int(time.time() * 1000) % 1000:03d}Z",
        "level": logging.getLevelName(level).lower(),
        "event": event,
    }
    record.update({key: _bounded(value) for key, value in fields.items()})
    logger.log(
        level,
        json.dumps(record, separators=(",", ":"), ensure_ascii=False, default=str),
    )


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
