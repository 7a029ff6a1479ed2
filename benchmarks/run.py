"""
Run the benchmark suite and write docs/benchmarks.md plus PNG plots.

    .venv/bin/python benchmarks/run.py            # full run (about 10 minutes)
    .venv/bin/python benchmarks/run.py --smoke    # seconds; proves the suite still runs

Every figure is a median with [min–max] over repeated, interleaved runs, and every
target is judged as a ratio against a peer measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import exemplars_bench
import fastpath_bench
import histograms_bench
import hotpath
import http_bench
import latency
import middleware_bench
import multiprocess_bench
import otlp_bench
import report
import runtime_bench
import scrape
import shapes
from common import Progress

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Plan:
    ops: int
    repeats: int
    sizes: list[int]
    wrk_seconds: int
    connections: list[int]
    http_series: int
    otlp_series: int
    window: float
    big_scrape: int
    probes: int
    steady_seconds: float
    group_series: int
    group_ops: int
    middleware_requests: int
    fast_ops: int
    shape_ops: int
    runtime_calls: int
    histogram_ops: int
    histogram_series: int
    exemplar_ops: int


FULL = Plan(
    ops=50_000,
    repeats=7,
    sizes=[1_000, 10_000, 100_000],
    wrk_seconds=5,
    connections=[1, 32, 256],
    http_series=1_000,
    otlp_series=10_000,
    window=2.0,
    big_scrape=50_000,
    probes=50,
    steady_seconds=20,
    group_series=10_000,
    group_ops=20_000,
    middleware_requests=20_000,
    fast_ops=100_000,
    shape_ops=20_000,
    runtime_calls=200,
    histogram_ops=20_000,
    histogram_series=1_000,
    exemplar_ops=50_000,
)
SMOKE = Plan(
    ops=500,
    repeats=2,
    sizes=[100, 1_000],
    wrk_seconds=1,
    connections=[1, 32],
    http_series=100,
    otlp_series=500,
    window=0.2,
    big_scrape=5_000,
    probes=5,
    steady_seconds=1,
    group_series=200,
    group_ops=500,
    middleware_requests=300,
    fast_ops=2_000,
    shape_ops=300,
    runtime_calls=5,
    histogram_ops=300,
    histogram_series=50,
    exemplar_ops=300,
)


def environment(command: str) -> dict[str, Any]:
    packages = [
        "ron-metrics",
        "opentelemetry-sdk",
        "opentelemetry-exporter-prometheus",
        "opentelemetry-exporter-otlp",
        "prometheus-client",
        "hypercorn",
        "quart",
        "rotel",
    ]
    return {
        "command": command,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {platform.system()} {platform.release()}",
        "cpus": __import__("os").cpu_count(),
        "packages": {name: version(name) for name in packages},
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes; seconds, not minutes"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "docs",
        help="where benchmarks.md and plots go",
    )
    args = parser.parse_args(argv)
    logging.disable(
        logging.CRITICAL
    )  # access logs and export errors are not the subject
    plan = SMOKE if args.smoke else FULL
    wrk_steps = sum(
        len(paths)
        for paths in (["/healthz", "/metrics"], ["/metrics"], ["/healthz", "/metrics"])
    ) * len(plan.connections)
    progress = Progress(total=14 + wrk_steps)
    command = "python benchmarks/run.py" + (" --smoke" if args.smoke else "")
    results: dict[str, Any] = {"env": environment(command), "smoke": args.smoke}
    progress.step("hot path: counters, histograms, dropped attribute, overflow")
    rotel = otlp_bench.Rotel()
    rotel.start()
    try:
        results["hotpath"] = hotpath.measure(plan.ops, plan.repeats, rotel.endpoint)
    finally:
        rotel.stop()
    progress.step(f"scrape: {plan.sizes} series")
    results["scrape"] = scrape.measure(plan.sizes, plan.repeats)
    progress.step("memory per 10k series")
    results["memory"] = scrape.memory_per_series(10_000 if not args.smoke else 1_000)
    results["rss_scrapes"] = scrape.rss_over_scrapes(
        10_000 if not args.smoke else 1_000, 100 if not args.smoke else 5
    )
    progress.step(f"/healthz during a {plan.big_scrape}-series scrape")
    results["healthz_during_scrape"] = latency.healthz_during_scrape(
        plan.big_scrape, plan.probes
    )
    results["healthz_idle"] = latency.healthz_idle(plan.big_scrape, plan.probes)
    progress.step("/metrics (1k series) at 5 rps")
    results["healthz_during_scrape_frozen"] = latency.healthz_during_scrape(
        plan.big_scrape, plan.probes, freeze=True
    )
    results["steady_peer"] = latency.steady_scrapes(
        plan.http_series, 5.0, plan.steady_seconds, peer=True
    )
    results["steady"] = latency.steady_scrapes(
        plan.http_series, 5.0, plan.steady_seconds
    )
    results["http"] = http_bench.measure(
        plan.wrk_seconds, plan.connections, plan.http_series, progress.step
    )
    progress.step(f"OTLP: export {plan.otlp_series} series to rotel; add() latency")
    results["otlp"] = otlp_bench.measure(plan.otlp_series, plan.repeats, plan.window)
    progress.step(f"multi-process: a group of 4 with {plan.group_series} series each")
    results["multiprocess"] = multiprocess_bench.measure(
        plan.group_series, plan.group_ops, plan.repeats
    )
    progress.step("HTTP middleware overhead: ours and three peers on one FastAPI app")
    results["middleware"] = middleware_bench.measure(
        plan.middleware_requests, plan.repeats
    )
    progress.step("fast path: ours (auto, bound) vs raw SDK vs prometheus_client")
    results["fastpath"] = fastpath_bench.measure(
        plan.fast_ops, plan.repeats, 10_000 if not args.smoke else 500
    )
    progress.step("every call shape: ours vs raw SDK vs prometheus_client vs a floor")
    results["shapes"] = shapes.measure(plan.shape_ops, plan.repeats)
    progress.step("process and runtime metrics: cost per collection")
    results["runtime_metrics"] = runtime_bench.measure(plan.runtime_calls, plan.repeats)
    progress.step("exponential histograms: record; native vs classic scrape")
    results["histograms"] = {
        "record": histograms_bench.measure_record(plan.histogram_ops, plan.repeats),
        "scrape": histograms_bench.measure_scrape(plan.histogram_series, plan.repeats),
    }
    progress.step("exemplars: no span, unsampled, sampled vs the filter off")
    results["exemplars"] = exemplars_bench.measure(plan.exemplar_ops, plan.repeats)
    progress.step("report and plots")
    args.out.mkdir(parents=True, exist_ok=True)
    markdown = report.write(results, args.out)
    (args.out / "benchmarks.json").write_text(
        json.dumps(report.plain(results), indent=1, default=str)
    )
    progress.step(f"wrote {markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
