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
    "string_field",
    "uint_field",
    "varint",
]

_DOUBLE = struct.Struct("<d")
_VARINT, _FIXED64, _LENGTH = 0, 1, 2


def varint(value: int) -> bytes:
    """
    ``value`` (>= 0) as a base-128 varint.
    """
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _zigzag(value: int) -> int:
    return value << 1 if value >= 0 else ((-value) << 1) - 1


def _key(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


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
    return message_field(number, b"".join(varint(_zigzag(v)) for v in values))


def delimited(message: bytes) -> bytes:
    """
    ``message`` with its length in front (the ``encoding=delimited`` stream).
    """
    return varint(len(message)) + message
