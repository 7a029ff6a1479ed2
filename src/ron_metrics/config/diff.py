"""
What a reload changes: the differing key paths, and which of them need a restart.

Both answers come from the model itself: the key paths from :meth:`Config.to_dict`,
the restart-only keys from the ``restart`` flag in each field's metadata.
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from typing import Any

from ron_metrics.config.model import Config
from ron_metrics.errors import ConfigError

__all__ = ["changed_keys", "refuse_restart_keys", "restart_keys"]


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


def restart_keys(cls: type = Config, prefix: str = "") -> tuple[str, ...]:
    """
    Key paths a reload cannot change; a path ending in ``.`` covers a whole section.
    """
    found: list[str] = []
    for spec in fields(cls):
        section = spec.metadata.get("section")
        if spec.metadata.get("restart"):
            found.append(f"{prefix}{spec.name}{'.' if section else ''}")
        elif isinstance(section, type) and is_dataclass(section):
            found.extend(restart_keys(section, f"{prefix}{spec.name}."))
    return tuple(found)


def _needs_restart(key: str, fixed: tuple[str, ...]) -> bool:
    return any(
        key.startswith(path) if path.endswith(".") else key == path for path in fixed
    )


def refuse_restart_keys(changed: tuple[str, ...]) -> None:
    """
    Raise when any changed key is one the provider read once at build time.

    Raises:
        ConfigError: Naming the first such key and listing all of them.
    """
    fixed = restart_keys()
    refused = [key for key in changed if _needs_restart(key, fixed)]
    if refused:
        raise ConfigError.single(
            refused[0],
            "fixed when the MeterProvider was built; restart to change: "
            + ", ".join(refused),
        )
