"""
The scrape pipeline: which collection and which encoder serve ``/metrics``.

``encoder = "direct"`` (the default) writes the exposition straight from the SDK's
``MetricsData``; ``"reference"`` takes opentelemetry-exporter-prometheus's
translate-then-encode path. Both write the same text bytes; the reference stays
selectable as the oracle the direct encoder is tested against. Only the direct
pipeline writes the protobuf exposition (the reference path has none): with
``"reference"`` a scraper asking for protobuf gets text.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from typing import Any

from opentelemetry.sdk.metrics.export import MetricsData

from ron_metrics.config.model import PrometheusConfig
from ron_metrics.exporters.prometheus.encode import DirectEncoder
from ron_metrics.exporters.prometheus.protobuf import ProtoEncoder
from ron_metrics.exporters.prometheus.render import (
    Format,
    Rendered,
    finish,
    finish_streaming,
    render,
)
from ron_metrics.exporters.prometheus.scrape import ScrapeCoalescer
from ron_metrics.hub import HubReader

__all__ = ["scrape_pipeline"]


def scrape_pipeline(
    config: PrometheusConfig,
    hub: HubReader,
    executor: concurrent.futures.Executor,
    collect: Callable[[], MetricsData] | None = None,
) -> ScrapeCoalescer:
    """
    A single-flight collector + renderer for ``config.encoder``, running on ``executor``.

    ``collect`` replaces this process's own collection (a multi-process group's
    totals); it is always written by the direct encoder.
    """
    max_bytes = config.max_response_bytes
    if config.encoder == "reference" and collect is None:

        def render_reference(families: Any, fmt: Format, gzip_ok: bool) -> Rendered:
            return render(families, fmt, gzip_ok=gzip_ok, max_bytes=max_bytes)

        return ScrapeCoalescer(hub.scrape, render_reference, executor)
    direct = DirectEncoder(
        target_info=hub.target_info,
        scope_labels=hub.scope_labels,
        on_clash=hub.report_clash,
    )

    def own() -> MetricsData:
        return hub.capture() or MetricsData(resource_metrics=[])

    proto = ProtoEncoder(
        target_info=hub.target_info,
        scope_labels=hub.scope_labels,
        on_clash=hub.report_clash,
    )

    def render_direct(data: MetricsData, fmt: Format, gzip_ok: bool) -> Rendered:
        if fmt is Format.PROTOBUF:
            body = proto.encode(data)
            return finish(body, fmt, gzip_ok=gzip_ok, max_bytes=max_bytes)
        if gzip_ok:
            # Compressed as it is written: never a second full copy.
            return finish_streaming(direct.chunks(data, fmt), fmt, max_bytes=max_bytes)
        return finish(direct.encode(data, fmt), fmt, gzip_ok=False, max_bytes=max_bytes)

    return ScrapeCoalescer(collect or own, render_direct, executor, protobuf=True)
