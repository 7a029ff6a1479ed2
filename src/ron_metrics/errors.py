"""
Exceptions raised by ron-metrics.

The tree::

    RonMetricsError
    ├── ConfigError (also ValueError)      invalid configuration; lists every problem
    ├── ExposerError                       the Prometheus exposer could not bind or serve
    ├── ExporterError                      an exporter could not be built or started
    └── LifecycleError (also RuntimeError) misuse: starting twice, use after fork, ...

Nothing here is ever raised from the instrumented application's hot path
(``counter.add()``); runtime failures are counted and reported through readiness.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "ConfigError",
    "ConfigProblem",
    "ExporterError",
    "ExposerError",
    "LifecycleError",
    "RonMetricsError",
]


class RonMetricsError(Exception):
    """
    Base class of every error ron-metrics raises on purpose.
    """


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """
    One problem found in a configuration.

    Attributes:
        key: Dotted key path, e.g. ``exporter.otlp.timeout``.
        message: Why the value is refused and, where possible, what to do.
    """

    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


class ConfigError(RonMetricsError, ValueError):
    """
    The configuration is invalid.

    Every problem found is reported at once. Values that may be secret are never
    part of the message.

    Attributes:
        problems: One entry per problem, each naming its key path.
    """

    def __init__(self, problems: Iterable[ConfigProblem]) -> None:
        self.problems: tuple[ConfigProblem, ...] = tuple(problems)
        count = len(self.problems)
        head = "invalid configuration" + (f" ({count} problems)" if count > 1 else "")
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(f"{head}:\n{lines}")

    @classmethod
    def single(cls, key: str, message: str) -> ConfigError:
        """
        Build an error with exactly one problem.
        """
        return cls([ConfigProblem(key, message)])

    @property
    def keys(self) -> tuple[str, ...]:
        """
        The key paths of all problems, in the order found.
        """
        return tuple(problem.key for problem in self.problems)


class ExposerError(RonMetricsError):
    """
    The Prometheus exposer could not bind its socket or start serving.
    """


class ExporterError(RonMetricsError):
    """
    An exporter sink could not be built, started or proven working.
    """


class LifecycleError(RonMetricsError, RuntimeError):
    """
    An operation is not allowed in the runtime's current state.
    """
