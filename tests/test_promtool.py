from __future__ import annotations

import subprocess
import time

import httpx
import pytest

from conftest import StartFn, prometheus_config, require
from ron_metrics.demo import DEMO_CARDINALITY, DemoWorkload


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
        result = subprocess.run(
            [require("promtool"), "check", "metrics"],
            input=body,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert result.stderr.strip() == "" and result.stdout.strip() == ""

    def test_promtool_does_find_problems_in_bad_input(self) -> None:
        """The check is live: promtool flags an empty HELP (so a pass above means something)."""
        bad = "# HELP x_total \n# TYPE x_total counter\nx_total 1\n"
        result = subprocess.run(
            [require("promtool"), "check", "metrics"],
            input=bad,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode != 0
        time.sleep(0)
