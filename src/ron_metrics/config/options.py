"""
What a configuration field's metadata says: how its value is parsed, whether it
is a secret or a URL with a password to mask, and whether a reload may change it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["opt"]


def opt(
    parse: Callable[[object], object],
    *,
    secret: bool = False,
    restart: bool = False,
    url: bool = False,
) -> dict[str, Any]:
    # "restart": the key is read once, when the MeterProvider is built; a reload
    # that changes it is refused (derived from here, never listed by hand).
    # "url": shown with the password of its userinfo masked.
    return {"parse": parse, "secret": secret, "restart": restart, "url": url}
