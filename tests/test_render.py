from __future__ import annotations

import gzip

import pytest
from prometheus_client.core import CounterMetricFamily

from ron_metrics.exporters.prometheus.render import (
    MAX_MEDIA_RANGES,
    Format,
    ResponseTooLargeError,
    accepts_gzip,
    finish_streaming,
    negotiate_format,
    render,
)

PROMETHEUS_242 = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


PROTOBUF = (
    "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;"
    "encoding=delimited"
)


class TestNegotiation:
    @pytest.mark.parametrize(
        ("accept", "expected"),
        [
            (None, Format.TEXT),
            ("", Format.TEXT),
            ("*/*", Format.TEXT),
            ("text/plain", Format.TEXT),
            (PROMETHEUS_242, Format.OPENMETRICS),
            ("application/openmetrics-text", Format.OPENMETRICS),
            ("application/openmetrics-text; version=1.0.0", Format.OPENMETRICS),
            ("application/openmetrics-text; version=9.9.9", Format.TEXT),
            ("text/plain;q=0.9, application/openmetrics-text;q=0.5", Format.TEXT),
            ("application/openmetrics-text;q=0", Format.TEXT),
            ("application/openmetrics-text;q=banana", Format.TEXT),
            ("application/openmetrics-text;q=7", Format.TEXT),
            ("application/json", Format.TEXT),
            # q boundaries: 1.0 is valid, above 1 is invalid (0), a tie goes to text.
            ("application/openmetrics-text;version=1.0.0;q=1.0", Format.OPENMETRICS),
            (
                "application/openmetrics-text;version=1.0.0;q=1.5, text/plain;q=0.5",
                Format.TEXT,
            ),
            ("application/openmetrics-text;q=0.5, text/plain;q=0.5", Format.TEXT),
            ("application/openmetrics-text, text/plain;q=1", Format.TEXT),
            ("application/openmetrics-text;q=0.5=1, text/plain;q=0.1", Format.TEXT),
            # text/* and */* count for text.
            ("application/openmetrics-text;q=0.5, text/*;q=0.9", Format.TEXT),
            ("application/openmetrics-text;q=0.5, */*;q=0.9", Format.TEXT),
            # Both OpenMetrics versions Prometheus asks for, quoted or not.
            ('application/openmetrics-text;version="1.0.0"', Format.OPENMETRICS),
            ("application/openmetrics-text;version=0.0.1", Format.OPENMETRICS),
            ("application/openmetrics-text;version=1.0.0=x", Format.TEXT),
        ],
    )
    def test_accept_header_picks_format(
        self, accept: str | None, expected: Format
    ) -> None:
        """The Accept header picks OpenMetrics only when it ranks above text."""
        assert negotiate_format(accept) is expected

    @pytest.mark.parametrize(
        ("accept", "expected"),
        [
            (PROTOBUF, Format.PROTOBUF),
            (PROTOBUF + ";q=0.8," + PROMETHEUS_242, Format.OPENMETRICS),
            (
                PROTOBUF + ",application/openmetrics-text;version=1.0.0;q=0.8",
                Format.PROTOBUF,
            ),
            # Ties go to the text formats.
            (
                PROTOBUF + ";q=0.5,application/openmetrics-text;q=0.5",
                Format.OPENMETRICS,
            ),
            (PROTOBUF + ";q=0.5,text/plain;q=0.5", Format.TEXT),
            # Parameters in any order and case, quoted or not.
            (
                "application/vnd.google.protobuf; encoding=delimited;"
                ' PROTO="io.prometheus.client.MetricFamily"',
                Format.PROTOBUF,
            ),
            # Not the delimited MetricFamily stream: not ours to send.
            (
                "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily",
                Format.TEXT,
            ),
            (
                "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;"
                "encoding=text",
                Format.TEXT,
            ),
            (
                "application/vnd.google.protobuf;proto=other.Family;encoding=delimited",
                Format.TEXT,
            ),
            (PROTOBUF + ";q=0", Format.TEXT),
            ("application/x-protobuf;" + PROTOBUF.split(";", 1)[1], Format.TEXT),
        ],
    )
    def test_protobuf_when_offered_and_preferred(
        self, accept: str, expected: Format
    ) -> None:
        """The protobuf exposition only when the caller can write it and the header
        ranks the delimited MetricFamily stream above the text formats."""
        assert negotiate_format(accept, protobuf=True) is expected
        assert negotiate_format(accept) is not Format.PROTOBUF

    def test_protobuf_content_type(self) -> None:
        assert Format.PROTOBUF.content_type == (
            "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily;"
            " encoding=delimited"
        )

    def test_only_a_bounded_number_of_ranges_is_read(self) -> None:
        """Media ranges past the bound are ignored (bounded parsing of hostile headers)."""
        header = ",".join(
            ["text/html"] * MAX_MEDIA_RANGES + ["application/openmetrics-text"]
        )
        assert negotiate_format(header) is Format.TEXT

    @pytest.mark.parametrize(
        ("header", "expected"),
        [
            (None, False),
            ("", False),
            ("gzip", True),
            ("x-gzip", True),
            ("br, gzip;q=0.5", True),
            ("gzip;q=0", False),
            ("*", True),
            ("*;q=0", False),
            ("identity", False),
            ("gzip;q=0, *", False),
            # The best q of repeated gzip entries counts, whatever their order.
            ("gzip;q=0.5, gzip;q=0", True),
            ("gzip;q=0, gzip;q=0.5", True),
        ],
    )
    def test_accept_encoding(self, header: str | None, expected: bool) -> None:
        """gzip is used only when allowed with q > 0, explicitly or by '*'."""
        assert accepts_gzip(header) is expected


class TestRender:
    def families(self) -> list[CounterMetricFamily]:
        family = CounterMetricFamily("jobs", "Jobs done.", labels=["queue"])
        family.add_metric(["q1"], 3)
        return [family]

    def test_text_and_openmetrics_bodies(self) -> None:
        """Both formats encode the same sample; OpenMetrics ends with # EOF."""
        text = render(self.families(), Format.TEXT, gzip_ok=False, max_bytes=10_000)
        om = render(
            self.families(), Format.OPENMETRICS, gzip_ok=False, max_bytes=10_000
        )
        assert b'jobs_total{queue="q1"} 3.0' in text.body
        assert om.body.endswith(b"# EOF\n")
        assert text.content_type == Format.TEXT.content_type

    def test_gzip_round_trips(self) -> None:
        """A gzipped body decompresses to the plain one."""
        plain = render(self.families(), Format.TEXT, gzip_ok=False, max_bytes=10_000)
        zipped = render(self.families(), Format.TEXT, gzip_ok=True, max_bytes=10_000)
        assert zipped.gzipped
        assert zipped.content_type == Format.TEXT.content_type
        assert plain.gzipped is False
        assert gzip.decompress(zipped.body) == plain.body

    def test_gzip_is_deterministic_level_6_without_timestamp(self) -> None:
        """The gzip body has no timestamp (mtime 0) and uses level 6: same input, same bytes."""
        plain = render(self.families(), Format.TEXT, gzip_ok=False, max_bytes=10_000)
        zipped = render(self.families(), Format.TEXT, gzip_ok=True, max_bytes=10_000)
        assert zipped.body[4:8] == b"\0\0\0\0"
        assert zipped.body == gzip.compress(plain.body, 6, mtime=0)

    def test_body_over_bound_raises(self) -> None:
        """A body over max_bytes is refused instead of sent, naming its size."""
        size = len(
            render(self.families(), Format.TEXT, gzip_ok=False, max_bytes=10_000).body
        )
        with pytest.raises(ResponseTooLargeError) as caught:
            render(self.families(), Format.TEXT, gzip_ok=False, max_bytes=size - 1)
        assert caught.value.args == (size,)
        exact = render(self.families(), Format.TEXT, gzip_ok=False, max_bytes=size)
        assert len(exact.body) == size


class TestStreamingGzip:
    def test_streamed_gzip_decompresses_to_the_body(self) -> None:
        """Pieces compressed as they come decompress to their concatenation."""
        pieces = [f"line {i} " * 50 + "\n" for i in range(3000)]
        rendered = finish_streaming(pieces, Format.TEXT, max_bytes=10_000_000)
        assert rendered.gzipped
        assert rendered.body[:2] == b"\x1f\x8b"
        assert rendered.body[4:8] == b"\0\0\0\0"  # no timestamp
        assert gzip.decompress(rendered.body) == "".join(pieces).encode()

    def test_streamed_body_over_the_bound_is_refused(self) -> None:
        """The uncompressed size is bounded while streaming, exactly at max_bytes."""
        pieces = ["x" * 1000] * 200
        exact = finish_streaming(pieces, Format.TEXT, max_bytes=200_000)
        assert len(gzip.decompress(exact.body)) == 200_000
        with pytest.raises(ResponseTooLargeError):
            finish_streaming(pieces, Format.TEXT, max_bytes=199_999)
