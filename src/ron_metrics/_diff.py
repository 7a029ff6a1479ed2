"""
What a reload changes: the differing key paths, and which of them need a restart.
"""

from __future__ import annotations

from typing import Any

from ron_metrics.config import Config
from ron_metrics.errors import ConfigError

__all__ = ["changed_keys", "refuse_restart_keys"]


_RESTART_PREFIXES = (
    "service.",
    "labels.",
    "cardinality.",
    "sdk.",
    "exporter.prometheus.target_info",
    "exporter.prometheus.scope_labels",
)


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def changed_keys(old: Config, new: Config) -> tuple[str, ...]:
    """
    The dotted key paths whose effective values differ (secrets compared, never shown).
    """
    before = _flatten(old.to_dict(reveal_secrets=True))
    after = _flatten(new.to_dict(reveal_secrets=True))
    return tuple(
        sorted(
            key
            for key in before.keys() | after.keys()
            if before.get(key) != after.get(key)
        )
    )


def refuse_restart_keys(changed: tuple[str, ...]) -> None:
    fixed = [key for key in changed if key.startswith(_RESTART_PREFIXES)]
    if fixed:
        raise ConfigError.single(
            fixed[0],
            "fixed when the MeterProvider was built; restart to change: "
            + ", ".join(fixed),
        )
