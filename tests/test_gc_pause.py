"""
The garbage collector is held off while a scrape's objects live, and only then:
back on after the last response, after a client that left, in a forked child;
left off when the application switched it off. For the same span the switch
interval is short, and afterwards it is what the application had (or set).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import os
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from ron_metrics import _gc_pause
from ron_metrics.exporters.prometheus.render import Format, Rendered
from ron_metrics.exporters.prometheus.scrape import ScrapeCoalescer

DEFAULT_INTERVAL = 0.005


@pytest.fixture(autouse=True)
def _collector_on() -> Iterator[None]:
    gc.enable()
    sys.setswitchinterval(DEFAULT_INTERVAL)
    yield
    assert _gc_pause.held() == 0
    gc.enable()
    sys.setswitchinterval(DEFAULT_INTERVAL)


def test_the_switch_interval_is_short_only_during_the_pause() -> None:
    _gc_pause.hold()
    _gc_pause.hold()
    assert sys.getswitchinterval() == pytest.approx(_gc_pause.SWITCH_INTERVAL)
    _gc_pause.release()
    assert sys.getswitchinterval() == pytest.approx(_gc_pause.SWITCH_INTERVAL)
    _gc_pause.release()
    assert sys.getswitchinterval() == pytest.approx(DEFAULT_INTERVAL)


def test_a_switch_interval_the_application_chose_is_kept() -> None:
    sys.setswitchinterval(0.0001)  # already shorter: left alone
    _gc_pause.hold()
    assert sys.getswitchinterval() == pytest.approx(0.0001)
    _gc_pause.release()
    assert sys.getswitchinterval() == pytest.approx(0.0001)
    sys.setswitchinterval(DEFAULT_INTERVAL)
    _gc_pause.hold()
    sys.setswitchinterval(0.002)  # set by the application during the pause
    _gc_pause.release()
    assert sys.getswitchinterval() == pytest.approx(0.002)


def test_nested_pauses_end_with_the_last() -> None:
    _gc_pause.hold()
    _gc_pause.hold()
    assert not gc.isenabled()
    _gc_pause.release()
    assert not gc.isenabled()
    _gc_pause.release()
    assert gc.isenabled()
    _gc_pause.release()  # one too many: harmless
    assert gc.isenabled() and _gc_pause.held() == 0


def test_a_collector_the_application_switched_off_stays_off() -> None:
    gc.disable()
    _gc_pause.hold()
    _gc_pause.release()
    assert not gc.isenabled()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_child_forked_during_a_pause_collects_again() -> None:
    _gc_pause.hold()
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - reports through its exit status
            restored = sys.getswitchinterval() == DEFAULT_INTERVAL
            os._exit(0 if gc.isenabled() and _gc_pause.held() == 0 and restored else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        _gc_pause.release()


class _Scrapes:
    """A coalescer on a real thread pool; collect and render record the collector."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, bool]] = []
        self.release = threading.Event()
        self.executor = concurrent.futures.ThreadPoolExecutor(2)
        self.coalescer = ScrapeCoalescer(self._collect, self._render, self.executor)

    def _collect(self) -> Any:
        self.seen.append(("collect", gc.isenabled()))
        assert self.release.wait(30)
        return object()

    def _render(self, _: Any, fmt: Format, gzip_ok: bool) -> Rendered:
        self.seen.append(("render", gc.isenabled()))
        return Rendered(body=b"x", content_type=fmt.value, gzipped=gzip_ok)


def test_the_collector_is_off_from_collection_to_the_last_response() -> None:
    scrapes = _Scrapes()

    async def run() -> None:
        first = asyncio.ensure_future(scrapes.coalescer.get(Format.TEXT, gzip_ok=False))
        second = asyncio.ensure_future(scrapes.coalescer.get(Format.TEXT, gzip_ok=True))
        await asyncio.sleep(0.05)
        assert not gc.isenabled() and _gc_pause.held() == 1  # one pause, shared
        scrapes.release.set()
        assert sys.getswitchinterval() == pytest.approx(_gc_pause.SWITCH_INTERVAL)
        await asyncio.gather(first, second)
        assert gc.isenabled()
        assert sys.getswitchinterval() == pytest.approx(DEFAULT_INTERVAL)

    asyncio.run(run())
    scrapes.executor.shutdown()
    assert scrapes.seen == [("collect", False), ("render", False), ("render", False)]


def test_a_client_that_leaves_mid_collection_ends_the_pause_when_it_lands() -> None:
    scrapes = _Scrapes()

    async def run() -> None:
        waiting = asyncio.ensure_future(
            scrapes.coalescer.get(Format.TEXT, gzip_ok=False)
        )
        await asyncio.sleep(0.05)
        waiting.cancel()
        await asyncio.sleep(0.05)
        assert not gc.isenabled()  # the collection still runs and makes objects
        scrapes.release.set()
        for _ in range(200):
            if gc.isenabled():
                break
            await asyncio.sleep(0.01)
        assert gc.isenabled() and _gc_pause.held() == 0

    asyncio.run(run())
    scrapes.executor.shutdown()
