"""
Multi-process mode: the cost of a group scrape and of ``counter.add`` in a group,
next to prometheus_client's multiprocess mode measured in the same run.

Same work on both sides: every worker holds the same counter series (one
attribute, ``series`` values); a scrape reads every worker's file, merges them
and encodes the text format (no HTTP). The single-process baselines hold the same
series in one process. ``add`` is timed in a fresh interpreter per variant, with
one attribute set (prometheus_client: ``labels(...).inc()``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from common import Figure

WORKERS = 4

_RON_WORKER = """
import sys
import ron_metrics
series, directory = int(sys.argv[1]), sys.argv[2]
config = ron_metrics.load_config(env={}, service={"name": "bench"},
    exporter={"kind": "none"}, multiprocess={"dir": directory},
    cardinality={"max_series": series + 10})
runtime = ron_metrics.start(config, set_global=False)
counter = runtime.get_meter("bench").create_counter("requests")
for i in range(series):
    counter.add(1, {"key": f"k{i}"})
print("ready", flush=True)
sys.stdin.read()
"""

_PC_WORKER = """
import sys
from prometheus_client import Counter
series = int(sys.argv[1])
counter = Counter("requests", "Requests.", ["key"])
for i in range(series):
    counter.labels(key=f"k{i}").inc()
print("ready", flush=True)
sys.stdin.read()
"""

_ADD = {
    "ron single process": """
import ron_metrics
runtime = ron_metrics.start(ron_metrics.load_config(env={}, service={"name": "b"},
    exporter={"kind": "none"}), set_global=False)
counter = runtime.get_meter("b").create_counter("requests")
def op(): counter.add(1, {"key": "k"})
""",
    "ron group member": """
import sys, tempfile
import ron_metrics
runtime = ron_metrics.start(ron_metrics.load_config(env={}, service={"name": "b"},
    exporter={"kind": "none"}, multiprocess={"dir": tempfile.mkdtemp() + "/g"}),
    set_global=False)
counter = runtime.get_meter("b").create_counter("requests")
def op(): counter.add(1, {"key": "k"})
""",
    "prometheus_client single process": """
from prometheus_client import Counter
counter = Counter("requests", "Requests.", ["key"])
def op(): counter.labels(key="k").inc()
""",
    "prometheus_client multiprocess": """
from prometheus_client import Counter
counter = Counter("requests", "Requests.", ["key"])
def op(): counter.labels(key="k").inc()
""",
}

_TIMER = """
import time
for _ in range(1000): op()
started = time.perf_counter_ns()
for _ in range({ops}): op()
print((time.perf_counter_ns() - started) / {ops})
"""


def _time_add(variant: str, ops: int) -> float:
    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as directory:
        if variant == "prometheus_client multiprocess":
            env["PROMETHEUS_MULTIPROC_DIR"] = directory
        code = textwrap.dedent(_ADD[variant]) + _TIMER.format(ops=ops)
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env=env,
            check=True,
            timeout=300,
        ).stdout
    return float(out.strip().splitlines()[-1])


def _workers(code: str, series: int, directory: str, env: dict[str, str]) -> list[Any]:
    started = []
    for _ in range(WORKERS):
        process = subprocess.Popen(
            [sys.executable, "-c", code, str(series), directory],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        started.append(process)
    for process in started:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
    return started


def _stop(processes: list[Any]) -> None:
    for process in processes:
        process.stdin.close()
        process.wait(30)
        process.stdout.close()


def _timed(fn: Any, repeats: int) -> Figure:
    figure = Figure("scrape", "ms")
    fn()
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        figure.values.append((time.perf_counter() - started) * 1000)
    return figure


def _ron_scrapes(series: int, repeats: int) -> dict[str, Figure]:
    from opentelemetry.sdk.resources import Resource

    import ron_metrics
    from ron_metrics.exporters.prometheus.encode import DirectEncoder
    from ron_metrics.exporters.prometheus.render import Format
    from ron_metrics.multiprocess.group import Group

    encoder = DirectEncoder(target_info=True, scope_labels=False, on_clash=print)
    figures: dict[str, Figure] = {}
    with tempfile.TemporaryDirectory() as directory:
        group_dir = str(Path(directory) / "g")
        workers = _workers(_RON_WORKER, series, group_dir, dict(os.environ))
        try:
            group = Group(group_dir, gauge_policy="last")
            resource = Resource({"service.name": "bench"})
            figures[f"ron group of {WORKERS}"] = _timed(
                lambda: encoder.encode(group.collect(resource), Format.TEXT), repeats
            )
        finally:
            _stop(workers)
    config = ron_metrics.load_config(
        env={},
        service={"name": "bench"},
        exporter={"kind": "none"},
        cardinality={"max_series": series + 10},
    )
    with ron_metrics.start(config, set_global=False) as runtime:
        counter = runtime.get_meter("bench").create_counter("requests")
        for i in range(series):
            counter.add(WORKERS, {"key": f"k{i}"})
        hub = runtime._hub
        figures["ron single process"] = _timed(
            lambda: encoder.encode(hub.capture(), Format.TEXT),  # type: ignore[arg-type]  # a collection
            repeats,
        )
    return figures


def _pc_scrapes(series: int, repeats: int) -> dict[str, Figure]:
    from prometheus_client import CollectorRegistry, Counter, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    figures: dict[str, Figure] = {}
    with tempfile.TemporaryDirectory() as directory:
        env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=directory)
        workers = _workers(_PC_WORKER, series, directory, env)
        try:
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]  # untyped upstream
            figures[f"prometheus_client multiprocess of {WORKERS}"] = _timed(
                lambda: generate_latest(registry), repeats
            )
        finally:
            _stop(workers)
    registry = CollectorRegistry()
    counter = Counter("requests", "Requests.", ["key"], registry=registry)
    for i in range(series):
        counter.labels(key=f"k{i}").inc(WORKERS)
    figures["prometheus_client single process"] = _timed(
        lambda: generate_latest(registry), repeats
    )
    return figures


def measure(series: int, ops: int, repeats: int) -> dict[str, Any]:
    """
    Scrape cost (ms) of a 4-worker group vs one process, and ``add`` cost (ns).
    """
    scrapes = {**_ron_scrapes(series, repeats), **_pc_scrapes(series, repeats)}
    adds: dict[str, Figure] = {name: Figure(name, "ns") for name in _ADD}
    for _ in range(repeats):
        for name in _ADD:  # interleaved: drift hits every variant alike
            adds[name].values.append(_time_add(name, ops))
    return {"series": series, "workers": WORKERS, "scrape": scrapes, "add": adds}


if __name__ == "__main__":
    found = measure(int(sys.argv[1]) if len(sys.argv) > 1 else 1000, 20_000, 3)
    for kind in ("scrape", "add"):
        for name, figure in found[kind].items():
            print(f"{kind:6} {name:42} {figure.text(2)} {figure.unit}")
