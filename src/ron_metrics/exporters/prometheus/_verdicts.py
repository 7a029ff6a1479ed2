"""
Verdicts handed from the wire to the app: the scope key and the per-server table.

The canonical head the wire layer gives hypercorn carries a one-time token in
:data:`VERDICT_HEADER`; :class:`VerdictApp` swaps that token for the
:class:`~guards.Verdict` object, which the app reads from the ASGI scope.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from ron_metrics.exporters.prometheus.guards import (
    Verdict,
)

__all__ = ["VERDICT_HEADER", "VERDICT_SCOPE_KEY", "VerdictApp", "VerdictTable"]

# The canonical head names its verdict in this header; the app finds it in the scope.
VERDICT_HEADER = b"x-ron-metrics-verdict"
VERDICT_SCOPE_KEY = "ron_metrics.verdict"


class VerdictTable:
    """
    Verdicts waiting for the app, keyed by an unguessable per-request token.

    The canonical head carries the token; the app takes the verdict back out and
    answers from it. A client cannot name a token: client headers of that name
    are never forwarded.
    """

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(12)
        self._next = 0
        self._waiting: dict[str, tuple[Verdict, Callable[[], None]]] = {}

    def put(self, verdict: Verdict, on_done: Callable[[], None]) -> bytes:
        self._next += 1
        token = f"{self._prefix}-{self._next}"
        self._waiting[token] = (verdict, on_done)
        return token.encode("ascii")

    def take(self, token: str) -> tuple[Verdict, Callable[[], None]] | None:
        return self._waiting.pop(token, None)

    def __len__(self) -> int:
        return len(self._waiting)


class VerdictApp:
    """
    ASGI wrapper: puts each request's verdict in its scope and signals the end.
    """

    def __init__(self, app: Any, table: VerdictTable) -> None:
        self._app = app
        self._table = table

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        token = next(
            (v.decode("ascii") for k, v in scope["headers"] if k == VERDICT_HEADER),
            "",
        )
        entry = self._table.take(token)
        scope = {**scope, VERDICT_SCOPE_KEY: entry[0] if entry else None}
        try:
            await self._app(scope, receive, send)
        finally:
            if entry is not None:
                verdict, on_done = entry
                for finished in verdict.finished:
                    finished()
                on_done()
