"""
Reading configuration sources: the TOML file, and deprecated-key aliases in any source.
"""

from __future__ import annotations

import tomllib
import warnings
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ron_metrics.errors import ConfigProblem

__all__ = ["DEPRECATED_ALIASES", "apply_aliases", "read_file"]


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
        warnings.warn(
            f"ron-metrics config key {old!r} ({source}) is deprecated; use {new!r}",
            DeprecationWarning,
            stacklevel=4,
        )
        table[new_leaf] = table.pop(old_leaf)


def read_file(path: Path, problems: list[ConfigProblem]) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        problems.append(
            ConfigProblem("(file)", f"config file {str(path)!r} does not exist")
        )
    except IsADirectoryError:
        problems.append(ConfigProblem("(file)", f"{str(path)!r} is a directory"))
    except tomllib.TOMLDecodeError as exc:
        problems.append(
            ConfigProblem("(file)", f"{str(path)!r} is not valid TOML: {exc}")
        )
    except OSError as exc:
        problems.append(
            ConfigProblem("(file)", f"cannot read {str(path)!r}: {exc.strerror}")
        )
    return {}
