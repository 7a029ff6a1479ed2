"""
Content negotiation and encoding for ``/metrics``: pure functions, no I/O.

Text format 0.0.4 is the default; OpenMetrics 1.0.0 when the ``Accept`` header
prefers it (Prometheus 2.42 does); the protobuf exposition when it prefers that
(Prometheus with native histograms enabled does); gzip when ``Accept-Encoding`` allows it. Header
parsing is bounded: at most :data:`MAX_MEDIA_RANGES` entries are considered.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import Enum

from prometheus_client import exposition
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import exposition as openmetrics

__all__ = [
    "MAX_MEDIA_RANGES",
    "Format",
    "Rendered",
    "ResponseTooLargeError",
    "accepts_gzip",
    "encode",
    "finish",
    "finish_streaming",
    "negotiate_format",
    "render",
]

MAX_MEDIA_RANGES = 16
GZIP_LEVEL = 6


class Format(Enum):
    """
    An exposition format and its content type.
    """

    TEXT = "text/plain; version=0.0.4; charset=utf-8"
    OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
    PROTOBUF = (
        "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily;"
        " encoding=delimited"
    )

    @property
    def content_type(self) -> str:
        """
        The ``Content-Type`` header value.
        """
        return self.value


def _parse_q(params: list[str]) -> float:
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                q = float(value.strip())
            except ValueError:
                return 0.0
            return q if 0.0 <= q <= 1.0 else 0.0
    return 1.0


def _media_ranges(header: str) -> Iterator[tuple[str, list[str], float]]:
    for index, item in enumerate(header.split(",")):
        if index >= MAX_MEDIA_RANGES:
            return
        media, *params = item.split(";")
        yield media.strip().lower(), params, _parse_q(params)


def _openmetrics_version_ok(params: list[str]) -> bool:
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "version":
            return value.strip().strip('"') in {"1.0.0", "0.0.1"}
    return True


def _is_delimited_metric_family(params: list[str]) -> bool:
    found = {}
    for param in params:
        name, _, value = param.partition("=")
        found[name.strip().lower()] = value.strip().strip('"')
    return (
        found.get("proto") == "io.prometheus.client.MetricFamily"
        and found.get("encoding") == "delimited"
    )


def negotiate_format(accept: str | None, *, protobuf: bool = False) -> Format:
    """
    Pick the format the client prefers; text 0.0.4 unless another ranks higher.

    Args:
        protobuf: The protobuf exposition may be chosen (delimited
            ``io.prometheus.client.MetricFamily``, as Prometheus asks for it).
    """
    if not accept:
        return Format.TEXT
    best = {Format.TEXT: 0.0, Format.OPENMETRICS: 0.0, Format.PROTOBUF: 0.0}
    for media, params, q in _media_ranges(accept):
        if media == "application/openmetrics-text" and _openmetrics_version_ok(params):
            chosen = Format.OPENMETRICS
        elif media in {"text/plain", "text/*", "*/*"}:
            chosen = Format.TEXT
        elif media == "application/vnd.google.protobuf" and protobuf:
            if not _is_delimited_metric_family(params):
                continue
            chosen = Format.PROTOBUF
        else:
            continue
        best[chosen] = max(best[chosen], q)
    # A tie goes to text, then to OpenMetrics: the formats every scraper reads.
    return max((Format.TEXT, Format.OPENMETRICS, Format.PROTOBUF), key=best.__getitem__)


def accepts_gzip(accept_encoding: str | None) -> bool:
    """
    True when ``Accept-Encoding`` allows gzip (explicitly or through ``*``) with q > 0.
    """
    if not accept_encoding:
        return False
    gzip_q: float | None = None
    star_q: float | None = None
    for coding, _params, q in _media_ranges(accept_encoding):
        if coding in {"gzip", "x-gzip"}:
            gzip_q = q if gzip_q is None else max(gzip_q, q)
        elif coding == "*":
            star_q = q
    if gzip_q is not None:
        return gzip_q > 0
    return star_q is not None and star_q > 0


class _Snapshot:
    """
    A collector over already-collected families, so encoding never re-collects.
    """

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def encode(families: Iterable[Metric], fmt: Format) -> bytes:
    """
    Encode collected families in ``fmt``; OpenMetrics output ends in ``# EOF``.
    """
    snapshot = _Snapshot(families)
    if fmt is Format.OPENMETRICS:
        body: bytes = openmetrics.generate_latest(snapshot)  # type: ignore[no-untyped-call]  # unannotated upstream
        return body
    return exposition.generate_latest(snapshot)


@dataclass(frozen=True, slots=True)
class Rendered:
    """
    A ready ``/metrics`` body.
    """

    body: bytes
    content_type: str
    gzipped: bool


class ResponseTooLargeError(Exception):
    """
    The encoded body is over the configured bound.
    """


def render(
    families: Iterable[Metric], fmt: Format, *, gzip_ok: bool, max_bytes: int
) -> Rendered:
    """
    Encode, bound and optionally gzip a response.

    Raises:
        ResponseTooLargeError: If the uncompressed body exceeds ``max_bytes``.
    """
    return finish(encode(families, fmt), fmt, gzip_ok=gzip_ok, max_bytes=max_bytes)


# Text is compressed in pieces of about this many characters.
STREAM_CHUNK_CHARS = 64 * 1024


def finish_streaming(pieces: Iterable[str], fmt: Format, *, max_bytes: int) -> Rendered:
    """
    Gzip an exposition as it is produced: the uncompressed body is never held whole.

    Raises:
        ResponseTooLargeError: If the uncompressed body exceeds ``max_bytes``.
    """
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    out: list[bytes] = []
    size = 0
    batch: list[str] = []
    batched = 0

    def flush() -> None:
        nonlocal size, batched
        data = "".join(batch).encode("utf-8")
        batch.clear()
        batched = 0
        size += len(data)
        if size > max_bytes:
            raise ResponseTooLargeError(size)
        out.append(compressor.compress(data))

    for piece in pieces:
        batch.append(piece)
        batched += len(piece)
        if batched >= STREAM_CHUNK_CHARS:
            flush()
    flush()
    out.append(compressor.flush())
    return Rendered(b"".join(out), fmt.content_type, True)


def finish(body: bytes, fmt: Format, *, gzip_ok: bool, max_bytes: int) -> Rendered:
    """
    Bound and optionally gzip an encoded body.

    Raises:
        ResponseTooLargeError: If ``body`` exceeds ``max_bytes``.
    """
    if len(body) > max_bytes:
        raise ResponseTooLargeError(len(body))
    if gzip_ok:
        return Rendered(
            gzip.compress(body, GZIP_LEVEL, mtime=0), fmt.content_type, True
        )
    return Rendered(body, fmt.content_type, False)
