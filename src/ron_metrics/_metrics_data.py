"""
Rewriting a collection's metrics while keeping its resource and scope structure.
"""

from __future__ import annotations

from collections.abc import Callable

from opentelemetry.sdk.metrics.export import (
    Metric,
    MetricsData,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

__all__ = ["map_metrics"]


def map_metrics(
    data: MetricsData,
    change: Callable[[InstrumentationScope, Metric], Metric | None],
) -> MetricsData:
    """
    ``data`` with every metric replaced by ``change(scope, metric)`` (left out
    where that is ``None``).
    """
    return MetricsData(
        resource_metrics=[
            ResourceMetrics(
                resource=rm.resource,
                schema_url=rm.schema_url,
                scope_metrics=[
                    ScopeMetrics(
                        scope=sm.scope,
                        schema_url=sm.schema_url,
                        metrics=[
                            changed
                            for metric in sm.metrics
                            if (changed := change(sm.scope, metric)) is not None
                        ],
                    )
                    for sm in rm.scope_metrics
                ],
            )
            for rm in data.resource_metrics
        ]
    )
