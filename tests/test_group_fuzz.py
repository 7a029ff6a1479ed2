"""
Random and mutated files thrown into a live multi-process group.

A real group runs in other processes: a serving parent and two forked workers
(alive, holding their counts) plus one worker that counted and exited. Hypothesis
then writes what an attacker with write access to the directory could: random
bytes, valid member and archive files of another metric with bits flipped, cut
short or extended, archives that claim honest members or hold fewer counts, FIFOs,
symlinks and hard links to honest members, directories and sparse multi-GiB files
named like members. After every write a scrape must answer 200 with exposition
promtool accepts, the honest total must be exact, and the group must log no
traceback. Forged *plausible* increases (a byte copy of a member, a new valid
member of the same metric) are out of scope: they are indistinguishable from
real counts, and the docs say so.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import clean_env, get_when_served, stop_process
from ron_metrics.multiprocess.store import MemberStore, series_key
from ron_metrics.testing import reserved_port
from test_promtool import promtool_check

pytestmark = [
    pytest.mark.peer,
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork"),
]

# The parent counts 1, two live workers 10 each, one worker 5 and exits.
HONEST_TOTAL = 26.0
EXITED_HONEST = 5.0

GROUP = textwrap.dedent(
    """
    import os, sys, time
    import ron_metrics
    from opentelemetry import metrics
    port, directory = sys.argv[1], sys.argv[2]
    runtime = ron_metrics.start(ron_metrics.load_config(env={}, service={"name": "g"},
        exporter={"prometheus": {"bind": f"127.0.0.1:{port}"}},
        multiprocess={"dir": directory}))
    jobs = metrics.get_meter("app").create_counter("jobs")
    jobs.add(1)
    for amount, stays in ((10, True), (10, True), (5, False)):
        pid = os.fork()
        if pid == 0:
            jobs.add(amount)
            if not stays:
                runtime.shutdown()
                os._exit(0)
            time.sleep(600)
            os._exit(0)
        if not stays:
            os.waitpid(pid, 0)
    print("ready", flush=True)
    time.sleep(600)
    """
)
JOBS = re.compile(r"^jobs_total(?:\{[^}]*\})? (\S+)$", re.MULTILINE)


@dataclass
class LiveGroup:
    directory: Path
    url: str
    stderr: Path
    names: Iterator[int]

    def scrape(self) -> str:
        response = httpx.get(self.url, timeout=30)
        assert response.status_code == 200, response.text[:500]
        return response.text

    def honest_files(self) -> list[Path]:
        return sorted(p for p in self.directory.glob("member-*.db") if p.is_file())

    def fresh_name(self) -> Path:
        return self.directory / f"member-9{next(self.names)}-1.db"


def _key(scope: str, name: str, **attributes: str) -> str:
    return series_key(
        scope=(scope, ""),
        name=name,
        kind="counter",
        unit="",
        description="",
        bounds=None,
        attributes=attributes,
    )


@functools.cache
def _decoy_member() -> bytes:
    """A valid member file of a metric the honest workers never write."""
    with tempfile.TemporaryDirectory() as scratch:
        store = MemberStore(str(Path(scratch) / "decoy.db"))
        store.add(store.slot(_key("fuzz", "decoy", k="v"), 1), 3)
        store.close()
        return (Path(scratch) / "decoy.db").read_bytes()


@pytest.fixture(name="live", scope="module")
def _live() -> Iterator[LiveGroup]:
    work = Path(tempfile.mkdtemp(prefix="ron-metrics-fuzz-"))
    directory = work / "group"
    port = reserved_port()
    stderr = work / "stderr.log"
    with stderr.open("wb") as errors:
        process = subprocess.Popen(
            [sys.executable, "-c", GROUP, str(port), str(directory)],
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            env=clean_env(),
        )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        live = LiveGroup(
            directory, f"http://127.0.0.1:{port}/metrics", stderr, itertools.count()
        )
        first = get_when_served(live.url)
        assert _jobs(first.text) == HONEST_TOTAL  # the floor every check holds to
        yield live
    finally:
        # The workers are the parent's children: stopping it by PID ends their sleep
        # through the process group the test started (its session).
        children = _children(process.pid)
        stop_process(process)
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if process.stdout is not None:
            process.stdout.close()
        subprocess.run(["rm", "-rf", str(work)], check=False, timeout=60)


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text()
        found += [int(child) for child in text.split()]
    return found


def _jobs(body: str) -> float:
    return sum(float(value) for value in JOBS.findall(body))


@st.composite
def _mutated_member(draw: st.DrawFn) -> bytes:
    data = bytearray(_decoy_member())
    for position in draw(st.lists(st.integers(0, len(data) - 1), max_size=8)):
        data[position] ^= 1 << draw(st.integers(0, 7))
    cut = draw(st.one_of(st.just(len(data)), st.integers(0, len(data))))
    return bytes(data[:cut]) + draw(st.binary(max_size=64))


@st.composite
def _forged_archive(draw: st.DrawFn) -> tuple[str, int, bool]:
    records = draw(st.sampled_from(["none", "decoy", "fewer-jobs"]))
    return records, draw(st.integers(0, 3)), draw(st.booleans())


def _write_member(live: LiveGroup, data: bytes) -> None:
    live.fresh_name().write_bytes(data)


def _write_archive(live: LiveGroup, data: bytes) -> None:
    (live.directory / "archive.db").write_bytes(data)


def _forge_archive(live: LiveGroup, forged: tuple[str, int, bool]) -> None:
    records, claim, with_live = forged
    honest = live.honest_files()
    absorbed = [p.name for p in honest[:claim]]
    if with_live:
        absorbed += [p.name for p in honest]
    rows: list[list[object]] = []
    if records == "decoy":
        rows = [[_key("fuzz", "decoy"), [2.0]]]
    elif records == "fewer-jobs":
        # Claims every member while holding fewer counts than the exited one alone.
        rows = [[_key("app", "jobs"), [EXITED_HONEST - 1]]]
        absorbed = [p.name for p in honest]
    payload = {"absorbed": absorbed, "records": rows}
    (live.directory / "archive.db").write_text(json.dumps(payload))


def _fifo(live: LiveGroup, _: int) -> None:
    os.mkfifo(live.fresh_name(), 0o600)


def _symlink(live: LiveGroup, which: int) -> None:
    honest = live.honest_files()
    live.fresh_name().symlink_to(honest[which % len(honest)])


def _hardlink(live: LiveGroup, which: int) -> None:
    honest = live.honest_files()
    os.link(honest[which % len(honest)], live.fresh_name())


def _directory(live: LiveGroup, _: int) -> None:
    live.fresh_name().mkdir(mode=0o700)


def _sparse(live: LiveGroup, _: int) -> None:
    with live.fresh_name().open("wb") as handle:
        handle.truncate(300 * 2**20 + 7)  # over the 256 MiB bound


Attack = tuple[Callable[[LiveGroup, Any], None], Any]
ATTACKS: st.SearchStrategy[Attack] = st.one_of(
    st.tuples(st.just(_write_member), st.binary(max_size=4096)),
    st.tuples(st.just(_write_member), _mutated_member()),
    st.tuples(st.just(_write_archive), st.binary(max_size=4096)),
    st.tuples(st.just(_forge_archive), _forged_archive()),
    st.tuples(
        st.sampled_from([_fifo, _symlink, _hardlink, _directory, _sparse]),
        st.integers(0, 3),
    ),
)


@pytest.mark.timeout(900)
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(ATTACKS, min_size=1, max_size=3))
def test_hostile_files_never_break_a_scrape_or_an_honest_total(
    live: LiveGroup, batch: list[Attack]
) -> None:
    """Every scrape 200 and promtool-clean, the honest total exact, no traceback."""
    for attack, argument in batch:
        attack(live, argument)
    body = live.scrape()
    check = promtool_check(body)
    assert check.returncode == 0, check.stdout + check.stderr
    assert _jobs(body) == HONEST_TOTAL, [attack.__name__ for attack, _ in batch]
    assert "Traceback" not in live.stderr.read_text(errors="replace")


def test_the_group_recovers_and_counted_what_it_skipped(live: LiveGroup) -> None:
    """Once the hostile files are gone the scrape is whole; the skips were counted."""
    (live.fresh_name()).write_bytes(b"not a member file")
    assert _jobs(live.scrape()) == HONEST_TOTAL
    for path in live.directory.iterdir():
        if path.name.startswith("member-9") or path.name == "archive.db":
            if path.is_dir() and not path.is_symlink():
                path.rmdir()
            else:
                path.unlink()
    body = live.scrape()
    assert _jobs(body) == HONEST_TOTAL
    skipped = re.search(r'^rejected_total\{reason="group_file"\} (\S+)$', body, re.M)
    assert skipped is not None and float(skipped.group(1)) > 0
    assert "Traceback" not in live.stderr.read_text(errors="replace")
