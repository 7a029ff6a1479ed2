"""
Parsers for single configuration values.

Each parser takes the raw value (from TOML, the environment or a keyword argument)
and returns the typed value, or raises :class:`InvalidValueError` with a message that
says what is wrong without echoing values that may be secret.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

__all__ = [
    "BindAddress",
    "InvalidValueError",
    "parse_bind",
    "parse_bool",
    "parse_buckets",
    "parse_choice",
    "parse_delay",
    "parse_duration",
    "parse_int_between",
    "parse_name_list",
    "parse_name_prefix",
    "parse_optional_str",
    "parse_positive_int",
    "parse_str",
    "parse_str_mapping",
]


class InvalidValueError(Exception):
    """
    Raised by a value parser; the loader attaches the key path.
    """


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(us|ms|s|m|h)?\s*$", re.ASCII)
_ASCII_DIGITS = re.compile(r"[0-9]+")
_UNIT_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,127}$")


def parse_duration(raw: object) -> float:
    """
    Parse ``"2s"``, ``"150ms"``, ``"1m"``, ``"500us"`` or a number of seconds.

    Returns:
        The duration in seconds, always > 0 and finite.
    """
    if isinstance(raw, bool):
        raise InvalidValueError(
            "expected a duration such as '2s' or '150ms', got a boolean"
        )
    if isinstance(raw, int | float):
        seconds = float(raw)
    elif isinstance(raw, str):
        match = _DURATION.match(raw)
        if match is None:
            raise InvalidValueError(
                f"expected a duration such as '2s', '150ms' or '1m', got {raw!r}"
            )
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2) or "s"]
    else:
        raise InvalidValueError(f"expected a duration string, got {type(raw).__name__}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise InvalidValueError("must be a positive duration")
    return seconds


def parse_delay(raw: object) -> float:
    """
    Like :func:`parse_duration`, but zero (``"0s"`` or ``0``) is allowed.
    """
    if raw in (0, "0", "0s", "0ms"):
        return 0.0
    return parse_duration(raw)


def parse_bool(raw: object) -> bool:
    """
    Parse a boolean: ``true`` or ``false`` only, never a string (no coercion).
    """
    if isinstance(raw, bool):
        return raw
    raise InvalidValueError(
        f"expected true or false (a boolean), got {describe_type(raw)}"
        + (" — write it without quotes" if isinstance(raw, str) else "")
    )


def parse_buckets(raw: object) -> tuple[float, ...]:
    """
    Parse histogram bucket boundaries: a non-empty list of finite, increasing numbers.
    """
    if not isinstance(raw, list | tuple) or not raw:
        raise InvalidValueError(
            f"expected a non-empty list of numbers such as [0.1, 0.5, 1], got {describe_type(raw)}"
        )
    bounds: list[float] = []
    for item in raw:
        if isinstance(item, bool) or not isinstance(item, int | float):
            raise InvalidValueError(
                f"bucket boundaries must be numbers, got {describe_type(item)}"
            )
        if not math.isfinite(item):
            raise InvalidValueError("bucket boundaries must be finite")
        if bounds and item <= bounds[-1]:
            raise InvalidValueError("bucket boundaries must be strictly increasing")
        bounds.append(float(item))
    return tuple(bounds)


_PREFIX = re.compile(r"(?:[a-z_][a-z0-9_]*_)?")


def parse_name_prefix(raw: object) -> str:
    """
    Parse a metric-name prefix: empty, or lower-case snake case ending in ``_``.
    """
    if not isinstance(raw, str) or not _PREFIX.fullmatch(raw):
        raise InvalidValueError(
            "expected \"\" or a lower-case prefix ending in '_', such as 'ron_metrics_'"
        )
    return raw


def parse_positive_int(raw: object) -> int:
    """
    Parse an integer >= 1 (an integer, never a string: no coercion).
    """
    if isinstance(raw, bool):
        raise InvalidValueError("expected a positive integer, got a boolean")
    if not isinstance(raw, int):
        raise InvalidValueError(
            f"expected a positive integer, got {describe_type(raw)}"
            + (" — write it without quotes" if isinstance(raw, str) else "")
        )
    if raw < 1:
        raise InvalidValueError(f"must be >= 1, got {raw}")
    return raw


def parse_int_between(low: int, high: int) -> Callable[[object], int]:
    """
    Build a parser for an integer in ``[low, high]`` (an integer, never a string).
    """

    def parse(raw: object) -> int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise InvalidValueError(
                f"expected an integer from {low} to {high}, got {describe_type(raw)}"
            )
        if not low <= raw <= high:
            raise InvalidValueError(f"must be from {low} to {high}, got {raw}")
        return raw

    return parse


def parse_str(raw: object) -> str:
    """
    Parse a non-empty string.
    """
    if not isinstance(raw, str):
        raise InvalidValueError(f"expected a string, got {type(raw).__name__}")
    if not raw.strip():
        raise InvalidValueError("must not be empty")
    return raw


def parse_optional_str(raw: object) -> str | None:
    """
    Parse a string; an empty string means "not set".
    """
    if not isinstance(raw, str):
        raise InvalidValueError(f"expected a string, got {type(raw).__name__}")
    return raw or None


def parse_choice(*choices: str) -> Callable[[object], str]:
    """
    Build a parser that accepts exactly one of ``choices``.
    """

    def parse(raw: object) -> str:
        if isinstance(raw, str) and raw in choices:
            return raw
        listed = ", ".join(repr(choice) for choice in choices)
        raise InvalidValueError(f"must be one of {listed}, got {raw!r}")

    return parse


def parse_name_list(raw: object) -> tuple[str, ...]:
    """
    Parse a list of attribute or label names (a list, never a string: no coercion).
    """
    if not isinstance(raw, list | tuple):
        raise InvalidValueError(
            f'expected a list of names such as ["a", "b"], got {describe_type(raw)}'
        )
    names: list[str] = []
    for item in raw:
        if not isinstance(item, str) or not _NAME.match(item):
            raise InvalidValueError(
                f"{item!r} is not a valid name (letters, digits, '_', '.', '-';"
                " starting with a letter or '_'; at most 128 characters)"
            )
        if item not in names:
            names.append(item)
    return tuple(names)


def parse_choice_list(*choices: str) -> Callable[[object], tuple[str, ...]]:
    """
    Build a parser for a list of distinct names, each one of ``choices``.
    """

    def parse(raw: object) -> tuple[str, ...]:
        names = parse_name_list(raw)
        unknown = [name for name in names if name not in choices]
        if unknown:
            listed = ", ".join(repr(choice) for choice in choices)
            raise InvalidValueError(f"{unknown[0]!r} is not one of {listed}")
        return names

    return parse


def parse_str_mapping(raw: object) -> Mapping[str, str]:
    """
    Parse a table of string keys to string values into a read-only mapping.
    """
    if not isinstance(raw, Mapping):
        raise InvalidValueError(
            f"expected a table of strings, got {type(raw).__name__}"
        )
    result: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidValueError(f"entry {key!r} must map a string to a string")
        result[key] = value
    return MappingProxyType(result)


@dataclass(frozen=True, slots=True)
class BindAddress:
    """
    Where the exposer listens: a TCP host and port, or a Unix socket path.

    Attributes:
        host: TCP host (``None`` for a Unix socket).
        port: TCP port, 0 for an ephemeral one (``None`` for a Unix socket).
        path: Unix socket path (``None`` for TCP).
    """

    host: str | None = None
    port: int | None = None
    path: str | None = None

    @property
    def is_unix(self) -> bool:
        """
        True when this is a Unix-domain socket.
        """
        return self.path is not None

    @property
    def is_loopback(self) -> bool:
        """
        True for Unix sockets and loopback TCP hosts.
        """
        if self.path is not None:
            return True
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host or "").is_loopback
        except ValueError:
            return False

    def __str__(self) -> str:
        if self.path is not None:
            return f"unix:{self.path}"
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_bind(raw: object) -> BindAddress:
    """
    Parse ``"HOST:PORT"``, ``"[V6]:PORT"`` or ``"unix:/absolute/path"``.
    """
    if not isinstance(raw, str) or not raw:
        raise InvalidValueError("expected 'HOST:PORT' or 'unix:/absolute/path'")
    if raw.startswith("unix:"):
        path = raw[len("unix:") :]
        if not path.startswith("/"):
            raise InvalidValueError(
                "a Unix socket path must be absolute, e.g. 'unix:/run/app/metrics.sock'"
            )
        if "\x00" in path or len(path.encode()) > 100:
            raise InvalidValueError(
                "a Unix socket path must be at most 100 bytes and contain no NUL"
            )
        return BindAddress(path=path)
    host, sep, port_text = raw.rpartition(":")
    if not sep or not _ASCII_DIGITS.fullmatch(port_text):
        raise InvalidValueError(f"expected 'HOST:PORT', got {raw!r}")
    port = int(port_text)
    if port > 65535:
        raise InvalidValueError(f"port {port} is out of range 0-65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host:
        raise InvalidValueError(
            "the host part is empty; use 127.0.0.1 (or 0.0.0.0 to bind all)"
        )
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError as exc:
            raise InvalidValueError(
                f"host {host!r} must be an IP address or 'localhost'"
            ) from exc
    return BindAddress(host=host, port=port)


def describe_type(value: Any) -> str:
    """
    A short type name for messages that must not echo the value itself.
    """
    return type(value).__name__
