"""
Exemplars on the fast path: which measurements keep one, and what is kept.

The exemplar filter decides as the SDK's does. ``trace_based`` keeps a
measurement made while a sampled span is current. ``always_on`` keeps every
measurement, with trace and span ids when a span is current. ``always_off``
keeps none and costs nothing: the instruments then hold no probe.

What is kept, per series, is bounded and replaced, never grown:

- a counter or up-down counter: the latest exemplar;
- an explicit-bucket histogram: the latest exemplar of each bucket;
- an exponential histogram: up to :data:`EXPONENTIAL_KEPT` (at most ``max_size``),
  the latest of each power of two of the value (its binary exponent modulo the
  number of slots), so they spread over the range as bucket exemplars do.

An exemplar stays until a newer one replaces it, so every scrape shows the
latest trace of each bucket (a delta export keeps only the ones taken since the
previous export). Attributes the view drops are not copied into the exemplar: an
allowlist keeps a value out of every output, exemplars included.

The no-span case is the one that must cost nearly nothing: one context-variable
read, found empty. For a span, the verdict for the current context object is
remembered, so the many measurements of one request decide once.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from math import frexp
from time import time_ns
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
from opentelemetry.sdk.metrics import Exemplar
from opentelemetry.trace.propagation import _SPAN_KEY

from ron_metrics.multiprocess.exemplar_record import EXPONENTIAL_KEPT, writer_of

__all__ = [
    "EXPONENTIAL_KEPT",
    "LAST",
    "QUIET",
    "Kept",
    "Probe",
    "exemplars_of",
    "keep_latest",
    "keep_observed",
    "probe_for",
]


# (value, time in ns, span context or None): one tuple, written in one store.
Kept = tuple[float, int, Any]
# The current context (or a stand-in when every measurement is kept); empty
# (false) when no exemplar can be taken.
Probe = Callable[[], Any]

_ALWAYS: dict[str, Any] = {"always": True}  # always_on with no span: keep, no ids
# The last verdict: (context object, its sampled span context or None). Replaced
# whole, in one store, so threads never see half of one.
LAST: list[tuple[Any, Any]] = [(None, None)]
# The last context found with no sampled span: the instruments check it inline,
# so the measurements of an unsampled request after its first cost no call.
QUIET: list[Any] = [None]


def _current_context() -> Callable[[], Any]:
    # The context variable itself when the default runtime context is in use
    # (the read the API would do, without two calls around it).
    runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
    if isinstance(runtime, ContextVarsRuntimeContext):
        getter: Callable[[], Any] = runtime._current_context.get
        return getter
    return otel_context.get_current


def probe_for(exemplar_filter: str) -> tuple[Probe | None, bool]:
    """
    The instruments' probe for ``exemplar_filter`` and whether every measurement
    is kept (``always_on``); no probe for ``always_off``.
    """
    if exemplar_filter == "always_off":
        return None, False
    current = _current_context()
    if exemplar_filter == "always_on":
        return (lambda: current() or _ALWAYS), True
    return current, False


def _span_context(context: Any) -> Any:
    """The sampled span context current in ``context``, or ``None``."""
    span = context.get(_SPAN_KEY)
    found = None
    if span is not None:
        span_context = span.get_span_context()
        if span_context.is_valid and span_context.trace_flags.sampled:
            found = span_context
    LAST[0] = (context, found)
    if found is None:
        QUIET[0] = context
    return found


def keep_latest(cell: Any, amount: float, context: Any, always: bool) -> None:
    """A counter's exemplar: this measurement, when the filter keeps it."""
    last = LAST[0]
    span = last[1] if last[0] is context else _span_context(context)
    if span is None and not always:
        return
    at = time_ns()
    cell.exemplar = (amount, at, span)
    if cell.shared is not None:
        writer_of(cell.shared).write(0, amount, at, span)


def keep_observed(cell: Any, amount: float, context: Any, always: bool) -> None:
    """
    A histogram's exemplar: the latest of its bucket (explicit buckets), or of
    its power of two (exponential: ``min(20, max_size)`` slots, a value's binary
    exponent modulo that).
    """
    last = LAST[0]
    span = last[1] if last[0] is context else _span_context(context)
    if span is None and not always:
        return
    at = time_ns()
    kept = cell.exemplars
    if cell.exponential is not None:
        slots = min(EXPONENTIAL_KEPT, cell.shape[0])
        slot = frexp(amount)[1] % slots
    else:
        slots = len(cell.counts)
        slot = bisect_left(cell.bounds, amount)
    if kept is None:
        kept = cell.exemplars = [None] * slots
    kept[slot] = (amount, at, span)
    if cell.shared is not None:
        writer_of(cell.shared).write(slot, amount, at, span)


def exemplars_of(kept: Any, since: int = 0) -> tuple[Exemplar, ...]:
    """
    The SDK's exemplars for what a cell keeps (one ``Kept`` tuple, a list of
    them with empty slots, or ``None``), oldest first; only those taken after
    ``since`` (ns).
    """
    if kept is None:
        return ()
    if kept.__class__ is tuple:
        kept = (kept,)
    found = sorted(
        (one for one in kept if one is not None and one[1] > since),
        key=lambda one: one[1],
    )
    return tuple(
        Exemplar(
            None,
            value,
            at,
            None if span is None else span.span_id,
            None if span is None else span.trace_id,
        )
        for value, at, span in found
    )
