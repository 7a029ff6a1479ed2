"""
docs/benchmarks.md and its plots from one run's results.
"""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from common import Figure

READING = """
## Reading these numbers

- This machine has 2 shared vCPUs: compare the [min–max] ranges; ratios inside them are parity,
  not a verdict. The targets use the median of per-round ratios (candidates run round-robin), so
  drift on the machine hits every candidate alike.
- Synchronous instruments of the ron-metrics provider run on its fast path: one cell per
  attribute set, the SDK's rules (cleaning, allowlist, series key, cardinality limit) applied once
  per set. The hot-path tables compare it with the SDK's own instruments, the call-shape matrix
  with every peer, in every shape.
- A ron-metrics scrape collects and then encodes; prometheus_client only encodes state it already
  holds. "reference path" is the translate-then-encode path of opentelemetry-exporter-prometheus,
  still selectable with `exporter.prometheus.encoder`. The prometheus_client rows are measured
  with and without its `_created` lines: ron-metrics writes none, so "no `_created`" is the
  like-for-like comparison.
- `/healthz` during a big scrape is measured with and without `gc.freeze()` after start-up; the
  two rows of that table say what the recipe changes on this run.
- Two memory tables measure two quantities: "memory held" is a whole registry after filling it
  (and after one scrape, which keeps each series' rendered labels for the next); the fast-path
  table's memory row is the growth from creating the series in a provider built beforehand.
"""

# Hand-written prose carries no figures: every number on the page comes from a table
# of the same run, so the text cannot contradict the tables.
_FIGURE_IN_PROSE = re.compile(r"\d[\d,.]*\s*(?:×|x\b|%|ms\b|µs\b|ns\b|MiB|KiB|KB|MB)")


def check_prose(text: str) -> None:
    """
    Raises:
        ValueError: If hand-written prose states a figure.
    """
    found = _FIGURE_IN_PROSE.search(text)
    if found:
        raise ValueError(
            f"prose states a figure ({found.group(0)!r}): put it in a table"
        )


def plain(value: Any) -> Any:
    if isinstance(value, Figure):
        return {
            "median": value.median,
            "min": min(value.values, default=None),
            "max": max(value.values, default=None),
            "unit": value.unit,
            "values": value.values,
        }
    if is_dataclass(value) and not isinstance(value, type):
        return plain(asdict(value))
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def _ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(b) else float("nan")


def _paired(ours: Figure, peer: Figure) -> float:
    # Candidates ran round-robin, so round i of each saw the same machine state:
    # the median of per-round ratios cancels drift that medians of each would keep.
    pairs = [a / b for a, b in zip(ours.values, peer.values, strict=False) if b]
    return statistics.median(pairs) if pairs else float("nan")


def targets(results: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    """(target, measured, how, met?) rows."""
    rows: list[tuple[str, str, str, bool | None]] = []
    counters = results["hotpath"]["counter"]
    raw = counters["raw SDK, 1 reader"]
    raw_view = counters["raw SDK, 1 reader + same allowlist View"]
    for kind in ("prometheus", "otlp", "both"):
        ours = counters[f"ron-metrics ({kind})"]
        ratio = _paired(ours, raw)
        rows.append(
            (
                f"`add` via ron-metrics ({kind}, allowlist View) ≤ 1.05× raw single-reader SDK",
                f"{ratio:.2f}× (vs raw SDK with the same View: {_paired(ours, raw_view):.2f}×)",
                "median of per-round ns/op ratios",
                ratio <= 1.05,
            )
        )
    ratio = _paired(counters["ron-metrics (prometheus, no allowlist)"], raw)
    rows.append(
        (
            "`add` via ron-metrics (prometheus, no allowlist) ≤ 1.05× raw single-reader SDK",
            f"{ratio:.2f}×",
            "median of per-round ns/op ratios",
            ratio <= 1.05,
        )
    )
    sizes = sorted(results["scrape"])
    size = 10_000 if 10_000 in results["scrape"] else sizes[-1]
    at = results["scrape"][size]
    ratio = _paired(
        at["ron-metrics direct encoder (text)"]["ms"],
        at["prometheus_client generate_latest (no _created)"]["ms"],
    )
    rows.append(
        (
            f"{size:,}-series scrape ≤ 1.0× prometheus_client `generate_latest` (no `_created`)",
            f"{ratio:.2f}×",
            "collect + encode vs encode alone; median of per-round ms ratios",
            ratio <= 1.0,
        )
    )
    ratio = _paired(
        at["ron-metrics direct encoder (text)"]["ms"],
        at["ron-metrics reference path (exporter-prometheus)"]["ms"],
    )
    rows.append(
        (
            f"{size:,}-series scrape ≤ 0.4× the reference (exporter-prometheus) path",
            f"{ratio:.2f}×",
            "median of per-round ms ratios",
            ratio <= 0.4,
        )
    )
    http = results.get("http") or {}
    try:
        ours = http["ron"]["/metrics"][32]["rps"]
        naive = http["naive-quart"]["/metrics"][32]["rps"]
        ratio = _ratio(ours, naive)
        rows.append(
            (
                "`/metrics` req/s at c32 ≥ 3× the naive Quart path (single-flight)",
                f"{ratio:.2f}×",
                "wrk, 1k series",
                ratio >= 3.0,
            )
        )
    except KeyError:
        rows.append(
            (
                "`/metrics` req/s at c32 ≥ 3× the naive Quart path",
                "not measured",
                "wrk missing",
                None,
            )
        )
    p95 = results["steady"]["p95_ms"]
    rows.append(
        (
            "p95 < 10 ms for a 1k-series scrape at 5 rps",
            f"{p95:.2f} ms",
            "httpx, steady 5 rps",
            p95 < 10,
        )
    )
    peer = results.get("steady_peer")
    if peer:
        ratio = _ratio(p95, peer["p95_ms"])
        rows.append(
            (
                "1k-series `/metrics` p95 at 5 rps ≤ 0.5× prometheus_client's server",
                f"{ratio:.2f}× ({p95:.2f} vs {peer['p95_ms']:.2f} ms)",
                "httpx, steady 5 rps, same series, no `_created`",
                ratio <= 0.5,
            )
        )
    h = results["healthz_during_scrape"]
    idle = results["healthz_idle"]
    rows.append(
        (
            "`/healthz` p99 during a big scrape ≤ 25 ms, no user recipe",
            f"{h['p99_ms']:.1f} ms (idle, same run: {idle['p99_ms']:.1f} ms)",
            f"{int(h['n'])} probes while the scrape is in flight",
            h["p99_ms"] <= 25,
        )
    )
    rows += _fastpath_targets(results["fastpath"])
    rows += _shape_targets(results["shapes"])
    rows += _histogram_targets(results.get("histograms"))
    rows += _exemplar_targets(results.get("exemplars"))
    memory = results["memory"]
    ratio = _ratio(
        memory["ron-metrics, after one scrape"],
        memory["prometheus_client, after one scrape"],
    )
    rows.append(
        (
            "memory held after one scrape ≤ 1.0× prometheus_client's",
            f"{ratio:.2f}× ({memory['ron-metrics, after one scrape']:.1f} vs "
            f"{memory['prometheus_client, after one scrape']:.1f} MiB)",
            "tracemalloc, the same series, fresh processes",
            ratio <= 1.0,
        )
    )
    rss = results["rss_scrapes"]
    growth = rss[-1] - rss[0]
    rows.append(
        (
            f"no RSS growth over {len(rss)} consecutive scrapes (≤ 1 MiB)",
            f"{growth:+.1f} MiB ({rss[0]:.1f} → {rss[-1]:.1f} MiB)",
            "RSS after the first and after the last scrape",
            growth <= 1.0,
        )
    )
    overhead = results["middleware"]["overhead"]
    ours = overhead["ron-metrics"]
    for peer, limit in (
        ("opentelemetry-instrumentation-asgi", 0.5),
        ("starlette_exporter", 1.0),
    ):
        ratio = _paired(ours, overhead[peer])
        rows.append(
            (
                f"HTTP middleware overhead ≤ {limit}× {peer}'s",
                f"{ratio:.2f}× ({ours.median:.1f} vs {overhead[peer].median:.1f} µs/request)",
                "same FastAPI app over ASGI in-process; median of per-round ratios",
                ratio <= limit,
            )
        )
    runtime = results.get("runtime_metrics")
    if runtime:
        cost = runtime["cost"].median
        rows.append(
            (
                "process and runtime metrics ≤ 1 ms per collection",
                f"{cost / 1000:.3f} ms ({runtime['ratio_to_peer']:.2f}× prometheus_client's"
                " default collectors)",
                "collection with them minus without; median of interleaved rounds",
                cost <= 1000,
            )
        )
        member = runtime["per_member"].median
        rows.append(
            (
                "per-worker process metrics ≤ 1 ms per group member at a scrape",
                f"{member / 1000:.3f} ms",
                "the serving process reading 8 idle members' /proc; median of rounds",
                member <= 1000,
            )
        )
    otlp = results["otlp"]
    ratio = _ratio(otlp["add_during_export"]["p99_us"], otlp["add_idle"]["p99_us"])
    rows.append(
        (
            "`add` p99 during an OTLP export ≤ 1.5× idle",
            f"{ratio:.2f}×",
            f"{otlp['series']:,} series exported to rotel",
            ratio <= 1.5,
        )
    )
    return rows


def _bar(path: Path, title: str, figures: dict[str, Figure], unit: str) -> None:
    names = list(figures)
    medians = [figures[n].median for n in names]
    low = [figures[n].median - min(figures[n].values) for n in names]
    high = [max(figures[n].values) - figures[n].median for n in names]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(names) + 1.5))
    ax.barh(names, medians, xerr=[low, high], color="#4a7ab5", capsize=3)
    ax.invert_yaxis()
    ax.set_xlabel(unit)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _scrape_plot(path: Path, scrape: dict[int, Any]) -> None:
    sizes = sorted(scrape)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in scrape[sizes[0]]:
        ax.plot(
            sizes, [scrape[n][name]["ms"].median for n in sizes], marker="o", label=name
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("series")
    ax.set_ylabel("ms per scrape (median)")
    ax.set_title("Scrape time")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _http_plot(path: Path, http: dict[str, Any]) -> None:
    labels: list[str] = []
    values: list[float] = []
    for server, paths in http.items():
        for route, by_conn in paths.items():
            for conns, figures in by_conn.items():
                labels.append(f"{server} {route} c{conns}")
                values.append(figures.get("rps", 0.0))
    fig, ax = plt.subplots(figsize=(9, 0.35 * len(labels) + 1.5))
    ax.barh(labels, values, color="#5b9e6b")
    ax.invert_yaxis()
    ax.set_xlabel("requests/s (wrk)")
    ax.set_title("HTTP on loopback")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _latency_lines(results: dict[str, Any]) -> list[str]:
    h = results["healthz_during_scrape"]
    frozen = results.get("healthz_during_scrape_frozen")
    s = results["steady"]
    lines = [
        "",
        "## Latency over HTTP (ron-metrics exposer)",
        "",
        f"- `/healthz` while a big scrape is in flight: p50 {h['p50_ms']:.2f} ms, p99 {h['p99_ms']:.2f} ms, "
        f"max {h['max_ms']:.2f} ms over {int(h['n'])} probes (that scrape: {h['scrape_ms']:.0f} ms median)",
        f"- `/healthz` with the same series and no scrape in flight: p50 {results['healthz_idle']['p50_ms']:.2f} ms, "
        f"p99 {results['healthz_idle']['p99_ms']:.2f} ms",
        f"- `/metrics`, 1k series, steady 5 rps: p50 {s['p50_ms']:.2f} ms, p95 {s['p95_ms']:.2f} ms, "
        f"p99 {s['p99_ms']:.2f} ms over {int(s['n'])} requests",
    ]
    if frozen:
        lines.append(
            f"- the same `/healthz` probes after `gc.freeze()` at start-up: p50 {frozen['p50_ms']:.2f} ms, "
            f"p99 {frozen['p99_ms']:.2f} ms, max {frozen['max_ms']:.2f} ms"
        )
    peer = results.get("steady_peer")
    if peer:
        lines.append(
            f"- prometheus_client's own HTTP server, same 1k series (no `_created`), steady 5 rps: "
            f"p50 {peer['p50_ms']:.2f} ms, p95 {peer['p95_ms']:.2f} ms, p99 {peer['p99_ms']:.2f} ms"
        )
    return lines


def _multiprocess_lines(found: dict[str, Any]) -> list[str]:
    scrapes, adds = found["scrape"], found["add"]
    workers = found["workers"]
    group = scrapes[f"ron group of {workers}"]
    peer = scrapes[f"prometheus_client multiprocess of {workers}"]
    lines = [
        "",
        f"## Multi-process mode ({workers} workers, {found['series']:,} counter series each)",
        "",
        "A scrape reads every worker's file, merges and encodes the text format (no HTTP);",
        "the single-process rows hold the same series in one process. `add` is one",
        "attribute set in a fresh interpreter per variant (prometheus_client:",
        "`labels(...).inc()`). Both libraries write every update through to a",
        "memory-mapped file in this mode.",
        "",
        "| scrape | ms |",
        "|---|---|",
    ]
    lines += [f"| {name} | {figure.text(1)} |" for name, figure in scrapes.items()]
    lines += ["", "| add | ns |", "|---|---|"]
    lines += [f"| {name} | {figure.text(0)} |" for name, figure in adds.items()]
    single = scrapes["ron single process"]
    lines += [
        "",
        f"- group scrape vs ours in one process: {_ratio(group.median, single.median):.2f}×;"
        f" vs prometheus_client's multiprocess scrape: {_ratio(group.median, peer.median):.2f}×",
        "- `add` in a group vs ours in one process:"
        f" {_ratio(adds['ron group member'].median, adds['ron single process'].median):.2f}×;"
        " prometheus_client multiprocess vs its single process:"
        f" {_ratio(adds['prometheus_client multiprocess'].median, adds['prometheus_client single process'].median):.2f}×",
        "",
    ]
    return lines


# (row, kind, ours, peer, limit): the fast path's targets, ratios in one run.
FAST_TARGETS = [
    (
        "`counter.add(1, attrs)`",
        "counter",
        "ron-metrics add(1, attrs)",
        "prometheus_client labels().inc()",
        0.5,
    ),
    (
        "bound `.add(1)`",
        "counter",
        "ron-metrics bound add(1)",
        "prometheus_client child inc()",
        1.0,
    ),
    (
        "`histogram.record(v, attrs)`",
        "histogram",
        "ron-metrics record(v, attrs)",
        "prometheus_client labels().observe()",
        0.6,
    ),
    (
        "bound `.record(v)`",
        "histogram",
        "ron-metrics bound record(v)",
        "prometheus_client child observe()",
        1.0,
    ),
]


def _fastpath_targets(found: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    rows: list[tuple[str, str, str, bool | None]] = []
    for label, kind, ours, peer, limit in FAST_TARGETS:
        ratio = _paired(found["single"][kind][ours], found["single"][kind][peer])
        rows.append(
            (
                f"{label} ≤ {limit}× {peer}",
                f"{ratio:.2f}×",
                "1 thread, median of per-round ns/op ratios",
                ratio <= limit,
            )
        )
    collection = found["collection"]
    ratio = _paired(
        collection["ron-metrics fast path (hub capture)"], collection["raw SDK collect"]
    )
    rows.append(
        (
            f"collection of {found['series']:,} series ≤ 0.4× the SDK's collect",
            f"{ratio:.2f}×",
            "hub capture (merge included) vs InMemoryMetricReader",
            ratio <= 0.4,
        )
    )
    memory = found["memory"]
    ratio = _ratio(memory["ron-metrics fast path"], memory["raw SDK"])
    rows.append(
        (
            f"memory per {found['series']:,} series ≤ 0.7× the SDK's",
            f"{ratio:.2f}× ({memory['ron-metrics fast path']:.1f} vs {memory['raw SDK']:.1f} MiB)",
            "tracemalloc around creating the series",
            ratio <= 0.7,
        )
    )
    return rows


def _fastpath_lines(found: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "## The fast path (synchronous instruments of the ron-metrics provider)",
        "",
        "Same work on every side: one attribute set / one label value per call; the same",
        '11 histogram buckets. "bound" is `ron_metrics.bind(...)`; prometheus_client\'s',
        '"child" is `labels(...)` resolved once. 8 threads share one instrument (wall time /',
        "total operations).",
        "",
        "| operation | 1 thread ns/op | 8 threads ns/op |",
        "|---|---|---|",
    ]
    for kind in ("counter", "histogram"):
        for name, figure in found["single"][kind].items():
            threaded = found["threads"][kind][name]
            lines.append(f"| {name} | {figure.text(0)} | {threaded.text(0)} |")
    lines += ["", "| collection / memory | value |", "|---|---|"]
    for name, figure in found["collection"].items():
        lines.append(f"| {name}, {found['series']:,} series | {figure.text(2)} ms |")
    for name, mib in found["memory"].items():
        lines.append(
            f"| {name}, memory to create {found['series']:,} series (growth) | {mib:.1f} MiB |"
        )
    lines.append("")
    return lines


PROM_LABELS = "prometheus_client labels()"
SHAPE_TARGET = 0.6
BOUND_TARGET = 0.8


def _shape_ratios(found: dict[str, Any], kind: str) -> dict[str, float]:
    """ron-metrics / prometheus_client labels() per shape (median of per-round ratios)."""
    return {
        shape: _paired(figures["ron-metrics"], figures[PROM_LABELS])
        for shape, figures in found["shapes"][kind].items()
    }


def headline(found: dict[str, Any]) -> list[str]:
    """The page's first figure: the worst realistic shape, not the best."""
    shape = found["headline"]
    parts = [
        f"{kind} {_shape_ratios(found, kind)[shape]:.2f}×"
        for kind in ("counter", "histogram")
    ]
    return [
        f"**Headline — the worst realistic call shape** ({shape}: three attributes in a new"
        " dict per call, the status code an int as the semantic conventions write it):"
        f" ron-metrics costs {' and '.join(parts)} prometheus_client's `labels(...)` call"
        " for the same work (median of per-round ratios; every shape is in the table below).",
        "",
    ]


def _shape_targets(found: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    rows: list[tuple[str, str, str, bool | None]] = []
    for kind in ("counter", "histogram"):
        ratios = _shape_ratios(found, kind)
        worst = max(ratios, key=lambda shape: ratios[shape])
        rows.append(
            (
                f"every {kind} call shape ≤ {SHAPE_TARGET}× prometheus_client `labels()`",
                f"worst {ratios[worst]:.2f}× ({worst})",
                "shape matrix; median of per-round ns/op ratios",
                ratios[worst] <= SHAPE_TARGET,
            )
        )
        bound = found["bound"][kind]
        ratio = _paired(bound["ron-metrics bound"], bound["prometheus_client child"])
        rows.append(
            (
                f"bound {kind} handle ≤ {BOUND_TARGET}× prometheus_client's child",
                f"{ratio:.2f}× (floor: {_paired(bound['ron-metrics bound'], bound['floor']):.2f}× the locked update)",
                "3 attributes, int status; median of per-round ratios",
                ratio <= BOUND_TARGET,
            )
        )
    return rows


def _shape_lines(found: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "## Every call shape (ns per call; ratio to prometheus_client `labels()`)",
        "",
        "Shapes: 1, 3 or 5 attributes (HTTP server attributes, always with",
        "`http.response.status_code`); the same dict object every call or a new dict literal;",
        "the status code as text or as an int; and at three attributes, new dict, int status:",
        "a `user.id` the allowlist drops that differs on every call, 100 rotating sets, and",
        "1,000 rotating sets past a cardinality limit of 100. Every candidate does the same",
        "work: the raw SDK has the same views (allowlist, limit); prometheus_client gets the",
        "same label values positionally (it turns the int into text itself); the floor is a",
        "dict of locked cells keyed by the label values, written for this table.",
        "",
    ]
    for kind in ("counter", "histogram"):
        ratios = _shape_ratios(found, kind)
        lines += [
            f"### {kind}",
            "",
            "| shape | ron-metrics | raw SDK | prometheus_client labels() | floor | ron-metrics / labels() |",
            "|---|---|---|---|---|---|",
        ]
        for shape, figures in found["shapes"][kind].items():
            cells = " | ".join(
                figures[name].text(0)
                for name in ("ron-metrics", "raw SDK", PROM_LABELS, "floor")
            )
            lines.append(f"| {shape} | {cells} | {ratios[shape]:.2f}× |")
        lines += [
            "",
            "| bound handle | ns per call |",
            "|---|---|",
        ]
        lines += [
            f"| {name} | {figure.text(0)} |"
            for name, figure in found["bound"][kind].items()
        ]
        lines.append("")
    return lines


def _middleware_lines(found: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "## HTTP middleware overhead (FastAPI, `GET /items/{item_id}`)",
        "",
        f"{found['requests']:,} requests per round through the ASGI interface in-process (no",
        "network), each variant in a fresh interpreter; overhead = the variant's time per",
        "request minus the bare app's in the same round. Every variant records a request",
        "duration histogram and in-flight requests; the OpenTelemetry ASGI middleware runs",
        "with an SDK MeterProvider and the no-op tracer (metrics only).",
        "",
        "| middleware | µs per request | overhead µs |",
        "|---|---|---|",
    ]
    for name, figure in found["per_request"].items():
        extra = found["overhead"].get(name)
        lines.append(
            f"| {name} | {figure.text(1)} | {extra.text(1) if extra else '—'} |"
        )
    lines.append("")
    return lines


def _histogram_targets(
    found: dict[str, Any] | None,
) -> list[tuple[str, str, str, bool | None]]:
    if not found:
        return []
    record = found["record"]
    exponential = record["ron-metrics exponential"]
    explicit = _paired(exponential, record["ron-metrics explicit"])
    sdk = _paired(exponential, record["raw SDK exponential"])
    how = "median of per-round ns/op ratios; 3 attributes, new dict, int status"
    return [
        (
            "exponential `record` ≤ 1.2× explicit-bucket `record` (fast path)",
            f"{explicit:.2f}×",
            how,
            explicit <= 1.2,
        ),
        (
            "exponential `record` ≤ 0.3× the raw SDK's exponential aggregation",
            f"{sdk:.2f}×",
            how,
            sdk <= 0.3,
        ),
    ]


def _histogram_lines(found: dict[str, Any] | None) -> list[str]:
    if not found:
        return []
    lines = [
        "",
        "## Exponential histograms",
        "",
        "`record` in the worst realistic shape: three attributes in a new dict per"
        " call, an int status code, a latency that varies per call (the same 4,096"
        " values for every candidate); the raw SDK with the same allowlist View.",
        "",
        "| candidate | ns/op |",
        "|---|---|",
    ]
    lines += [f"| {name} | {fig.text()} |" for name, fig in found["record"].items()]
    lines += [
        "",
        "A scrape of 1,000 histogram series holding the same recordings: the classic"
        " (explicit-bucket) histogram in the text format, the exponential one as a"
        " native histogram in the protobuf format; collection and encoding, no HTTP.",
        "",
        "| exposition | bytes | gzip bytes | ms (collect + encode) |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {name} | {row['bytes']:,} | {row['gzip_bytes']:,} | {row['time'].text(1)} |"
        for name, row in found["scrape"].items()
    ]
    return lines


def _exemplar_targets(
    found: dict[str, Any] | None,
) -> list[tuple[str, str, str, bool | None]]:
    if not found:
        return []
    rows: list[tuple[str, str, str, bool | None]] = []
    how = "median of per-round ns/op ratios against the same instrument, filter off"
    for span, limit in (
        ("no span", 1.05),
        ("unsampled span", 1.05),
        ("sampled span", 1.5),
    ):
        ratios = [
            _paired(figures[f"trace_based, {span}"], figures["always_off"])
            for figures in found.values()
        ]
        worst = max(ratios)
        measured = " / ".join(f"{r:.2f}×" for r in ratios)
        rows.append(
            (
                f"exemplars, {span}: `add` / `record` ≤ {limit}× the filter off",
                measured,
                how,
                worst <= limit,
            )
        )
    return rows


def _exemplar_lines(found: dict[str, Any] | None) -> list[str]:
    if not found:
        return []
    lines = [
        "",
        "## Exemplars",
        "",
        "The same instrument on two runtimes that differ only in the exemplar filter,"
        " interleaved: `always_off` (no exemplar work) and the default `trace_based`"
        " with no span, inside an unsampled span and inside a sampled span (the"
        " tracing SDK's own spans). Ratios are medians of per-round ratios.",
        "",
        "| shape | candidate | ns/op | × filter off |",
        "|---|---|---|---|",
    ]
    for shape, figures in found.items():
        off = figures["always_off"]
        for name, figure in figures.items():
            ratio = "1" if figure is off else f"{_paired(figure, off):.2f}×"
            lines.append(f"| {shape} | {name} | {figure.text()} | {ratio} |")
    return lines


def _runtime_lines(runtime: dict[str, Any] | None) -> list[str]:
    if not runtime:
        return []
    lines = [
        "",
        "## Process and runtime metrics (µs per collection)",
        "",
        "The same families on both sides: CPU, memory, descriptors, threads and"
        " garbage collection. prometheus_client's figure includes encoding its text;"
        " ours is the collection alone, measured as the difference of an otherwise"
        " empty runtime with and without them. Everywhere else on this page they are"
        " off on our side: the peers' registries there hold no process collectors.",
        "",
        "| candidate | µs per collection |",
        "|---|---|",
    ]
    lines += [f"| {name} | {fig.text()} |" for name, fig in runtime["figures"].items()]
    lines.append(
        f"| the families' own cost (on minus off) | {runtime['cost'].text()} |"
    )
    lines.append(
        "| in a group: per live member, read by the serving process"
        f" | {runtime['per_member'].text()} |"
    )
    return lines


def write(results: dict[str, Any], out: Path) -> Path:
    env = results["env"]
    _bar(
        out / "bench-hotpath-counter.png",
        "counter add / inc (ns per op)",
        results["hotpath"]["counter"],
        "ns/op",
    )
    _bar(
        out / "bench-hotpath-histogram.png",
        "histogram record / observe (ns per op)",
        results["hotpath"]["histogram"],
        "ns/op",
    )
    _scrape_plot(out / "bench-scrape.png", results["scrape"])
    if results.get("http"):
        _http_plot(out / "bench-http.png", results["http"])
    lines = [
        "# Benchmarks",
        "",
        (
            "**Smoke run** (tiny sizes, proves the suite runs; not for conclusions)."
            if results["smoke"]
            else "A full run. Absolute times drift on shared machines; read the ratios."
        ),
        "",
        f"- command: `{env['command']}` (from the repository root, after `make bootstrap`)",
        f"- machine: {env['machine']}, {env['cpus']} CPUs; Python {env['python']}; {env['date']}",
        "- packages: " + ", ".join(f"{k} {v}" for k, v in env["packages"].items()),
        "- every figure: median [min–max] over repeated runs; candidates run interleaved",
        "",
        *headline(results["shapes"]),
        "## Targets",
        "",
        "| target | measured | how | met |",
        "|---|---|---|---|",
    ]
    for target, measured, how, met in targets(results):
        lines.append(
            f"| {target} | {measured} | {how} | {'yes' if met else 'not measured' if met is None else '**no**'} |"
        )
    for kind in ("counter", "histogram"):
        lines += [
            "",
            f"## Hot path: {kind} (ns/op)",
            "",
            f"![{kind}](bench-hotpath-{kind}.png)",
            "",
            "| candidate | ns/op |",
            "|---|---|",
        ]
        lines += [
            f"| {name} | {fig.text()} |"
            for name, fig in results["hotpath"][kind].items()
        ]
    lines += ["", "## Hot path extras (ns/op)", "", "| case | ns/op |", "|---|---|"]
    lines += [
        f"| {name} | {fig.text()} |"
        for name, fig in results["hotpath"]["extras"].items()
    ]
    lines += [
        "",
        "## Scrape",
        "",
        "![scrape](bench-scrape.png)",
        "",
        "| series | candidate | ms per scrape | peak MiB during scrape | payload bytes |",
        "|---|---|---|---|---|",
    ]
    for n in sorted(results["scrape"]):
        for name, row in results["scrape"][n].items():
            lines.append(
                f"| {n:,} | {name} | {row['ms'].text(2)} | {row['peak_mib']:.1f} | {row['bytes']:,} |"
            )
    lines += [
        "",
        "## Memory held per series count (MiB, tracemalloc; filled, and after one scrape)",
        "",
        "| library | MiB |",
        "|---|---|",
    ]
    lines += [f"| {name} | {mib:.1f} |" for name, mib in results["memory"].items()]
    lines += _runtime_lines(results.get("runtime_metrics"))
    lines += _histogram_lines(results.get("histograms"))
    lines += _exemplar_lines(results.get("exemplars"))
    lines += _latency_lines(results)
    if results.get("http"):
        lines += [
            "",
            "## HTTP on loopback (wrk, 2 threads)",
            "",
            "![http](bench-http.png)",
            "",
            "| server | path | connections | req/s | p50 ms | p99 ms | non-2xx |",
            "|---|---|---|---|---|---|---|",
        ]
        for server, paths in results["http"].items():
            for route, by_conn in paths.items():
                for conns, f in by_conn.items():
                    lines.append(
                        f"| {server} | {route} | {conns} | {f.get('rps', 0):,.0f} | {f.get('p50_ms', float('nan')):.2f} | "
                        f"{f.get('p99_ms', float('nan')):.2f} | {int(f.get('non_2xx', 0))} |"
                    )
    else:
        lines += [
            "",
            "## HTTP on loopback",
            "",
            "wrk is not installed (Debian package `wrk`); skipped.",
        ]
    o = results["otlp"]
    lines += [
        "",
        "## OTLP (to a real rotel collector over gRPC)",
        "",
        f"- export of {o['series']:,} series (collect + encode + send): {o['export_ms'].text(1)} ms",
        "",
        "| add() latency | p50 µs | p99 µs | samples |",
        "|---|---|---|---|",
    ]
    for label, key in (
        ("idle", "add_idle"),
        ("during an export", "add_during_export"),
        ("during a collector outage", "add_during_outage"),
        ("during a live switch", "add_during_switch"),
    ):
        row = o[key]
        lines.append(
            f"| {label} | {row['p50_us']:.2f} | {row['p99_us']:.2f} | {int(row['n']):,} |"
        )
    lines += [
        "",
        f"The switch (otlp → prometheus, make-before-break) took {o['switch_seconds'] * 1000:.0f} ms.",
        "",
    ]
    lines += _multiprocess_lines(results["multiprocess"])
    lines += _middleware_lines(results["middleware"])
    lines += _fastpath_lines(results["fastpath"])
    lines += _shape_lines(results["shapes"])
    check_prose(READING)
    lines.append(READING)
    path = out / "benchmarks.md"
    path.write_text("\n".join(lines))
    return path
