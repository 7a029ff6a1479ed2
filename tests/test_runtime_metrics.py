"""
Process and CPython runtime metrics: present by default under the semantic
conventions' names, equal to what the kernel says of the process, switchable by
group, and GC pauses timed without ever waiting on a lock.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import clean_env, get_when_served, run_python, stop_process
from ron_metrics import ConfigError
from ron_metrics.testing import config_for_tests, runtime_for_tests, samples

PROCESS_FAMILIES = {
    "process_cpu_time_seconds_total",
    "process_memory_usage_bytes",
    "process_memory_virtual_bytes",
    "process_open_file_descriptors",
    "process_open_file_descriptors_limit",
    "process_threads",
    "process_context_switches_total",
    "process_uptime_seconds",
}
GC_FAMILIES = {
    "cpython_gc_collections_total",
    "cpython_gc_collected_objects_total",
    "cpython_gc_uncollectable_objects_total",
}
PAUSE_FAMILY = "cpython_gc_pause_duration_seconds_count"

# An idle service: start, say where it listens, wait.
IDLE_APP = """
import sys, time
import ron_metrics
runtime = ron_metrics.start(ron_metrics.load_config(None, env={}, **{
    "service": {"name": "idle"},
    "exporter": {"kind": "prometheus", "prometheus": {"bind": "127.0.0.1:0"}},
}))
print(runtime.address, flush=True)
while True:
    time.sleep(1)
"""


def _names(runtime: Any) -> set[str]:
    return {name for name, _labels in samples(runtime)}


def _value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
           **labels: str) -> float:  # fmt: skip
    wanted = set(labels.items())
    (value,) = [v for (n, ls), v in found.items() if n == name and wanted <= ls]
    return value


def _parse(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


class _Proc:
    """What the kernel says of one process, read from outside it."""

    def __init__(self, pid: int) -> None:
        self.root = Path(f"/proc/{pid}")

    def status(self, key: str) -> int:
        for line in (self.root / "status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        raise LookupError(key)

    def cpu_seconds(self) -> float:
        stat = (self.root / "stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def context_switches(self) -> int:
        """Of the live threads only (the kernel keeps no per-process sum here)."""
        total = 0
        for task in (self.root / "task").iterdir():
            task_proc = _Proc.__new__(_Proc)
            task_proc.root = task
            total += task_proc.status("voluntary_ctxt_switches")
            total += task_proc.status("nonvoluntary_ctxt_switches")
        return total

    def snapshot(self) -> dict[str, int | float]:
        return {
            "cpu": self.cpu_seconds(),
            "switches": self.context_switches(),
            "threads": self.status("Threads"),
            "rss": self.status("VmRSS") * 1024,
            "vsz": self.status("VmSize") * 1024,
            "fds": self.fds(),
        }

    def fds(self) -> int:
        return len(os.listdir(self.root / "fd"))

    def fd_limit(self) -> int:
        for line in (self.root / "limits").read_text().splitlines():
            if line.startswith("Max open files"):
                return int(line.split()[3])
        raise LookupError("Max open files")


@pytest.fixture(name="idle_service")
def _idle_service() -> Any:
    process = subprocess.Popen(
        [sys.executable, "-c", IDLE_APP],
        stdout=subprocess.PIPE,
        env=clean_env(),
    )
    try:
        assert process.stdout is not None
        address = process.stdout.readline().decode().strip()
        assert address.startswith("http://"), address
        get_when_served(f"{address}/healthz")
        yield process, address
    finally:
        stop_process(process)
        if process.stdout is not None:
            process.stdout.close()


def test_an_idle_service_reports_what_the_kernel_says(idle_service: Any) -> None:
    """Each value read by the service at a scrape lies between what /proc said of
    it just before and just after that scrape (memory within 10 %, descriptors
    within the scrape's own connection)."""
    process, address = idle_service
    proc = _Proc(process.pid)
    before = proc.snapshot()
    found = _parse(httpx.get(f"{address}/metrics", timeout=30).text)
    after = proc.snapshot()
    cpu = _value(found, "process_cpu_time_seconds_total", cpu_mode="user") + _value(
        found, "process_cpu_time_seconds_total", cpu_mode="system"
    )
    tick = 1 / os.sysconf("SC_CLK_TCK")
    assert before["cpu"] - tick <= cpu <= after["cpu"] + tick
    switches = _value(
        found, "process_context_switches_total",
        process_context_switch_type="voluntary",
    ) + _value(
        found, "process_context_switches_total",
        process_context_switch_type="involuntary",
    )  # fmt: skip
    # Threads that ended still count in the process's total, not in /proc's
    # live threads: a floor, not a range.
    assert before["switches"] <= switches
    threads = _value(found, "process_threads")
    assert min(before["threads"], after["threads"]) <= threads
    assert threads <= max(before["threads"], after["threads"])
    rss = _value(found, "process_memory_usage_bytes")
    assert 0.9 * min(before["rss"], after["rss"]) <= rss
    assert rss <= 1.1 * max(before["rss"], after["rss"])
    vsz = _value(found, "process_memory_virtual_bytes")
    assert 0.9 * min(before["vsz"], after["vsz"]) <= vsz
    assert vsz <= 1.1 * max(before["vsz"], after["vsz"])
    fds = _value(found, "process_open_file_descriptors")
    # During the scrape the service also holds the scrape's connection.
    assert (
        min(before["fds"], after["fds"]) <= fds <= max(before["fds"], after["fds"]) + 2
    )
    assert _value(found, "process_open_file_descriptors_limit") == proc.fd_limit()
    uptime = _value(found, "process_uptime_seconds")
    assert 0 < uptime < 600
    for generation in ("0", "1", "2"):
        assert (
            _value(
                found, "cpython_gc_collections_total", cpython_gc_generation=generation
            )
            >= 0
        )


def test_every_family_is_on_by_default_and_groups_choose() -> None:
    """All three groups by default; ``groups`` picks; ``enabled = false`` stops all."""
    with runtime_for_tests(config_for_tests(sdk={"fast_path": True})) as runtime:
        names = _names(runtime)
    assert names >= PROCESS_FAMILIES
    assert names >= GC_FAMILIES
    assert PAUSE_FAMILY in names
    with runtime_for_tests(
        config_for_tests(runtime_metrics={"groups": ["gc"]})
    ) as runtime:
        names = _names(runtime)
    assert names >= GC_FAMILIES
    assert not (PROCESS_FAMILIES | {PAUSE_FAMILY}) & names
    with runtime_for_tests(
        config_for_tests(runtime_metrics={"enabled": False})
    ) as runtime:
        names = _names(runtime)
    assert not (PROCESS_FAMILIES | GC_FAMILIES | {PAUSE_FAMILY}) & names


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (["process", "heap"], "'heap' is not one of 'process', 'gc', 'gc_pauses'"),
        ("gc", "expected a list of names"),
    ],
)
def test_unknown_groups_are_refused_by_key_and_value(raw: Any, why: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config_for_tests(runtime_metrics={"groups": raw})
    assert "runtime_metrics.groups" in str(caught.value)
    assert why in str(caught.value)


def test_collections_are_timed_per_generation() -> None:
    """Forced collections land in their generation's pause histogram, with a
    positive duration; the callback leaves with the runtime."""
    callbacks = list(gc.callbacks)
    with runtime_for_tests(config_for_tests(sdk={"fast_path": True})) as runtime:
        first = samples(runtime)
        for _ in range(5):
            gc.collect(0)
        gc.collect(2)
        then = samples(runtime)
        assert len(gc.callbacks) == len(callbacks) + 1
    assert gc.callbacks == callbacks

    def count(found: Any, generation: str) -> float:
        return _value(found, PAUSE_FAMILY, cpython_gc_generation=generation)

    assert count(then, "0") >= count(first, "0") + 5
    assert count(then, "2") >= count(first, "2") + 1
    total = _value(then, "cpython_gc_pause_duration_seconds_sum",
                   cpython_gc_generation="2")  # fmt: skip
    assert total > 0
    buckets = [
        value
        for (name, labels), value in then.items()
        if name == "cpython_gc_pause_duration_seconds_bucket"
        and ("cpython_gc_generation", "2") in labels
    ]
    assert max(buckets) == count(then, "2")


def test_without_the_fast_path_pauses_are_not_timed() -> None:
    """The SDK's aggregations take locks a GC callback must not wait on: the
    pause histogram is left out, every other family stays."""
    callbacks = list(gc.callbacks)
    with runtime_for_tests(config_for_tests(sdk={"fast_path": False})) as runtime:
        names = _names(runtime)
        assert gc.callbacks == callbacks
    assert PAUSE_FAMILY not in names
    assert names >= PROCESS_FAMILIES | GC_FAMILIES


def test_in_a_group_only_the_members_process_families_are_reported(
    tmp_path: Path,
) -> None:
    """The serving process reports each live member's process families by pid
    (itself included), never its own GC figures as the group's."""
    config = config_for_tests(
        multiprocess={"dir": str(tmp_path / "group")},
        exporter={"kind": "prometheus", "prometheus": {"bind": "127.0.0.1:0"}},
    )
    with runtime_for_tests(config) as runtime:
        get_when_served(f"{runtime.address}/healthz")
        before = os.times()
        found = _parse(get_when_served(f"{runtime.address}/metrics").text)
        after = os.times()
    # The serving member publishes its own CPU time as the scrape starts.
    group_cpu = _value(
        found, "ron_metrics_group_cpu_time_seconds_total", cpu_mode="user"
    ) + _value(found, "ron_metrics_group_cpu_time_seconds_total", cpu_mode="system")
    assert before.user + before.system <= group_cpu <= after.user + after.system
    names = {name for name, _labels in found}
    assert names >= PROCESS_FAMILIES
    assert not (GC_FAMILIES | {PAUSE_FAMILY}) & names
    pids = {
        dict(labels).get("process_pid")
        for name, labels in found
        if name in PROCESS_FAMILIES
    }
    assert pids == {str(os.getpid())}
    assert found[("ron_metrics_group_members", frozenset())] == 1


def test_a_member_of_another_user_or_gone_is_not_read() -> None:
    """A pid from a file name proves nothing: gone or foreign processes are skipped."""
    from ron_metrics._runtime_readings import member_reading

    assert member_reading(os.getpid()) is not None
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait(30)
    assert member_reading(process.pid) is None  # reaped: gone
    if os.getuid() != 0:
        assert member_reading(1) is None  # init is root's


GC_STORM = """
import gc, threading
import ron_metrics
from ron_metrics.testing import config_for_tests, runtime_for_tests

with runtime_for_tests(config_for_tests(sdk={"fast_path": True})) as runtime:
    histogram = runtime.get_meter("app").create_histogram("work")
    gc.set_threshold(1)  # a collection at nearly every allocation
    def work():
        for index in range(3000):
            histogram.record(index % 7, {"k": str(index % 5)})
    threads = [threading.Thread(target=work) for _ in range(3)]
    for thread in threads:
        thread.start()
    for _ in range(40):
        runtime._hub.capture()
    for thread in threads:
        thread.join()
    gc.set_threshold(700)
print("done")
"""


LOCKED_CELLS = """
import gc
from ron_metrics.testing import config_for_tests, runtime_for_tests

with runtime_for_tests(config_for_tests(sdk={"fast_path": True})) as runtime:
    cells = runtime._built.runtime_metrics.pause_cells
    before = [sum(cell.counts) for cell in cells]
    # As when a collection starts inside a scrape reading these very cells.
    with cells[0].lock, cells[2].lock:
        gc.collect(0)
        gc.collect(2)
    print([sum(cell.counts) - was for cell, was in zip(cells, before)])
"""


def test_a_collection_while_the_cells_are_locked_is_still_counted() -> None:
    """The GC callback never waits on a lock: a collection that starts while its
    own thread holds the pause cells' locks completes and is counted."""
    grown = [int(n) for n in run_python(LOCKED_CELLS).strip(" []\n").split(",")]
    assert grown[0] >= 1 and grown[2] >= 1


def test_collections_inside_collections_never_deadlock() -> None:
    """With a collection at nearly every allocation — inside the pause histogram's
    own collection, under its cell's lock — recording and collecting finish."""
    assert run_python(GC_STORM).split() == ["done"]


FORKED = """
import gc, json, os
import ron_metrics
from ron_metrics.testing import config_for_tests, sample_value

rt = ron_metrics.start(config_for_tests(sdk={"fast_path": True}), set_global=False)
for _ in range(5):
    gc.collect(2)
parent_pauses = sample_value(
    rt, "cpython_gc_pause_duration_seconds_count", cpython_gc_generation="2"
)
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    gc.collect(2)
    before = len(os.listdir("/proc/self/task"))
    got = {
        "pauses": sample_value(
            rt, "cpython_gc_pause_duration_seconds_count", cpython_gc_generation="2"
        ),
        "uptime": sample_value(rt, "process_uptime_seconds"),
        "threads": sample_value(rt, "process_threads"),
    }
    after = len(os.listdir("/proc/self/task"))
    got["kernel_threads"] = [min(before, after), max(before, after)]
    os.write(write, json.dumps(got).encode())
    os._exit(0)
os.waitpid(pid, 0)
child = json.loads(os.read(read, 1000))
print(json.dumps({
    "parent_pauses": parent_pauses,
    "parent_uptime": sample_value(rt, "process_uptime_seconds"),
    "child": child,
}))
rt.shutdown()
"""


def test_a_forked_child_reports_itself() -> None:
    """After fork() the child's families describe the child: its own uptime and
    threads, and its pause histogram from zero (the parent's pauses are not its)."""
    import json

    found = json.loads(run_python(FORKED))
    child = found["child"]
    assert found["parent_pauses"] >= 5
    assert 1 <= child["pauses"] < 5  # its own collection, none of the parent's
    assert child["uptime"] < found["parent_uptime"]
    low, high = child["kernel_threads"]
    assert low <= child["threads"] <= high


def _families(fast: bool) -> dict[str, Any]:
    """The runtime families of one collection: identity and each point's labels."""
    config = config_for_tests(
        sdk={"fast_path": fast}, runtime_metrics={"groups": ["process", "gc"]}
    )
    with runtime_for_tests(config) as runtime:
        data = runtime._hub.capture()
        built = runtime._built.runtime_metrics
    assert built is not None and built.direct is fast
    assert data is not None
    found: dict[str, Any] = {}
    for scope in data.resource_metrics[0].scope_metrics:
        for metric in scope.metrics:
            if not metric.name.startswith(("process.", "cpython.")):
                continue
            kind = type(metric.data).__name__
            monotonic = getattr(metric.data, "is_monotonic", None)
            temporality = getattr(metric.data, "aggregation_temporality", None)
            points: list[Any] = list(metric.data.data_points)
            labels = sorted(
                tuple(sorted((point.attributes or {}).items())) for point in points
            )
            values = [point.value for point in points]
            assert all(isinstance(value, int | float) for value in values)
            found[metric.name] = (
                scope.scope.name,
                metric.description,
                metric.unit,
                kind,
                monotonic,
                temporality,
                labels,
            )
    return found


def test_the_direct_families_match_the_sdks_observable_instruments() -> None:
    """On the fast path the families skip the SDK's observable instruments; the
    SDK path keeps them. Both give the same names, scope, descriptions, units,
    kinds, monotonicity, temporality and label sets."""
    direct, reference = _families(True), _families(False)
    assert len(reference) == 11
    assert direct == reference
