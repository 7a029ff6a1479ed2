"""
How a request's verdict travels from the wire to the app: an unguessable
one-time token in the canonical head, swapped for the verdict in the ASGI scope.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from ron_metrics.exporters.prometheus._verdicts import (
    VERDICT_HEADER,
    VERDICT_SCOPE_KEY,
    VerdictApp,
    VerdictTable,
)
from ron_metrics.exporters.prometheus.guards import RequestHead, Verdict


def _verdict() -> Verdict:
    return Verdict(RequestHead(method=b"GET", target=b"/metrics"))


class _Recorder:
    """An ASGI app that remembers what it was called with (and may fail)."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[Any, Any, Any]] = []
        self.fail = fail

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls.append((scope, receive, send))
        if self.fail:
            raise RuntimeError("the app failed")


async def _receive() -> dict[str, Any]:
    return {}


async def _send(_message: Any) -> None:
    return None


class TestTable:
    def test_tokens_are_unguessable_and_count_from_one(self) -> None:
        """A 96-bit random prefix per table, then a counter: never reused."""
        table, other = VerdictTable(), VerdictTable()
        first = table.put(_verdict(), lambda: None)
        second = table.put(_verdict(), lambda: None)
        assert re.fullmatch(rb"[0-9a-f]{24}-1", first)
        assert re.fullmatch(rb"[0-9a-f]{24}-2", second)
        assert first.split(b"-")[0] == second.split(b"-")[0]
        assert (
            other.put(_verdict(), lambda: None).split(b"-")[0] != first.split(b"-")[0]
        )

    def test_a_verdict_is_taken_once(self) -> None:
        table = VerdictTable()
        verdict = _verdict()
        token = table.put(verdict, lambda: None).decode()
        assert len(table) == 1
        found = table.take(token)
        assert found is not None and found[0] is verdict
        assert table.take(token) is None
        assert table.take("not-a-token") is None
        assert len(table) == 0


class TestApp:
    def test_other_scopes_pass_through_untouched(self) -> None:
        """Lifespan and websocket scopes reach the app as they came."""
        app = _Recorder()
        scope = {"type": "lifespan"}
        asyncio.run(VerdictApp(app, VerdictTable())(scope, _receive, _send))
        assert app.calls == [(scope, _receive, _send)]

    def test_the_verdict_is_in_the_scope_and_its_end_is_signalled(self) -> None:
        table = VerdictTable()
        verdict = _verdict()
        ended: list[str] = []
        verdict.finished.append(lambda: ended.append("finished"))
        token = table.put(verdict, lambda: ended.append("done"))
        app = _Recorder()
        scope = {"type": "http", "headers": [(b"host", b"x"), (VERDICT_HEADER, token)]}
        asyncio.run(VerdictApp(app, table)(scope, _receive, _send))
        ((seen, receive, send),) = app.calls
        assert seen[VERDICT_SCOPE_KEY] is verdict
        assert (receive, send) == (_receive, _send)
        assert ended == ["finished", "done"]
        assert len(table) == 0

    def test_a_request_without_a_token_has_no_verdict(self) -> None:
        """No header (or an unknown token): the app sees ``None`` and nothing ends."""
        app = _Recorder()
        for headers in ([], [(VERDICT_HEADER, b"forged-1")]):
            scope = {"type": "http", "headers": headers}
            asyncio.run(VerdictApp(app, VerdictTable())(scope, _receive, _send))
        assert [call[0][VERDICT_SCOPE_KEY] for call in app.calls] == [None, None]

    def test_the_end_is_signalled_when_the_app_fails(self) -> None:
        table = VerdictTable()
        ended: list[str] = []
        token = table.put(_verdict(), lambda: ended.append("done"))
        scope = {"type": "http", "headers": [(VERDICT_HEADER, token)]}
        with pytest.raises(RuntimeError, match="the app failed"):
            asyncio.run(VerdictApp(_Recorder(fail=True), table)(scope, _receive, _send))
        assert ended == ["done"]
