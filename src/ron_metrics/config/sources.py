"""
Reading configuration sources: the TOML file, and deprecated-key aliases in any source.
"""

from __future__ import annotations

import logging
import tomllib
import warnings
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ron_metrics._files import NotReadableError, read_outside_file
from ron_metrics.errors import ConfigProblem
from ron_metrics.logs import log_event

__all__ = [
    "DEPRECATED_ALIASES",
    "MAX_CONFIG_BYTES",
    "MAX_NESTING",
    "apply_aliases",
    "parse_toml",
    "read_file",
]

_log = logging.getLogger("ron_metrics.config")

# Bounds on a config document: far above any real config, far below harm.
MAX_CONFIG_BYTES = 1024 * 1024
MAX_NESTING = 16


# Deprecated key paths and their replacements (an alias is kept for at least one minor release).
DEPRECATED_ALIASES: Mapping[str, str] = MappingProxyType(
    {
        "exporter.prometheus.listen_addr": "exporter.prometheus.bind",
        "exporter.otlp.export_interval": "exporter.otlp.interval",
    }
)


def apply_aliases(
    raw: dict[str, Any], source: str, problems: list[ConfigProblem]
) -> None:
    for old, new in DEPRECATED_ALIASES.items():
        *old_parents, old_leaf = old.split(".")
        table: Any = raw
        for part in old_parents:
            table = table.get(part) if isinstance(table, dict) else None
        if not isinstance(table, dict) or old_leaf not in table:
            continue
        new_leaf = new.rsplit(".", 1)[1]
        if new_leaf in table:
            problems.append(
                ConfigProblem(
                    old, f"deprecated alias of {new}; both are set in {source}"
                )
            )
            continue
        message = (
            f"ron-metrics config key {old!r} ({source}) is deprecated; use {new!r}"
        )
        # Visible without -W: a JSON warning line, and the Python warning for tools.
        log_event(
            _log, logging.WARNING, "deprecated_key", key=old, use=new, source=source
        )
        warnings.warn(message, DeprecationWarning, stacklevel=4)
        table[new_leaf] = table.pop(old_leaf)


def _depth(value: object, level: int = 0) -> int:
    if level > MAX_NESTING:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level + 1)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level + 1)
    return level


class _MalformedError(Exception):
    pass


def _parse_bounded(data: bytes, subject: str) -> dict[str, Any]:
    if len(data) > MAX_CONFIG_BYTES:
        raise _MalformedError(f"{subject} is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _MalformedError(
            f"{subject} is not UTF-8 (invalid byte at offset {exc.start})"
        ) from exc
    # A cheap guard before the parser recurses: this many brackets cannot be a
    # config of ours.
    if text.count("[") + text.count("{") > 10_000:
        raise _MalformedError(f"{subject} has too many nested tables or arrays")
    try:
        parsed = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _MalformedError(f"{subject} is not valid TOML: {exc}") from exc
    except RecursionError as exc:
        raise _MalformedError(f"{subject} is nested too deeply") from exc
    if _depth(parsed) > MAX_NESTING:
        raise _MalformedError(f"{subject} is nested deeper than {MAX_NESTING} levels")
    return parsed


def parse_toml(
    data: bytes, key: str, subject: str, problems: list[ConfigProblem]
) -> dict[str, Any]:
    """
    Parse a TOML document strictly: UTF-8, bounded in size and nesting.

    Any malformed input becomes a problem at ``key`` (``subject`` names the input
    in the message); nothing escapes as another exception.
    """
    try:
        return _parse_bounded(data, subject)
    except _MalformedError as exc:
        problems.append(ConfigProblem(key, str(exc)))
        return {}


def read_file(path: Path, problems: list[ConfigProblem]) -> dict[str, Any]:
    try:
        data = read_outside_file(path, limit=MAX_CONFIG_BYTES)
    except NotReadableError as exc:
        problems.append(ConfigProblem("(file)", f"config file {exc}"))
        return {}
    except FileNotFoundError:
        problems.append(
            ConfigProblem("(file)", f"config file {str(path)!r} does not exist")
        )
        return {}
    except IsADirectoryError:
        problems.append(ConfigProblem("(file)", f"{str(path)!r} is a directory"))
        return {}
    except OSError as exc:
        problems.append(
            ConfigProblem("(file)", f"cannot read {str(path)!r}: {exc.strerror}")
        )
        return {}
    return parse_toml(data, "(file)", repr(str(path)), problems)
