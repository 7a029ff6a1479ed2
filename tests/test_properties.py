"""
Property tests (hypothesis): the live exposer under random requests, and the pure
negotiation and sanitizer functions under random input.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ron_metrics import ConfigError, Runtime, start
from ron_metrics.exporters.prometheus.guards import KNOWN_PATHS, parse_head
from ron_metrics.exporters.prometheus.render import (
    Format,
    accepts_gzip,
    negotiate_format,
)
from ron_metrics.labels import (
    MAX_LABEL_VALUE_LENGTH,
    check_label_key,
    check_label_value,
)
from ron_metrics.testing import config_for_tests
from wire import port_of, read_all, status_of

TOKEN = st.text(
    alphabet=st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZ-"), min_size=1, max_size=10
)
PATHS = st.one_of(
    st.sampled_from(
        [
            *(p.decode() for p in KNOWN_PATHS),
            "/",
            "/metrics/",
            "/admin",
            "/.env",
            "//metrics",
        ]
    ),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz/._-%", min_size=1, max_size=30).map(
        lambda p: "/" + p
    ),
)
HEADER_NAMES = st.sampled_from(
    [
        "X-A",
        "Accept",
        "Content-Length",
        "Transfer-Encoding",
        "Upgrade",
        "Connection",
        "User-Agent",
        "Range",
    ]
)
HEADER_VALUES = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40
)


@pytest.fixture(name="live", scope="module")
def _live() -> Iterator[Runtime]:
    runtime = start(config_for_tests(exporter={"kind": "prometheus"}), set_global=False)
    yield runtime
    runtime.shutdown()


def _send(runtime: Runtime, raw: bytes) -> bytes:
    with socket.create_connection(
        ("127.0.0.1", port_of(str(runtime.address))), timeout=5
    ) as sock:
        sock.sendall(raw)
        return read_all(sock, 3)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    method=st.one_of(st.just("GET"), TOKEN),
    path=PATHS,
    headers=st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=5),
    body=st.binary(max_size=20),
)
# Found by earlier random runs, kept as fixed regression cases.
@example(method="GET", path="//metrics", headers=[], body=b"")
@example(method="GET", path="//healthz", headers=[], body=b"")
@example(method="get", path="/metrics", headers=[], body=b"")
@example(
    method="GET", path="/metrics", headers=[("Content-Length", "\u00b2")], body=b""
)
def test_only_bodiless_get_on_known_path_succeeds(
    live: Runtime, method: str, path: str, headers: list[tuple[str, str]], body: bytes
) -> None:
    """Random method/path/headers/body: 2xx only for a bodiless GET on a known path."""
    lines = [f"{method} {path} HTTP/1.1", "Host: x", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    response = _send(live, raw)
    status = status_of(response)
    accepted = (
        parse_head(raw.split(b"\r\n\r\n", 1)[0], max_header_bytes=8192).rejection
        is None
    )
    if 200 <= status < 300:
        assert method == "GET"
        assert path.encode() in KNOWN_PATHS
        assert not body
        assert accepted
    else:
        assert not accepted or status == 503  # /readyz may be draining
        assert status >= 400 or status == 0  # 0: connection closed without an answer
    if status:
        assert b"cache-control: no-store" in response.lower()


@given(st.text(max_size=300))
def test_negotiation_never_fails(header: str) -> None:
    """Any Accept / Accept-Encoding text yields a format and a boolean, never an error."""
    assert negotiate_format(header) in {Format.TEXT, Format.OPENMETRICS}
    assert accepts_gzip(header) in {True, False}


@given(st.text(max_size=400))
def test_label_value_check_is_total_and_bounded(value: str) -> None:
    """The sanitizer answers every string; anything it accepts is short and printable."""
    why = check_label_value(value)
    if why is None:
        assert 0 < len(value) <= MAX_LABEL_VALUE_LENGTH
        assert value.isprintable()
    else:
        assert len(why) < 200


@given(st.dictionaries(st.text(max_size=70), st.text(max_size=200), max_size=4))
def test_random_extra_labels_only_raise_config_error(extra: dict[str, str]) -> None:
    """Random extra labels through the loader: accepted or ConfigError, nothing else."""
    problems: tuple[object, ...] = ()
    try:
        config = config_for_tests(
            labels={"extra": extra, "allowed_extra": ["region", "az", "tier"]}
        )
    except ConfigError as error:
        problems = error.problems
        config = None
    if config is None:
        assert problems
        return
    for key, value in config.labels.extra.items():
        assert check_label_key(key) is None
        assert check_label_value(value) is None


@given(st.binary(max_size=500))
def test_fuzz_entry_point_never_raises(data: bytes) -> None:
    """The atheris fuzz target's entry point survives arbitrary bytes (hypothesis-driven)."""
    from fuzz_negotiation import one_input

    one_input(data)
