"""
The OTLP push sink: every ``interval``, capture one collection from the hub and export it.

- Exports run on one owned thread (``ron-metrics-otlp``): at most one export is in flight
  and there is no queue — a slow collector delays the next tick, it never piles up data or
  blocks the application's ``counter.add()``.
- Health is judged from the exporter's own result (``force_flush()`` is not trusted: it
  reports success even when the export failed): after ``failure_threshold`` consecutive failures readiness reports
  ``otlp: otlp_export_failing``; the first success clears it.
- Failures are counted in ``otlp_export_failures_total`` and logged at a bounded rate.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult

from ron_metrics.config.model import OtlpConfig
from ron_metrics.errors import ExporterError
from ron_metrics.exporters._delta import DeltaConverter
from ron_metrics.families import SelfMetrics
from ron_metrics.hub import HubReader
from ron_metrics.logs import log_event
from ron_metrics.safety import read_checked

__all__ = ["OtlpSink", "build_exporter"]

_log = logging.getLogger("ron_metrics.otlp")
FAILURE_LOG_INTERVAL = 30.0
FAILING_REASON = "otlp_export_failing"


def _tls_material(
    config: OtlpConfig,
) -> tuple[bytes | None, bytes | None, bytes | None]:
    # The same file checks as the exposer's own TLS files: no symlinks we do not
    # trust, regular files we own, private keys not readable by others.
    prefix = "exporter.otlp."
    ca = (
        read_checked(config.ca_file, f"{prefix}ca_file", private=False)
        if config.ca_file
        else None
    )
    cert = key = None
    if config.client_cert and config.client_key:
        cert = read_checked(config.client_cert, f"{prefix}client_cert", private=False)
        key = read_checked(config.client_key, f"{prefix}client_key", private=True)
    return ca, cert, key


def build_exporter(config: OtlpConfig) -> MetricExporter:
    """
    Build the OTLP exporter for ``config.protocol`` with every setting passed explicitly.

    Raises:
        ConfigError: If the CA file cannot be read.
    """
    endpoint = config.resolved_endpoint
    headers = dict(config.headers)
    if config.protocol == "grpc":
        import grpc
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
            OTLPMetricExporter as GrpcExporter,
        )

        compression = {
            "none": grpc.Compression.NoCompression,
            "gzip": grpc.Compression.Gzip,
            "deflate": grpc.Compression.Deflate,
        }[config.compression]
        secure = endpoint.startswith("https://")
        credentials = None
        if secure:
            ca, cert, key = _tls_material(config)
            credentials = grpc.ssl_channel_credentials(  # type: ignore[no-untyped-call]  # grpc ships no annotations
                root_certificates=ca, private_key=key, certificate_chain=cert
            )
        return GrpcExporter(
            endpoint=endpoint,
            insecure=not secure,
            credentials=credentials,
            headers=headers,
            timeout=config.timeout,
            compression=compression,
        )
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
        OTLPMetricExporter as HttpExporter,
    )

    # Checked here (a ConfigError naming the key); the HTTP client then loads them.
    _tls_material(config)
    return HttpExporter(
        endpoint=endpoint,
        session=_session_keeping_own_ca(),
        certificate_file=config.ca_file,
        client_certificate_file=config.client_cert,
        client_key_file=config.client_key,
        headers=headers,
        timeout=config.timeout,
        compression=Compression(config.compression),
    )


def _session_keeping_own_ca() -> Any:
    import requests

    class _OwnCaSession(requests.Session):
        """
        A session whose own CA bundle wins over ``REQUESTS_CA_BUNDLE``.

        requests lets that variable replace a session-level ``verify`` on every
        request, so a configured ``ca_file`` would be ignored wherever the variable
        is set (common in containers) and the collector's certificate rejected.
        """

        def merge_environment_settings(self, *args: Any, **kwargs: Any) -> Any:
            merged = super().merge_environment_settings(*args, **kwargs)
            if self.verify is not True:
                merged["verify"] = self.verify
            return merged

    return _OwnCaSession()


class OtlpSink:
    """
    Periodic OTLP export from the hub, on one owned thread.
    """

    name = "otlp"

    def __init__(
        self,
        config: OtlpConfig,
        *,
        hub: HubReader,
        self_metrics: SelfMetrics,
        exporter: MetricExporter | None = None,
    ) -> None:
        self.config = config
        self._hub = hub
        self._self_metrics = self_metrics
        self._exporter = exporter or build_exporter(config)
        # Delta (and low-memory) preference: deltas computed from the cumulative hub.
        self._delta = DeltaConverter() if config.temporality != "cumulative" else None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self.crashed: Exception | None = None
        self._export_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._consecutive_failures = 0
        self._last_failure_log = 0.0
        self.exports_ok = 0
        self.exports_failed = 0

    async def start(self) -> None:
        """
        Start the export thread; its first export runs at once (the sink's proof).
        """
        self._start_thread()

    def _start_thread(self) -> None:
        self._thread = threading.Thread(
            target=self._loop, name="ron-metrics-otlp", daemon=True
        )
        self._thread.start()

    def proven(self, timeout: float) -> bool:
        """
        Wait up to ``timeout`` for the first export; True if one has succeeded.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.exports_ok:
                return True
            if self._stop.wait(0.02):
                break
        return self.exports_ok > 0

    async def prove(self, deadline: float) -> None:
        """
        Wait for one successful export (off the loop).

        Raises:
            ExporterError: If none succeeded by ``deadline``.
        """
        remaining = max(0.1, deadline - time.monotonic())
        if not await asyncio.to_thread(self.proven, remaining):
            raise ExporterError(
                "the new OTLP sink made no successful export to"
                f" {self.config.shown_endpoint} before the deadline"
            )

    def describe(self) -> Mapping[str, str]:
        """
        ``{"endpoint": ...}`` (headers, which may hold secrets, are never shown).
        """
        return {"endpoint": self.config.shown_endpoint}

    def readiness_check(self) -> str | None:
        """
        ``None`` after a successful export; failing after ``failure_threshold`` failures.
        """
        if not self.alive() and not self._stop.is_set():
            return "export thread down"
        if self._consecutive_failures >= self.config.failure_threshold:
            return FAILING_REASON
        if not self.exports_ok:
            return "not yet reported"
        return None

    def alive(self) -> bool:
        """
        True while the export thread runs.
        """
        return self._thread is not None and self._thread.is_alive()

    def export_once(self, timeout: float | None = None) -> bool:
        """
        Capture one collection and export it now (serialized with the loop).

        Returns:
            True when the exporter reported success.
        """
        timeout = self.config.timeout if timeout is None else timeout
        # Never wait longer than the export's own budget for a running export.
        if not self._export_lock.acquire(timeout=timeout):
            return False
        try:
            exported: Callable[[], None] | None = None
            try:
                data = self._hub.capture(timeout_millis=timeout * 1000)
                if data is None:
                    # The reader hook did not hand over a collection: nothing was
                    # exported, so this is no success.
                    self._record(ok=False, error="the collection produced no data")
                    return False
                if self._delta is not None:
                    data, exported = self._delta.convert(data)
                result = self._exporter.export(data, timeout_millis=timeout * 1000)
            except Exception as exc:
                self._record(ok=False, error=repr(exc))
                return False
            ok = result is MetricExportResult.SUCCESS
            if ok and exported is not None:
                exported()
            self._record(ok=ok, error=None if ok else "exporter reported failure")
            return ok
        finally:
            self._export_lock.release()

    def _record(self, *, ok: bool, error: str | None) -> None:
        if ok:
            self.exports_ok += 1
            if self._consecutive_failures:
                log_event(
                    _log,
                    logging.INFO,
                    "otlp_export_recovered",
                    after=self._consecutive_failures,
                )
            self._consecutive_failures = 0
        else:
            self.exports_failed += 1
            self._consecutive_failures += 1
            self._self_metrics.otlp_export_failures.add(1)
            now = time.monotonic()
            if now - self._last_failure_log >= FAILURE_LOG_INTERVAL:
                self._last_failure_log = now
                log_event(
                    _log,
                    logging.WARNING,
                    "otlp_export_failed",
                    endpoint=self.config.shown_endpoint,
                    consecutive=self._consecutive_failures,
                    error=error,
                )

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                self.export_once()
                if self._wake.wait(self.config.interval) and self._stop.is_set():
                    return
        except Exception as exc:
            self.crashed = exc
            log_event(_log, logging.ERROR, "otlp_sink_crashed", error=repr(exc))

    async def restart(self) -> None:
        """
        Start a fresh export thread after the previous one died.
        """
        self._wake.clear()
        self.crashed = None
        self._start_thread()

    async def stop(self, deadline: float, *, flush: bool = True) -> None:
        """
        Stop the loop, export once more (``flush``) by ``deadline``, close the exporter.

        Runs off the loop: joining the thread and the final export block.
        """
        await asyncio.to_thread(
            self.stop_blocking, max(0.0, deadline - time.monotonic()), flush=flush
        )

    def stop_blocking(self, timeout: float, *, flush: bool = True) -> None:
        """
        Stop the loop, export once more (the final flush) within ``timeout``, close the exporter.
        """
        deadline = time.monotonic() + timeout
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
        remaining = deadline - time.monotonic()
        if flush and remaining > 0.05:
            self.export_once(timeout=min(self.config.timeout, remaining))
        try:
            self._exporter.shutdown(
                timeout_millis=max(0.0, deadline - time.monotonic()) * 1000
            )
        except Exception as exc:
            log_event(_log, logging.WARNING, "otlp_shutdown_failed", error=repr(exc))
