"""
The HTTP server metrics' recording rules, in process: which status, route, method
and ``error.type`` a finished request is recorded with, and which families exist.
(The middleware tests run the same rules through real servers.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ron_metrics import Runtime
from ron_metrics._http_metrics import HttpMetrics, method_attribute, werkzeug_route
from ron_metrics.testing import config_for_tests, runtime_for_tests, samples

BASE = {"http.request.method": "GET", "url.scheme": "http"}
COUNT = "http_server_request_duration_seconds_count"


@pytest.fixture(name="runtime")
def _runtime() -> Iterator[Runtime]:
    with runtime_for_tests(config_for_tests(runtime_metrics={"enabled": False})) as rt:
        yield rt


def _recorded(
    runtime: Runtime, name: str = COUNT
) -> dict[frozenset[tuple[str, str]], float]:
    return {
        labels: value for (n, labels), value in samples(runtime).items() if n == name
    }


def _finish(metrics: HttpMetrics, **overrides: Any) -> None:
    call: dict[str, Any] = {
        "seconds": 0.25,
        "status": 200,
        "route": "/items/{id}",
        "error": None,
        "request_bytes": 10,
        "response_bytes": 2000,
    }
    call.update(overrides)
    metrics.finished(dict(BASE), **call)


def _labels(**extra: str) -> frozenset[tuple[str, str]]:
    base = {"http_request_method": "GET", "url_scheme": "http"}
    return frozenset({**base, **extra}.items())


@pytest.mark.parametrize(
    ("method", "recorded"),
    [
        ("GET", "GET"),
        ("PATCH", "PATCH"),
        ("get", "_OTHER"),
        ("BREW", "_OTHER"),
        ("", "_OTHER"),
    ],
)
def test_known_methods_as_sent_others_as_other(method: str, recorded: str) -> None:
    assert method_attribute(method) == recorded


def test_a_werkzeug_route_is_the_template_or_nothing() -> None:
    from flask import Flask

    app = Flask("t")
    app.add_url_rule("/items/<int:item>", "item", lambda item: "", methods=["GET"])
    assert werkzeug_route(app, "/items/7", "GET") == "/items/<int:item>"
    assert werkzeug_route(app, "/items/seven", "GET") is None
    assert werkzeug_route(app, "/items/7", "POST") is None
    assert werkzeug_route(object(), "/items/7", "GET") is None


def test_an_answer_is_recorded_with_its_status_and_route(runtime: Runtime) -> None:
    metrics = HttpMetrics(meter_provider=runtime.meter_provider)
    _finish(metrics)
    _finish(metrics, status=404, route=None)
    assert _recorded(runtime) == {
        _labels(http_response_status_code="200", http_route="/items/{id}"): 1,
        # The exposition gives every series of a family the same label names.
        _labels(http_response_status_code="404", http_route=""): 1,
    }
    total = _recorded(runtime, "http_server_request_duration_seconds_sum")
    assert sum(total.values()) == 0.5


def test_errors_are_recorded_as_the_client_saw_them(runtime: Runtime) -> None:
    """An exception before the answer is a 500 with its class; a 5xx the app
    returned names its code; a client that left got no status at all."""
    metrics = HttpMetrics(meter_provider=runtime.meter_provider)
    _finish(metrics, status=None, error=ValueError("boom"))
    _finish(metrics, status=503)
    _finish(metrics, status=500)
    _finish(metrics, status=499)
    _finish(metrics, status=None, error=ConnectionResetError(), client_gone=True)
    _finish(metrics, status=200, error=KeyError("late"))
    route = "/items/{id}"
    assert _recorded(runtime) == {
        _labels(
            http_response_status_code="500", http_route=route, error_type="ValueError"
        ): 1,
        _labels(http_response_status_code="503", http_route=route, error_type="503"): 1,
        _labels(http_response_status_code="500", http_route=route, error_type="500"): 1,
        _labels(http_response_status_code="499", http_route=route, error_type=""): 1,
        _labels(
            http_response_status_code="",
            http_route=route,
            error_type="ConnectionResetError",
        ): 1,
        _labels(
            http_response_status_code="200", http_route=route, error_type="KeyError"
        ): 1,
    }


@pytest.mark.parametrize("body_sizes", [True, False])
def test_body_sizes_only_when_asked(runtime: Runtime, body_sizes: bool) -> None:
    metrics = HttpMetrics(meter_provider=runtime.meter_provider, body_sizes=body_sizes)
    _finish(metrics, request_bytes=10, response_bytes=2000)
    requests = _recorded(runtime, "http_server_request_body_size_bytes_sum")
    responses = _recorded(runtime, "http_server_response_body_size_bytes_sum")
    if body_sizes:
        # With the request's own attributes, as its duration.
        (labels,) = _recorded(runtime)
        assert requests == {labels: 10}
        assert responses == {labels: 2000}
    else:
        assert requests == responses == {}


def test_instruments_are_made_once_and_paths_kept(runtime: Runtime) -> None:
    metrics = HttpMetrics(
        meter_provider=runtime.meter_provider, excluded_paths=["/healthz", "/healthz"]
    )
    assert metrics.excluded_paths == frozenset({"/healthz"})
    assert metrics.instruments is metrics.instruments
    assert metrics.instruments.request_size is None
