"""
Static labels and the label sanitizer.

Static labels end up on every exported series' resource (``target_info`` in
Prometheus, the resource in OTLP), so a bad one is multiplied everywhere. The
sanitizer refuses keys that are not allowlisted and values that are too long,
not printable, or look like secrets, e-mail addresses or URLs. Refused values are
never echoed in the error: the value may be the very secret we are keeping out.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable

__all__ = [
    "MAX_LABEL_KEY_LENGTH",
    "MAX_LABEL_VALUE_LENGTH",
    "check_label_key",
    "check_label_value",
    "prometheus_label_name",
]

MAX_LABEL_KEY_LENGTH = 63
MAX_LABEL_VALUE_LENGTH = 128

# Lower-case, '_' and dot-separated parts: "region", "k8s.pod.name",
# "deployment.environment.name" (OpenTelemetry semantic-convention keys).
_KEY = re.compile(r"^[a-z_][a-z0-9_]*(?:\.[a-z0-9_]+)*$")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[a-z]{2,}", re.IGNORECASE)
_URL = re.compile(r"^[a-z][a-z0-9+.\-]*://|^www\.", re.IGNORECASE)
_SECRET_MARKERS = re.compile(
    r"(password|passwd|secret|token|api[_-]?key|bearer|authorization|private[_-]?key)",
    re.IGNORECASE,
)
_KNOWN_SECRET_SHAPES = (
    re.compile(r"^eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"),  # JWT
    re.compile(r"^(AKIA|ASIA)[A-Z0-9]{16}$"),  # AWS access key id
    re.compile(
        r"^(ghp|gho|ghs|ghu|github_pat|glpat|xox[abpr]|sk)[-_][A-Za-z0-9_\-]{16,}$"
    ),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
)
_LONG_OPAQUE = re.compile(r"^[A-Za-z0-9+/=_\-]{24,}$")
_SEPARATORS = re.compile(r"[-_.]")
_SHORT_CODE = re.compile(r"[a-z0-9]{1,4}")  # "v2", "k8s", "2a", "01"
_WORD_CORE = re.compile(r"[a-z]{1,12}|[A-Z][a-z]{1,11}|[A-Z]{1,12}")
_VOWEL = re.compile(r"[aeiouyAEIOUY]")


def _shannon_bits_per_char(text: str) -> float:
    counts = Counter(text)
    total = len(text)
    return -sum(n / total * math.log2(n / total) for n in counts.values())


def check_label_key(key: str) -> str | None:
    """
    Check a static label key's shape.

    Returns:
        ``None`` when the key is acceptable, else why it is not.
    """
    if not key:
        return "a label key must not be empty"
    if len(key) > MAX_LABEL_KEY_LENGTH:
        return f"a label key must be at most {MAX_LABEL_KEY_LENGTH} characters"
    if not _KEY.match(key):
        return (
            "a label key must be lower-case letters, digits and '_', in parts joined by"
            " single dots (e.g. 'region', 'k8s.pod.name'), not starting with a digit"
        )
    return None


def prometheus_label_name(key: str) -> str:
    """
    The label name a resource key gets on ``target_info`` (dots become ``_``).
    """
    return key.replace(".", "_")


def _too_long(value: str) -> bool:
    return len(value) > MAX_LABEL_VALUE_LENGTH


def _looks_secret(value: str) -> bool:
    return bool(_SECRET_MARKERS.search(value)) or any(
        shape.search(value) for shape in _KNOWN_SECRET_SHAPES
    )


def _letters(segment: str) -> str:
    # A segment without its number suffix: "cluster01" -> "cluster".
    return segment.rstrip("0123456789")


def _is_readable_segment(segment: str) -> bool:
    if _SHORT_CODE.fullmatch(segment):
        return True
    core = _letters(segment)
    if len(segment) - len(core) > 4 or not _WORD_CORE.fullmatch(core):
        return False
    # Words have vowels; "Zx", "QWRT", "bcdfg" are how random text looks.
    return (len(core) <= 2 and core.islower()) or bool(_VOWEL.search(core))


def _is_word(segment: str) -> bool:
    core = _letters(segment)
    return len(core) >= 3 and bool(_VOWEL.search(core))


def _is_readable(value: str) -> bool:
    # Readable: every segment between separators is a word of one case (or
    # capitalised) of at most 12 letters with at most a 4-digit suffix, or a short
    # lower-case code, and at least half the segments are real words. Tokens and
    # keys are long runs of mixed case and digits, or groups of hex digits.
    segments = [part for part in _SEPARATORS.split(value) if part]
    words = sum(1 for part in segments if _is_word(part))
    return 2 * words >= len(segments) and all(map(_is_readable_segment, segments))


def _looks_random(value: str) -> bool:
    # Long opaque high-entropy strings are how tokens and keys look; real
    # low-cardinality labels (regions, tiers, versions) are short or readable.
    return (
        bool(_LONG_OPAQUE.match(value))
        and _shannon_bits_per_char(value) > 3.5
        and not _is_readable(value)
    )


# Each rule: (refuses?, why). Order: cheapest and most specific first.
_VALUE_RULES: tuple[tuple[Callable[[str], bool], str], ...] = (
    (lambda value: not value, "a label value must not be empty"),
    (
        _too_long,
        f"a label value must be at most {MAX_LABEL_VALUE_LENGTH} characters (value not shown)",
    ),
    (
        lambda value: not value.isprintable(),
        "a label value must be printable text (value not shown)",
    ),
    (
        lambda value: bool(_URL.search(value)),
        "the value looks like a URL; labels must not carry URLs (value not shown)",
    ),
    (
        lambda value: bool(_EMAIL.search(value)),
        "the value looks like an e-mail address; labels must not carry PII (value not shown)",
    ),
    (_looks_secret, "the value looks like a secret or credential (value not shown)"),
    (_looks_random, "the value looks like a random token or key (value not shown)"),
)


def check_label_value(value: str) -> str | None:
    """
    Check a static label value: bounded, printable, and not secret-, e-mail- or URL-like.

    Returns:
        ``None`` when the value is acceptable, else why it is not (never the value).
    """
    for refuses, why in _VALUE_RULES:
        if refuses(value):
            return why
    return None
