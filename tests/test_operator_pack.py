"""
The operator's pack: alert rules checked and unit-tested by promtool, and every
metric name the dashboard or the rules query checked against what a real runtime
with the HTTP middleware exposes.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import prometheus_config, require
from ron_metrics.asgi import MetricsMiddleware

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "alerts" / "ron-metrics.rules.yml"
RULE_TESTS = ROOT / "alerts" / "ron-metrics.rules.test.yml"
DASHBOARD = ROOT / "dashboards" / "ron-metrics.json"
# Series Prometheus itself makes for every target.
SYNTHETIC = {"up"}
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool"}
_KEYWORDS |= {"and", "or", "unless", "offset"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions and labels left out)."""
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range selectors
    text = re.sub(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", " ", text)
    names = set()
    for found in re.finditer(r"(?<![\w$])([A-Za-z_:][\w:]*)(\s*\()?", text):
        if found.group(2) is None and found.group(1) not in _KEYWORDS:
            names.add(found.group(1))
    return names


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def rule_exprs() -> list[str]:
    return re.findall(r"expr: >?\n?((?:.|\n)*?)\n\s+(?:for|labels):", RULES.read_text())


def test_expression_parser_finds_names_and_skips_the_rest() -> None:
    """The name extractor the checks below rely on."""
    expr = (
        'histogram_quantile(0.95, sum by (le, route) (rate(a_bucket{job=~"$job",'
        ' x="rate(b)"}[5m]))) / on (job) c_total > bool 1'
    )
    assert metric_names(expr) == {"a_bucket", "c_total"}


def test_rules_pass_promtool_check() -> None:
    """promtool check rules: the file is valid and every expression parses."""
    result = subprocess.run(
        [require("promtool"), "check", "rules", str(RULES)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 10 rules found" in result.stdout


def test_rules_pass_their_unit_tests() -> None:
    """promtool test rules: each alert fires (and stays quiet) when it should."""
    result = subprocess.run(
        [require("promtool"), "test", "rules", str(RULE_TESTS)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=RULE_TESTS.parent,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_is_a_grafana_dashboard() -> None:
    """Valid JSON, unique panel ids, every graph panel with a query."""
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    assert all(panel.get("targets") for panel in panels if panel["type"] != "row")
    assert {v["name"] for v in dashboard["templating"]["list"]} == {
        "datasource",
        "job",
        "instance",
    }


@pytest.fixture(scope="module")
def exposed_names(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Sample names a runtime with the HTTP middleware really exposes."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from ron_metrics import start
    from ron_metrics.testing import config_for_tests

    def ok(_request: Any) -> PlainTextResponse:
        return PlainTextResponse("ok")

    # The fast path explicitly: GC pauses are timed there only.
    config = config_for_tests(exporter=prometheus_config(), sdk={"fast_path": True})
    runtime = start(config, set_global=False)
    try:
        app = Starlette(routes=[Route("/items/{item}", ok)])
        wrapped = MetricsMiddleware(app, meter_provider=runtime.meter_provider)

        async def drive() -> int:
            transport = httpx.ASGITransport(app=wrapped)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                return (await c.get("/items/1")).status_code

        assert asyncio.run(drive()) == 200
        # The second scrape also shows the first one's exposition latency.
        httpx.get(f"{runtime.address}/metrics", timeout=10)
        body = httpx.get(f"{runtime.address}/metrics", timeout=10).text
    finally:
        runtime.shutdown()
    samples = {
        line.split("{")[0].split(" ")[0]
        for line in body.splitlines()
        if line and not line.startswith("#")
    }
    # A histogram made exponential is a native histogram in Prometheus, queried
    # by its family name (no _bucket/_count/_sum).
    histograms = {
        line.split(" ")[2]
        for line in body.splitlines()
        if line.startswith("# TYPE ") and line.endswith(" histogram")
    }
    return samples | histograms


def test_latency_panel_shows_exemplars() -> None:
    """The classic-bucket latency query asks Grafana for exemplars (trace links)."""
    dashboard = json.loads(DASHBOARD.read_text())
    (panel,) = [p for p in dashboard["panels"] if p["title"] == "p95 latency by route"]
    marked = [t for t in panel["targets"] if t.get("exemplar")]
    assert [t["expr"] for t in marked] == [
        t["expr"] for t in panel["targets"] if "_bucket{" in t["expr"]
    ]
    assert marked


def test_dashboard_queries_only_metrics_we_emit(exposed_names: set[str]) -> None:
    """A panel querying a name that no longer exists fails here."""
    wanted = set().union(*(metric_names(expr) for expr in dashboard_exprs()))
    assert wanted, "no metric names found in the dashboard"
    assert wanted - exposed_names - SYNTHETIC == set()


def test_alert_rules_query_only_metrics_we_emit(exposed_names: set[str]) -> None:
    """Every alert's expression selects names the runtime exposes."""
    exprs = rule_exprs()
    assert len(exprs) == 10
    wanted = set().union(*(metric_names(expr) for expr in exprs))
    assert wanted - exposed_names - SYNTHETIC == set()


def test_the_check_catches_a_renamed_metric(exposed_names: set[str]) -> None:
    """A query for a name we do not emit is reported (the check is not vacuous)."""
    assert metric_names("rate(http_requests_total[5m])") - exposed_names == {
        "http_requests_total"
    }
