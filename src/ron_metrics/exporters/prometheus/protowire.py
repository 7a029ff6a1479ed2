"""
The few Protocol Buffers wire-format pieces the protobuf exposition needs.

Written by hand, not generated: the exposition uses five message types of
``io.prometheus.client`` and only varint, 64-bit and length-delimited fields, so a
generated module (and its runtime version pinning) would cost more than it saves.
The test suite decodes what these write with the ``protobuf`` runtime and the
message definitions, field by field.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

__all__ = [
    "delimited",
    "double_field",
    "message_field",
    "packed_sint_field",
    "sint_field",
    "span_fields",
    "string_field",
    "uint_field",
    "varint",
]

_DOUBLE = struct.Struct("<d")
_VARINT, _FIXED64, _LENGTH = 0, 1, 2


def _encode(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# Every one- and two-byte varint, encoded once: bucket deltas, lengths and keys
# are nearly always below 16,384.
_SMALL = tuple(_encode(value) for value in range(1 << 14))


def varint(value: int) -> bytes:
    """
    ``value`` (>= 0) as a base-128 varint.
    """
    return _SMALL[value] if value < 16384 else _encode(value)


def _zigzag(value: int) -> int:
    return value << 1 if value >= 0 else ((-value) << 1) - 1


def _key(number: int, wire_type: int) -> bytes:
    return _SMALL[number << 3 | wire_type]


def uint_field(number: int, value: int) -> bytes:
    return _key(number, _VARINT) + varint(value)


def sint_field(number: int, value: int) -> bytes:
    return _key(number, _VARINT) + varint(_zigzag(value))


def double_field(number: int, value: float) -> bytes:
    return _key(number, _FIXED64) + _DOUBLE.pack(value)


def message_field(number: int, body: bytes) -> bytes:
    return _key(number, _LENGTH) + varint(len(body)) + body


def string_field(number: int, value: str) -> bytes:
    return message_field(number, value.encode("utf-8"))


def packed_sint_field(number: int, values: Iterable[int]) -> bytes:
    small = _SMALL
    body = b"".join(
        [
            small[zigzag] if zigzag < 16384 else _encode(zigzag)
            for zigzag in [v << 1 if v >= 0 else ((-v) << 1) - 1 for v in values]
        ]
    )
    return message_field(number, body)


def delimited(message: bytes) -> bytes:
    """
    ``message`` with its length in front (the ``encoding=delimited`` stream).
    """
    return varint(len(message)) + message


def span_fields(number: int, spans: Iterable[tuple[int, int]]) -> bytes:
    """
    Repeated ``BucketSpan {sint32 offset = 1; uint32 length = 2}`` messages.
    """
    small, key = _SMALL, _key(number, _LENGTH)
    out = []
    for offset, length in spans:
        zigzag = offset << 1 if offset >= 0 else ((-offset) << 1) - 1
        body = (
            b"\x08"
            + (small[zigzag] if zigzag < 16384 else _encode(zigzag))
            + b"\x10"
            + (small[length] if length < 16384 else _encode(length))
        )
        out.append(key + small[len(body)] + body)
    return b"".join(out)
