"""
A configuration as plain data: what ``Config.to_dict`` returns and the digest hashes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from typing import Any

from ron_metrics.config.values import BindAddress

__all__ = ["SECRET_MASK", "as_plain", "mask_userinfo"]

SECRET_MASK = "***"  # noqa: S105 - the mask, not a secret


def mask_userinfo(url: str) -> str:
    """
    ``url`` with the password of its userinfo masked (``user:***@host``); a user name
    alone may be a token, so it is masked whole (``***@host``). Shown everywhere a
    URL is shown: check-config, logs, exception messages, reprs.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    netloc, slash, tail = rest.partition("/")
    userinfo, at, host = netloc.rpartition("@")
    if not at:
        return url
    user, colon, _ = userinfo.partition(":")
    masked = f"{user}:{SECRET_MASK}" if colon else SECRET_MASK
    return f"{scheme}{sep}{masked}@{host}{slash}{tail}"


def as_plain(obj: Any, *, reveal_secrets: bool) -> Any:
    if isinstance(obj, BindAddress):
        return str(obj)
    if is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, Any] = {}
        for f in fields(obj):
            if f.metadata.get("internal"):
                continue  # e.g. a rule's pattern: it is the key of its table
            value = getattr(obj, f.name)
            if f.metadata.get("rules"):
                out[f.name] = {
                    rule.pattern: as_plain(rule, reveal_secrets=reveal_secrets)
                    for rule in value
                }
            elif f.metadata.get("secret") and not reveal_secrets:
                out[f.name] = dict.fromkeys(value, SECRET_MASK)
            elif f.metadata.get("url") and value and not reveal_secrets:
                out[f.name] = mask_userinfo(str(value))
            else:
                out[f.name] = as_plain(value, reveal_secrets=reveal_secrets)
        return out
    if isinstance(obj, Mapping):
        return dict(obj)
    if isinstance(obj, tuple):
        return list(obj)
    return obj
