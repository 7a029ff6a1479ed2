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
    data: MetricsData, change: Callable[[InstrumentationScope, Metric], Metric]
) -> MetricsData:
    """
    ``data`` with every metric replaced by ``change(scope, metric)``.
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
                        metrics=[change(sm.scope, metric) for metric in sm.metrics],
                    )
                    for sm in rm.scope_metrics
                ],
            )
            for rm in data.resource_metrics
        ]
    )
