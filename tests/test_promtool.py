from __future__ import annotations

import logging
import subprocess
import time
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import StartFn, prometheus_config, require
from ron_metrics import start
from ron_metrics.demo import DEMO_CARDINALITY, DemoWorkload
from ron_metrics.testing import config_for_tests, sample_value


def promtool_check(body: str) -> subprocess.CompletedProcess[str]:
    """``promtool check metrics`` on ``body`` (exit 0 clean, 3 lint findings, 1 invalid)."""
    return subprocess.run(
        [require("promtool"), "check", "metrics"],
        input=body,
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.mark.peer
class TestPromtool:
    def test_demo_workload_output_has_zero_findings(
        self, start_runtime: StartFn
    ) -> None:
        """promtool check metrics finds nothing in the live output of the demo workload."""
        runtime = start_runtime(
            cardinality=DEMO_CARDINALITY, exporter=prometheus_config()
        )
        workload = DemoWorkload(runtime.get_meter("ron_metrics.demo", "1.0"))
        for _ in range(12):
            workload.tick()
        # An instrument without a description still gets a HELP line.
        runtime.get_meter("app").create_up_down_counter("queue.depth").add(4)
        body = httpx.get(f"{runtime.address}/metrics", timeout=10).text
        assert 'otel_metric_overflow="true"' in body
        result = promtool_check(body)
        assert result.returncode == 0, result.stderr
        assert result.stderr.strip() == "" and result.stdout.strip() == ""

    def test_promtool_does_find_problems_in_bad_input(self) -> None:
        """The check is live: promtool flags an empty HELP (so a pass above means something)."""
        bad = "# HELP x_total \n# TYPE x_total counter\nx_total 1\n"
        result = promtool_check(bad)
        assert result.returncode != 0
        time.sleep(0)


INSTRUMENT_NAMES = [
    "rejected",
    "rejected_total",
    "io_timeouts",
    "jobs",
    "jobs_total",
    "http.server.request.duration",
    "http_server_request_duration",
    "queue.depth",
    "queue_depth",
    "target_info",
    "latency",
]
KINDS = ["counter", "up_down_counter", "histogram", "gauge"]
UNITS = ["", "s", "ms", "By", "1"]


def _create(meter: Any, kind: str, name: str, unit: str) -> None:
    if kind == "counter":
        meter.create_counter(name, unit=unit).add(1, {"k": "v"})
    elif kind == "up_down_counter":
        meter.create_up_down_counter(name, unit=unit).add(-2, {"k": "v"})
    elif kind == "histogram":
        meter.create_histogram(name, unit=unit).record(0.5, {"k": "v"})
    else:
        meter.create_gauge(name, unit=unit).set(3, {"k": "v"})


@pytest.mark.peer
@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["app", "lib", "fastapi"]),
            st.sampled_from(KINDS),
            st.sampled_from(INSTRUMENT_NAMES),
            st.sampled_from(UNITS),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_any_instrument_set_gives_valid_exposition(
    instruments: list[tuple[str, str, str, str]],
) -> None:
    """Random instruments (clashing names, types, units, meters): promtool-clean."""
    runtime = start(config_for_tests(exporter=prometheus_config()), set_global=False)
    try:
        for meter_name, kind, name, unit in instruments:
            _create(runtime.get_meter(meter_name), kind, name, unit)
        body = httpx.get(f"{runtime.address}/metrics", timeout=10).text
    finally:
        runtime.shutdown()
    series = [line for line in body.splitlines() if line and not line.startswith("#")]
    keys = [line.rsplit(" ", 1)[0] for line in series]
    assert len(keys) == len(set(keys)), "a series appears twice"
    result = promtool_check(body)
    # Exit 1 is a parse error (an invalid page); lint findings (exit 3) are about
    # names the user chose, e.g. "_total" on a gauge, not about validity.
    assert result.returncode in {0, 3}, result.stderr
    assert "second HELP" not in result.stderr
    assert "second TYPE" not in result.stderr


class TestNameCollisions:
    def test_clash_leaves_one_family_counts_and_logs_once(
        self, start_runtime: StartFn, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A user 'rejected' counter next to ours: ours stays, theirs is left out."""
        runtime = start_runtime(exporter=prometheus_config())
        with caplog.at_level(logging.WARNING, logger="ron_metrics.exposer"):
            runtime.get_meter("app").create_counter("rejected").add(5)
            for _ in range(3):
                body = httpx.get(f"{runtime.address}/metrics", timeout=10).text
        assert body.count("# HELP rejected_total ") == 1
        assert sample_value(runtime, "rejected_total", reason="name_collision") == 1
        lines = [r for r in caplog.records if "name_collision" in r.getMessage()]
        assert len(lines) == 1

    def test_self_metrics_prefix_frees_our_names(self, start_runtime: StartFn) -> None:
        """With service.self_metrics_prefix, a user 'rejected' counter keeps its name."""
        runtime = start_runtime(
            service={"name": "t", "self_metrics_prefix": "ron_metrics_"},
            exporter=prometheus_config(),
        )
        runtime.get_meter("app").create_counter("rejected").add(5)
        assert sample_value(runtime, "rejected_total") == 5
        assert sample_value(runtime, "ron_metrics_rejected_total", reason="path") == 0

    def test_dotted_resource_keys_render_as_label_names(
        self, start_runtime: StartFn
    ) -> None:
        """Semantic-convention keys on target_info become sanitised label names."""
        runtime = start_runtime(
            labels={
                "allowed_extra": ["deployment.environment.name", "k8s.pod.name"],
                "extra": {
                    "deployment.environment.name": "prod",
                    "k8s.pod.name": "api-7",
                },
            },
            exporter=prometheus_config(),
        )
        body = httpx.get(f"{runtime.address}/metrics", timeout=10).text
        (info,) = [
            line for line in body.splitlines() if line.startswith("target_info{")
        ]
        assert 'deployment_environment_name="prod"' in info
        assert 'k8s_pod_name="api-7"' in info
        result = promtool_check(body)
        assert result.returncode == 0, result.stderr
