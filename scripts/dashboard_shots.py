"""
Render the Grafana dashboard's panels from a real run, as PNGs for the docs.

    .venv/bin/python scripts/dashboard_shots.py [--seconds 90] [--out docs/dashboard]

Runs examples/fastapi_app.py on uvicorn (ron-metrics and its middleware), a real
Prometheus (Debian package) scraping it every second, and a traffic mix — item
requests at a changing rate, some 503s, a few requests the exposer refuses (a bare
LF, a POST, a wrong path). Then every panel's query of dashboards/ron-metrics.json
is run as a range query against that Prometheus and plotted, one PNG per panel and
one overview. Grafana itself is not needed: these are plotted equivalents.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

import httpx
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DASHBOARD = ROOT / "dashboards" / "ron-metrics.json"
_RNG = random.Random(7)  # noqa: S311 - the traffic's shape, not a secret


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait(url: str) -> None:
    for _ in range(300):
        try:
            httpx.get(url, timeout=1)
        except httpx.HTTPError:
            time.sleep(0.1)
            continue
        return
    raise SystemExit(f"{url} did not come up")


def _refused(port: int, raw: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(raw)
        with contextlib.suppress(OSError):
            sock.recv(4096)


def _traffic(app: str, metrics_port: int, seconds: float) -> None:
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < seconds:
        # A rate that rises and falls, so the panels show a shape.
        rate = 20 + 15 * (
            1 + (elapsed % 30) / 15 if elapsed % 30 < 15 else 3 - (elapsed % 30) / 15
        )
        for _ in range(int(rate / 5)):
            item = _RNG.randint(1, 500)
            httpx.get(f"{app}/items/{item}", timeout=5)
            if _RNG.random() < 0.05:
                httpx.get(f"{app}/fail", timeout=5)
        if _RNG.random() < 0.3:
            _refused(metrics_port, b"GET /metrics HTTP/1.1\nHost: x\n\n")
        if _RNG.random() < 0.2:
            _refused(metrics_port, b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        if _RNG.random() < 0.1:
            _refused(metrics_port, b"GET /admin HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.2)


def _prometheus(target: str, directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    config = directory / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n  - job_name: api\n    static_configs:\n"
        f"      - targets: ['{target}']\n"
    )
    process = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return process, f"http://127.0.0.1:{port}"


def _concrete(expr: str, seconds: float) -> str:
    expr = expr.replace('job=~"$job"', 'job=~".*"').replace(
        'instance=~"$instance"', 'instance=~".*"'
    )
    return expr.replace("$__rate_interval", "15s").replace(
        "$__range", f"{int(seconds)}s"
    )


def _series(base: str, expr: str, start: float, end: float) -> list[dict[str, Any]]:
    query = urllib.parse.urlencode(
        {"query": expr, "start": start, "end": end, "step": 2}
    )
    response = httpx.get(f"{base}/api/v1/query_range?{query}", timeout=30)
    data = response.json()
    if data.get("status") != "success":
        raise SystemExit(f"query failed: {expr}: {data}")
    result: list[dict[str, Any]] = data["data"]["result"]
    return result


def _legend(template: str, labels: dict[str, str]) -> str:
    return re.sub(
        r"\{\{(\w+)\}\}", lambda m: labels.get(m.group(1), ""), template
    ).strip()


def _plot(ax: Any, panel: dict[str, Any], base: str, start: float, end: float) -> None:
    ax.set_title(panel["title"], fontsize=9)
    seconds = end - start
    drawn = False
    for target in panel["targets"]:
        for series in _series(base, _concrete(target["expr"], seconds), start, end):
            points = [(float(t) - start, float(v)) for t, v in series["values"]]
            xs, ys = zip(*points, strict=True) if points else ((), ())
            ax.plot(
                xs,
                ys,
                label=_legend(target["legendFormat"], series["metric"]) or "value",
            )
            drawn = True
    if drawn:
        ax.legend(fontsize=6, loc="upper left")
    else:
        ax.text(0.5, 0.5, "no data in this run", ha="center", va="center", fontsize=8)
    ax.set_xlabel("seconds", fontsize=7)
    ax.set_ylabel(panel["fieldConfig"]["defaults"].get("unit", ""), fontsize=7)
    ax.tick_params(labelsize=7)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=90)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "dashboard")
    args = parser.parse_args()
    panels = [
        p for p in json.loads(DASHBOARD.read_text())["panels"] if p["type"] != "row"
    ]
    app_port, metrics_port = _free_port(), _free_port()
    env = dict(
        os.environ,
        RON_METRICS_EXPORTER__PROMETHEUS__BIND=f"127.0.0.1:{metrics_port}",
        PYTHONPATH=str(ROOT),
    )
    with tempfile.TemporaryDirectory() as scratch:
        app = subprocess.Popen(
            [str(BIN / "uvicorn"), "--port", str(app_port), "examples.fastapi_app:app"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        prometheus, base = _prometheus(f"127.0.0.1:{metrics_port}", Path(scratch))
        try:
            _wait(f"http://127.0.0.1:{app_port}/healthz")
            _wait(f"{base}/-/ready")
            start = time.time()
            _traffic(f"http://127.0.0.1:{app_port}", metrics_port, args.seconds)
            time.sleep(3)  # the last scrapes
            end = time.time()
            args.out.mkdir(parents=True, exist_ok=True)
            for panel in panels:
                figure, ax = plt.subplots(figsize=(6, 3.2))
                _plot(ax, panel, base, start, end)
                figure.tight_layout()
                slug = re.sub(r"[^a-z0-9]+", "-", panel["title"].lower()).strip("-")
                figure.savefig(args.out / f"{slug}.png", dpi=110)
                plt.close(figure)
            columns = 3
            rows = (len(panels) + columns - 1) // columns
            figure, axes = plt.subplots(rows, columns, figsize=(16, 3.2 * rows))
            for ax, panel in zip(axes.flat, panels, strict=False):
                _plot(ax, panel, base, start, end)
            for ax in list(axes.flat)[len(panels) :]:
                ax.axis("off")
            figure.suptitle(
                f"ron-metrics dashboard, plotted from a {int(args.seconds)} s run"
            )
            figure.tight_layout()
            figure.savefig(args.out / "overview.png", dpi=90)
            plt.close(figure)
        finally:
            for process in (app, prometheus):
                process.terminate()
                process.wait(15)
    print(f"wrote {len(panels) + 1} images to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
