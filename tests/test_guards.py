from __future__ import annotations

import pytest

from ron_metrics.exporters.prometheus.guards import check_request, inspect_head

LIMIT = 8192


class TestInspectHead:
    @pytest.mark.parametrize(
        "head",
        [
            b"GET /metrics HTTP/1.1\r\nHost: x",
            b"GET /metrics HTTP/1.0",
            b"GET /metrics?x=1 HTTP/1.1\r\nAccept: */*\r\nContent-Length: 0",
            b"DELETE /nope HTTP/1.1\r\nHost: x",  # path and method are the app's call
        ],
    )
    def test_acceptable_framing_passes(self, head: bytes) -> None:
        """Well-framed heads without bodies or upgrades pass the wire check."""
        assert inspect_head(head, max_header_bytes=LIMIT) is None

    @pytest.mark.parametrize(
        ("head", "status", "reason"),
        [
            (b"GARBAGE", 400, "malformed"),
            (b"GET /metrics", 400, "malformed"),
            (b"G\x00T /metrics HTTP/1.1", 400, "malformed"),
            (b"GET /metrics HTTP/1.1\r\nNoColon", 400, "malformed"),
            (b"GET /metrics HTTP/1.1\r\nBad Name: 1", 400, "malformed"),
            (b"GET /metrics HTTP/1.1\r\n\tfolded", 400, "malformed"),
            (b"PRI * HTTP/2.0", 400, "upgrade"),
            (b"GET /metrics HTTP/2.0", 400, "upgrade"),
            (b"GET /metrics HTTP/1.1\r\nUpgrade: websocket", 400, "upgrade"),
            (b"GET /metrics HTTP/1.1\r\nHTTP2-Settings: AAA", 400, "upgrade"),
            (b"GET /metrics HTTP/1.1\r\nTransfer-Encoding: chunked", 400, "body"),
            (b"GET /metrics HTTP/1.1\r\nContent-Length: 3", 400, "body"),
            (b"GET /metrics HTTP/1.1\r\nContent-Length: 1, 2", 400, "body"),
            (b"GET /metrics HTTP/1.1\r\nContent-Length: 9999999", 413, "oversize"),
            (b"GET /metrics HTTP/1.1\r\nX: " + b"a" * LIMIT, 431, "headers"),
        ],
    )
    def test_refused_shapes(self, head: bytes, status: int, reason: str) -> None:
        """Each refused shape maps to its status and counter reason, closing the connection."""
        rejection = inspect_head(head, max_header_bytes=LIMIT)
        assert rejection is not None
        assert (rejection.status, rejection.reason, rejection.close) == (
            status,
            reason,
            True,
        )


class TestCheckRequest:
    @pytest.mark.parametrize(
        ("method", "path", "status"),
        [
            ("GET", "/metrics", None),
            ("GET", "/x", 404),
            ("POST", "/metrics", 405),
            ("HEAD", "/readyz", 405),
        ],
    )
    def test_path_then_method(self, method: str, path: str, status: int | None) -> None:
        """Unknown paths are 404 whatever the method; known paths take only GET."""
        rejection = check_request(method, path, [], max_header_bytes=LIMIT)
        assert (rejection.status if rejection else None) == status
