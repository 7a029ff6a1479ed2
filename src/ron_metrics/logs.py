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

__all__ = ["MAX_FIELD_CHARS", "log_event"]

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
