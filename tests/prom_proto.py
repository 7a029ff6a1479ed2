"""
The test oracle for the protobuf exposition: Prometheus' ``io.prometheus.client``
messages (client_model's metrics.proto, the fields Prometheus 2.42 reads), built
at run time with the ``protobuf`` runtime, and a reader of delimited streams.

The project's encoder writes the wire format by hand; these tests decode what it
writes with Google's own parser, so a wrong field number, wire type or length
prefix fails here.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

__all__ = ["PROTOBUF_ACCEPT", "expand_spans", "read_families"]

PROTOBUF_ACCEPT = (
    "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;"
    "encoding=delimited;q=0.8,application/openmetrics-text;version=1.0.0;q=0.5,"
    "text/plain;version=0.0.4;q=0.3"
)

_F = descriptor_pb2.FieldDescriptorProto
_OPTIONAL, _REPEATED = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
_TYPES = {
    "string": _F.TYPE_STRING,
    "double": _F.TYPE_DOUBLE,
    "uint64": _F.TYPE_UINT64,
    "uint32": _F.TYPE_UINT32,
    "sint32": _F.TYPE_SINT32,
    "sint64": _F.TYPE_SINT64,
    "int64": _F.TYPE_INT64,
    "int32": _F.TYPE_INT32,
    "enum": _F.TYPE_ENUM,
}

# message -> [(field name, number, type or message name, repeated)]
_MESSAGES: dict[str, list[tuple[str, int, str, bool]]] = {
    "LabelPair": [("name", 1, "string", False), ("value", 2, "string", False)],
    "Timestamp": [("seconds", 1, "int64", False), ("nanos", 2, "int32", False)],
    "Exemplar": [
        ("label", 1, ".io.prometheus.client.LabelPair", True),
        ("value", 2, "double", False),
        ("timestamp", 3, ".io.prometheus.client.Timestamp", False),
    ],
    "Gauge": [("value", 1, "double", False)],
    "Counter": [
        ("value", 1, "double", False),
        ("exemplar", 2, ".io.prometheus.client.Exemplar", False),
    ],
    "Untyped": [("value", 1, "double", False)],
    "Bucket": [
        ("cumulative_count", 1, "uint64", False),
        ("upper_bound", 2, "double", False),
        ("exemplar", 3, ".io.prometheus.client.Exemplar", False),
    ],
    "BucketSpan": [("offset", 1, "sint32", False), ("length", 2, "uint32", False)],
    "Histogram": [
        ("sample_count", 1, "uint64", False),
        ("sample_sum", 2, "double", False),
        ("bucket", 3, ".io.prometheus.client.Bucket", True),
        ("schema", 5, "sint32", False),
        ("zero_threshold", 6, "double", False),
        ("zero_count", 7, "uint64", False),
        ("negative_span", 9, ".io.prometheus.client.BucketSpan", True),
        ("negative_delta", 10, "sint64", True),
        ("positive_span", 12, ".io.prometheus.client.BucketSpan", True),
        ("positive_delta", 13, "sint64", True),
        ("exemplars", 16, ".io.prometheus.client.Exemplar", True),
    ],
    "Metric": [
        ("label", 1, ".io.prometheus.client.LabelPair", True),
        ("gauge", 2, ".io.prometheus.client.Gauge", False),
        ("counter", 3, ".io.prometheus.client.Counter", False),
        ("untyped", 5, ".io.prometheus.client.Untyped", False),
        ("timestamp_ms", 6, "int64", False),
        ("histogram", 7, ".io.prometheus.client.Histogram", False),
    ],
    "MetricFamily": [
        ("name", 1, "string", False),
        ("help", 2, "string", False),
        ("type", 3, "enum", False),
        ("metric", 4, ".io.prometheus.client.Metric", True),
    ],
}


def _message_class() -> Any:
    file = descriptor_pb2.FileDescriptorProto(
        name="ron_metrics_test_prometheus_metrics.proto",
        package="io.prometheus.client",
        syntax="proto2",
    )
    enum = file.enum_type.add(name="MetricType")
    for number, name in enumerate(
        ["COUNTER", "GAUGE", "SUMMARY", "UNTYPED", "HISTOGRAM", "GAUGE_HISTOGRAM"]
    ):
        enum.value.add(name=name, number=number)
    for message_name, fields in _MESSAGES.items():
        message = file.message_type.add(name=message_name)
        for name, number, kind, repeated in fields:
            field = message.field.add(
                name=name, number=number, label=_REPEATED if repeated else _OPTIONAL
            )
            if kind.startswith("."):
                field.type, field.type_name = _F.TYPE_MESSAGE, kind
            elif kind == "enum":
                field.type = _F.TYPE_ENUM
                field.type_name = ".io.prometheus.client.MetricType"
            else:
                field.type = _TYPES[kind]
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("io.prometheus.client.MetricFamily")
    )


_METRIC_FAMILY = _message_class()


def _varint(body: bytes, position: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        assert position < len(body), "a length prefix runs past the body"
        byte = body[position]
        value |= (byte & 0x7F) << shift
        position += 1
        if byte < 0x80:
            return value, position
        shift += 7


def read_families(body: bytes) -> list[Any]:
    """
    Every ``MetricFamily`` of a delimited stream; fails on a torn or trailing byte.
    """
    families = []
    position = 0
    while position < len(body):
        size, position = _varint(body, position)
        end = position + size
        assert end <= len(body), "a length prefix runs past the body"
        family = _METRIC_FAMILY()
        family.ParseFromString(body[position:end])
        families.append(family)
        position = end
    return families


def expand_spans(spans: Any, deltas: Any) -> dict[int, int]:
    """A native histogram's spans and deltas as {bucket index: count} (no zeros)."""
    buckets: dict[int, int] = {}
    index = count = position = 0
    for span in spans:
        index += span.offset  # the first absolute, each later one a gap
        for _ in range(span.length):
            count += deltas[position]
            if count:
                buckets[index] = count
            index += 1
            position += 1
    assert position == len(deltas)
    return buckets
