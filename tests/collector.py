"""
Run the rotel OTLP collector on loopback and read what it received from its debug log.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from conftest import rotel_binary, stop_process
from ron_metrics.testing import reserved_port

_ATTR = re.compile(r"^\s+-> ([^:]+): (\w+)\((.*)\)$")
_BUCKET = re.compile(r"^Bucket ([\[(][^,]+), ([^\]]+)\], Count: (\d+)$")


@dataclass
class Point:
    metric: str
    attributes: dict[str, str]
    resource: dict[str, str]
    value: float | None = None
    count: float | None = None
    sum: float | None = None
    temporality: str = ""
    # Exponential histograms: the zero bucket's count and (lower, upper, count)
    # of every non-empty bucket rotel prints.
    zero_count: float | None = None
    buckets: list[tuple[float, float, int]] = field(default_factory=list)
    # (trace id, span id) of every exemplar, as rotel prints them (hex).
    exemplars: list[tuple[str, str]] = field(default_factory=list)


def _point_line(point: Point, line: str) -> None:
    # A data point's value, count or sum; an exemplar's trace id, then its span id.
    if line.startswith(("Value: ", "Count: ", "Sum: ")):
        name, _, number = line.partition(": ")
        setattr(point, name.lower(), float(number))
    elif line.startswith("-> Trace ID: "):
        point.exemplars.append((line.rpartition(" ")[2], ""))
    elif point.exemplars and line.startswith("-> Span ID: "):
        point.exemplars[-1] = (point.exemplars[-1][0], line.rpartition(" ")[2])


@dataclass
class Rotel:
    """
    One rotel-agent process (started and stopped by PID).
    """

    workdir: Path
    grpc_port: int = field(default_factory=reserved_port)
    http_port: int = field(default_factory=reserved_port)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def grpc_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/v1/metrics"

    def start(self) -> None:
        self.log_path = self.workdir / f"rotel-{time.monotonic_ns()}.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    rotel_binary(),
                    "start",
                    "--otlp-grpc-endpoint",
                    f"127.0.0.1:{self.grpc_port}",
                    "--otlp-http-endpoint",
                    f"127.0.0.1:{self.http_port}",
                    "--exporter",
                    "blackhole",
                    "--debug-log",
                    "metrics",
                    "--debug-log-verbosity",
                    "detailed",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "NO_COLOR": "1"},
            )
        # Ready means both receivers accept connections, however slow the start.
        deadline = time.monotonic() + 60
        waiting = [self.grpc_port, self.http_port]
        while waiting and time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"rotel exited with {self.process.returncode}")
            try:
                socket.create_connection(("127.0.0.1", waiting[0]), timeout=1).close()
                waiting.pop(0)
            except OSError:
                time.sleep(0.05)
        if waiting:
            raise RuntimeError(f"rotel did not listen on {waiting}")

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """
        Hold the collector still (SIGSTOP by PID): connections queue, nothing answers.
        """
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, grace=10)
        self.process = None

    def text(self) -> str:
        logs = sorted(self.workdir.glob("rotel-*.log"))
        return "".join(path.read_text(errors="replace") for path in logs)

    def points(self) -> list[Point]:
        points: list[Point] = []
        resource: dict[str, str] = {}
        metric = ""
        temporality = ""
        section = ""
        current: Point | None = None
        for line in self.text().splitlines():
            stripped = line.strip()
            if stripped.startswith("ResourceMetrics #"):
                resource, section = {}, "resource"
            elif stripped == "Resource attributes:":
                section = "resource"
            elif stripped.startswith("-> Name: "):
                metric, section = stripped[len("-> Name: ") :], "descriptor"
                temporality = ""
            elif stripped.startswith("-> AggregationTemporality: "):
                temporality = stripped.rsplit("_", 1)[-1].lower()
            elif stripped.startswith(
                (
                    "NumberDataPoints #",
                    "HistogramDataPoints #",
                    "ExponentialHistogramDataPoints #",
                )
            ):
                current = Point(
                    metric=metric,
                    attributes={},
                    resource=dict(resource),
                    temporality=temporality,
                )
                points.append(current)
                section = "point"
            elif stripped == "Data point attributes:":
                section = "attributes"
            elif (match := _ATTR.match(line)) and section in {"resource", "attributes"}:
                target = (
                    resource
                    if section == "resource"
                    else current.attributes
                    if current
                    else {}
                )
                target[match.group(1)] = match.group(3)
            elif current is not None and (match := _BUCKET.match(stripped)):
                low, high, count = match.groups()
                if low == "[0":
                    current.zero_count = float(count)
                elif int(count):
                    bounds = (float(low[1:]), float(high), int(count))
                    current.buckets.append(bounds)
            elif current is not None:
                _point_line(current, stripped)
        return points

    def latest(self, metric: str, **attributes: str) -> Point | None:
        found = None
        for point in self.points():
            if point.metric == metric and all(
                point.attributes.get(k) == v for k, v in attributes.items()
            ):
                found = point
        return found

    def wait_for(
        self, metric: str, predicate: object, timeout: float = 20, **attributes: str
    ) -> Point | None:
        deadline = time.monotonic() + timeout
        point = None
        while time.monotonic() < deadline:
            point = self.latest(metric, **attributes)
            if point is not None and predicate(point):  # type: ignore[operator]  # a callable passed as object
                return point
            time.sleep(0.2)
        return point
