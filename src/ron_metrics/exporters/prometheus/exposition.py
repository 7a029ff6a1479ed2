"""
The exposition as lines: families of samples and how each format writes them.

Formatting follows prometheus_client exactly (its float formatting and escaping
rules), so the direct encoder's bytes equal the reference path's.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from json import dumps
from typing import Any, Protocol, TypeVar

from prometheus_client import utils as _prometheus_utils

from ron_metrics.hub import SAMPLE_SUFFIXES

__all__ = [
    "Family",
    "Scope",
    "Series",
    "exemplar_text",
    "label_block",
    "label_value",
    "latest_by_bucket",
    "number",
    "text",
    "without_clashes",
    "write_openmetrics",
    "write_text",
]


_LEGACY_LABEL_RUNES = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"
)


@dataclass(slots=True)
class Scope:
    scope: Any  # the SDK's scope object (identity check)
    labels: dict[str, Any]


@dataclass(slots=True)
class Series:
    """
    One series' labels, rendered: its sorted label names, values and block.
    """

    attributes: Any  # the SDK's attributes object (identity check), or None
    scope: Scope | None
    keys: tuple[str, ...]
    values: tuple[str, ...]
    block: str
    _around_le: tuple[str, str] | None = None

    def around_le(self) -> tuple[str, str]:
        """
        The block split around a histogram's ``le`` label (an attribute named
        ``le`` gives way to the bucket bound, as on the reference path).
        """
        if self._around_le is None:
            pairs = list(zip(self.keys, self.values, strict=False))
            self._around_le = (
                label_block([p for p in pairs if p[0] < "le"]),
                label_block([p for p in pairs if p[0] > "le"]),
            )
        return self._around_le


@dataclass(slots=True)
class Family:
    name: str
    type: str
    documentation: str
    unit: str
    labelnames: tuple[str, ...]
    # One entry per sample, as plain strings (cheap for the garbage collector):
    # the name suffix ("", "_total", "_bucket", ...) and the rest of the line.
    suffixes: list[str] = field(default_factory=list)
    rests: list[str] = field(default_factory=list)
    metrics: int = 0
    # Only for a family several metrics merged into: (suffix, block) already seen.
    seen: set[tuple[str, str]] | None = None
    repeated: bool = False
    # OpenMetrics only: sample index -> its exemplar (" # {labels} value time").
    exemplars: dict[int, str] | None = None

    def add(self, suffix: str, block: str, value: str) -> None:
        if self.seen is not None:
            key = (suffix, block)
            if key in self.seen:
                self.repeated = True
                return
            self.seen.add(key)
        self.suffixes.append(suffix)
        self.rests.append(f"{{{block}}} {value}\n" if block else f" {value}\n")

    def merging(self) -> None:
        # A second metric joins: from now on a series both report is kept once.
        self.metrics += 1
        if self.metrics == 2:
            self.seen = {
                (suffix, block_of(rest))
                for suffix, rest in zip(self.suffixes, self.rests, strict=True)
            }


def label_value(value: Any) -> str:
    return text(value).replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def label_block(pairs: Iterable[tuple[str, str]]) -> str:
    return ",".join(f'{name}="{label_value(value)}"' for name, value in pairs)


class Named(Protocol):
    """
    What the clash rule reads of a family (text or protobuf).
    """

    name: str
    type: str
    repeated: bool


_F = TypeVar("_F", bound=Named)


def without_clashes(families: list[_F], on_clash: Callable[[str], None]) -> list[_F]:
    # The reference path's rule (see ron_metrics.hub.without_name_clashes): the
    # first family keeps a name; a later one reusing any of its names is left
    # out, and a series repeated within a family is kept once.
    taken: set[str] = set()
    kept: list[_F] = []
    for family in families:
        own = {"counter": "_total", "info": "_info"}.get(family.type, "")
        names = {family.name, family.name + own}
        names.update(
            family.name + suffix for suffix in SAMPLE_SUFFIXES.get(family.type, ())
        )
        if names & taken:
            on_clash(family.name)
            continue
        taken |= names
        if family.repeated:
            on_clash(family.name)
        kept.append(family)
    return kept


def block_of(rest: str) -> str:
    # The label block of a stored line rest ("{block} value\n" or " value\n").
    return rest[1 : rest.rindex("} ")] if rest.startswith("{") else ""


def number(value: float) -> str:
    # prometheus_client's formatting: repr of the float, except +Inf/-Inf/NaN and
    # Go-style exponents for large values, which its own function handles.
    number = float(value)
    text = repr(number)
    if math.isnan(number) or math.isinf(number) or (number > 0 and text.find(".") > 6):
        slow: str = _prometheus_utils.floatToGoString(number)  # type: ignore[no-untyped-call]  # untyped upstream
        return slow
    return text


def text(value: Any) -> str:
    return value if isinstance(value, str) else dumps(value, default=str)


def help_text(documentation: str) -> str:
    return documentation.replace("\\", r"\\").replace("\n", r"\n")


def help_openmetrics(documentation: str) -> str:
    return help_text(documentation).replace('"', r"\"")


def write_text(families: Sequence[Family]) -> Iterator[str]:
    for family in families:
        name, kind = family.name, family.type
        if kind == "counter":
            name += "_total"
        elif kind == "info":
            name += "_info"
            kind = "gauge"
        yield f"# HELP {name} {help_text(family.documentation)}\n"
        yield f"# TYPE {name} {kind}\n"
        name = family.name
        for suffix, rest in zip(family.suffixes, family.rests, strict=True):
            yield name + suffix + rest


def openmetrics_sample_name(name: str) -> str:
    if all(ch in _LEGACY_LABEL_RUNES for ch in name):
        return name
    return "".join(ch if ch in _LEGACY_LABEL_RUNES else "_" for ch in name)


def write_openmetrics(families: Sequence[Family]) -> Iterator[str]:
    for family in families:
        yield f"# HELP {family.name} {help_openmetrics(family.documentation)}\n"
        yield f"# TYPE {family.name} {family.type}\n"
        if family.unit:
            yield f"# UNIT {family.name} {family.unit}\n"
        names: dict[str, str] = {}
        exemplars = family.exemplars or {}
        for at, (suffix, rest) in enumerate(
            zip(family.suffixes, family.rests, strict=True)
        ):
            name = names.get(suffix)
            if name is None:
                name = names[suffix] = openmetrics_sample_name(family.name + suffix)
            exemplar = exemplars.get(at) if exemplars else None
            yield name + (rest if exemplar is None else rest[:-1] + exemplar + "\n")
    yield "# EOF\n"


def latest_by_bucket(
    exemplars: Sequence[Any], bounds: Sequence[float] | None
) -> dict[int, Any]:
    """
    The latest exemplar of each bucket (index into ``bounds`` plus ``+Inf``; all
    in bucket 0 when there are no bounds, as for a counter).
    """
    latest: dict[int, Any] = {}
    for exemplar in exemplars:
        at = bisect_left(bounds, exemplar.value) if bounds else 0
        found = latest.get(at)
        if found is None or found.time_unix_nano <= exemplar.time_unix_nano:
            latest[at] = exemplar
    return latest


def exemplar_text(exemplar: Any) -> str:
    """
    An OpenMetrics exemplar for a sample line: its trace and span ids (when it
    has them), its value and when it was taken (seconds).
    """
    labels = (
        ""
        if exemplar.trace_id is None
        else f'trace_id="{exemplar.trace_id:032x}",span_id="{exemplar.span_id:016x}"'
    )
    at = exemplar.time_unix_nano
    return (
        f" # {{{labels}}} {number(exemplar.value)}"
        f" {at // 1_000_000_000}.{at % 1_000_000_000:09d}"
    )
