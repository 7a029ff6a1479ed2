from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.peer
@pytest.mark.timeout(900)  # the whole benchmark suite; its own bound is 600 s
def test_benchmark_suite_runs_in_smoke_mode(tmp_path: Path) -> None:
    """The benchmark suite still runs end to end and writes its report and plots."""
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "run.py"),
            "--smoke",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = (tmp_path / "benchmarks.md").read_text()
    assert "## Targets" in report
    assert "| ron-metrics (prometheus) |" in report
    assert "naive OTel (PrometheusMetricReader + generate_latest)" in report
    # The headline is the worst realistic shape, and every shape has its row.
    assert (
        "**Headline — the worst realistic call shape** (3 attrs, new dict, int status"
        in report
    )
    assert "| 5 attrs, new dict, int status |" in report
    assert "1,000 rotating sets past max_series 100 |" in report
    assert "| process and runtime metrics ≤ 1 ms per collection |" in report
    assert "| the families' own cost (on minus off) |" in report
    for plot in (
        "bench-hotpath-counter.png",
        "bench-hotpath-histogram.png",
        "bench-scrape.png",
    ):
        assert (tmp_path / plot).stat().st_size > 1000
    assert "wrote" in result.stderr  # the progress display reached the end


@pytest.mark.peer
@pytest.mark.timeout(600)  # every drill; their own bound is 300 s
def test_attack_drills_run_in_smoke_mode(tmp_path: Path) -> None:
    """The attack drills still run and write their figures section."""
    target = tmp_path / "security.md"
    target.write_text(
        "# Security\n\n<!-- figures:start -->\nstale figures\n<!-- figures:end -->\n\ntail\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "attacks.py"),
            "--smoke",
            "--out",
            str(target),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    text = target.read_text()
    assert "stale figures" not in text
    assert text.endswith("tail\n")
    drills = ("Slowloris", "Flood", "Cardinality bomb", "Collector down")
    for drill in (*drills, "Send and close", "Stuck readers that close"):
        assert f"**{drill}**" in text


def test_benchmark_prose_states_no_figures() -> None:
    """Figures live in tables of the same run; prose that states one is refused."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import report  # type: ignore[import-not-found]  # a script directory
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    report.check_prose(report.READING)
    for stale in (
        "cuts the p99 by 86 ms",
        "8.5 MiB per 10k series",
        "0.31\u00d7 the peer",
    ):
        with pytest.raises(ValueError, match="prose states a figure"):
            report.check_prose(stale)
