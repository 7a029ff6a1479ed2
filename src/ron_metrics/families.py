"""
Self-metrics: ron-metrics' own counters, present from start even at zero.

Counters only appear in an export once they have a data point, so every family is
seeded with a zero increment on its known label sets at start. The PQ/ZK families
belong to host code (hybrid key exchange, proof verification); they are seeded
with ``algo="none"``/``role="none"``/``scheme="none"`` so the family exists and
dashboards can be built before the first failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from opentelemetry.metrics import Counter, Histogram, Meter

__all__ = ["REJECT_REASONS", "SelfMetrics"]


class _PrefixedMeter:
    """
    Creates our instruments with a name prefix (``service.self_metrics_prefix``).
    """

    def __init__(self, meter: Meter, prefix: str) -> None:
        self._meter = meter
        self._prefix = prefix

    def create_counter(self, name: str, **kwargs: Any) -> Counter:
        return self._meter.create_counter(self._prefix + name, **kwargs)

    def create_histogram(self, name: str, **kwargs: Any) -> Histogram:
        return self._meter.create_histogram(self._prefix + name, **kwargs)


REJECT_REASONS = (
    "method",
    "body",
    "oversize",
    "upgrade",
    "busy",
    "headers",
    "path",
    "cardinality",
    "connections",
    "malformed",
    "tls_probe",
    "name_collision",
    "group_file",
    "group_value",
)
TIMEOUT_OPS = ("read", "write", "idle", "render")
SINK_NAMES = ("prometheus", "otlp")
EXPOSITION_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


@dataclass(frozen=True, slots=True)
class SelfMetrics:
    """
    Handles to ron-metrics' own instruments.
    """

    rejected: Counter
    io_timeouts: Counter
    tls_handshake_failures: Counter
    service_restarts: Counter
    bus_lagged: Counter
    pq_kex_failures: Counter
    pq_verify_failures: Counter
    zk_verify_failures: Counter
    otlp_export_failures: Counter
    reload_failures: Counter
    exposition_latency: Histogram

    @classmethod
    def create(cls, meter: Meter, prefix: str = "") -> SelfMetrics:
        """
        Create every family on ``meter`` (names prefixed by ``prefix``), seeded at zero.
        """
        named = _PrefixedMeter(meter, prefix)
        metrics = cls(
            rejected=named.create_counter(
                "rejected_total",
                description="Requests or measurements rejected, by reason.",
            ),
            io_timeouts=named.create_counter(
                "io_timeouts_total", description="Exposer I/O timeouts, by operation."
            ),
            tls_handshake_failures=named.create_counter(
                "tls_handshake_failures_total",
                description="Failed TLS handshakes on the metrics listener.",
            ),
            service_restarts=named.create_counter(
                "service_restarts_total",
                description="Restarts of a supervised sink, by service.",
            ),
            bus_lagged=named.create_counter(
                "bus_lagged_total",
                description="Internal bus events a slow subscriber missed.",
            ),
            pq_kex_failures=named.create_counter(
                "pq_kex_failures_total",
                description="Post-quantum hybrid key exchange failures (host-reported).",
            ),
            pq_verify_failures=named.create_counter(
                "pq_verify_failures_total",
                description="Post-quantum signature verification failures (host-reported).",
            ),
            zk_verify_failures=named.create_counter(
                "zk_verify_failures_total",
                description="Zero-knowledge proof verification failures (host-reported).",
            ),
            otlp_export_failures=named.create_counter(
                "otlp_export_failures_total",
                description="OTLP exports that did not succeed.",
            ),
            reload_failures=named.create_counter(
                "reload_failures_total",
                description="Configuration reloads that were refused or rolled back.",
            ),
            exposition_latency=named.create_histogram(
                "exposition_latency",
                unit="s",
                description="Time to collect and encode one /metrics response.",
                explicit_bucket_boundaries_advisory=EXPOSITION_BUCKETS,
            ),
        )
        metrics._seed()
        return metrics

    def _seed(self) -> None:
        for reason in REJECT_REASONS:
            self.rejected.add(0, {"reason": reason})
        for op in TIMEOUT_OPS:
            self.io_timeouts.add(0, {"op": op})
        for service in SINK_NAMES:
            self.service_restarts.add(0, {"service": service})
        self.tls_handshake_failures.add(0)
        self.bus_lagged.add(0)
        self.pq_kex_failures.add(0, {"algo": "none", "role": "none"})
        self.pq_verify_failures.add(0, {"algo": "none", "role": "none"})
        self.zk_verify_failures.add(0, {"scheme": "none"})
        self.otlp_export_failures.add(0)
        self.reload_failures.add(0)
