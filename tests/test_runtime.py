from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

import pytest

from conftest import StartFn, run_python, threads_started_since
from ron_metrics import Config, LifecycleError, RuntimeState, start, start_async
from ron_metrics.testing import config_for_tests, runtime_for_tests, sample_value


class TestLifecycle:
    def test_states_and_idempotent_shutdown(self) -> None:
        """A runtime runs, stops once, and a second shutdown is a no-op."""
        runtime = start(
            config_for_tests(exporter={"kind": "prometheus"}), set_global=False
        )
        states = [runtime.state]
        runtime.shutdown()
        states.append(runtime.state)
        runtime.shutdown()
        states.append(runtime.state)
        assert states == [
            RuntimeState.RUNNING,
            RuntimeState.STOPPED,
            RuntimeState.STOPPED,
        ]

    def test_context_manager_stops_and_leaves_no_thread(self) -> None:
        """Leaving the with-block stops every thread the runtime started."""
        before = {t.ident for t in threading.enumerate()}
        with start(
            config_for_tests(exporter={"kind": "prometheus"}), set_global=False
        ) as runtime:
            runtime.get_meter("app").create_counter("c").add(1)
        leftover = threads_started_since(before)
        assert leftover == []

    def test_shutdown_readiness_drops_first(self) -> None:
        """Once shutdown begins, readiness reports draining."""
        runtime = start(config_for_tests(exporter={"kind": "none"}), set_global=False)
        subscription = runtime.subscribe()
        runtime.shutdown()
        assert "draining: shutting down" in runtime.readiness().degraded
        assert [type(e).__name__ for e in subscription.drain()] == ["Draining"]

    def test_reload_after_stop_is_refused(self) -> None:
        """Reloading a stopped runtime raises LifecycleError naming the state."""
        runtime = start(config_for_tests(), set_global=False)
        runtime.shutdown()
        with pytest.raises(LifecycleError, match="stopped"):
            runtime.reload(config_for_tests(exporter={"kind": "prometheus"}))

    def test_async_runtime_refuses_sync_calls(self) -> None:
        """A runtime on the host's loop must be stopped and reloaded with the async calls."""

        async def scenario() -> None:
            runtime = await start_async(
                config_for_tests(exporter={"kind": "prometheus"}), set_global=False
            )
            with pytest.raises(LifecycleError, match="reload_async"):
                runtime.reload(config_for_tests())
            assert await runtime.reload_async(
                config_for_tests(exporter={"kind": "none"})
            ) == ("exporter.kind",)
            assert runtime.address is None
            with pytest.raises(LifecycleError, match="shutdown_async"):
                runtime.shutdown()
            await runtime.shutdown_async()

        asyncio.run(scenario())

    def test_failed_start_leaves_no_global_and_a_retry_works(self) -> None:
        """A start that fails (port taken) installs nothing; the next start installs."""
        code = (
            "import socket\n"
            "import ron_metrics\n"
            "from opentelemetry import metrics\n"
            "taken = socket.socket(); taken.bind(('127.0.0.1', 0)); taken.listen()\n"
            "port = taken.getsockname()[1]\n"
            "def config(p):\n"
            "    return ron_metrics.load_config(env={}, service={'name': 's'},\n"
            "        exporter={'prometheus': {'bind': f'127.0.0.1:{p}'}})\n"
            "try:\n"
            "    ron_metrics.start(config(port))\n"
            "except ron_metrics.ExposerError:\n"
            "    print('refused')\n"
            "print(type(metrics.get_meter_provider()).__name__)\n"
            "rt = ron_metrics.start(config(0))\n"
            "print(metrics.get_meter_provider() is rt.meter_provider)\n"
            "rt.shutdown()\n"
        )
        assert run_python(code).split() == ["refused", "_ProxyMeterProvider", "True"]

    def test_async_runtime_stops_from_another_thread_and_not_on_its_loop(
        self,
    ) -> None:
        """shutdown() on the host loop is refused before any change; elsewhere it works."""

        async def scenario() -> tuple[str, str]:
            runtime = await start_async(
                config_for_tests(exporter={"kind": "prometheus"}), set_global=False
            )
            with pytest.raises(LifecycleError, match="shutdown_async"):
                runtime.shutdown()
            still = runtime.state.value
            await asyncio.to_thread(runtime.shutdown)
            return still, runtime.state.value

        assert asyncio.run(scenario()) == ("running", "stopped")

    def test_async_runtime_reloads_from_another_thread(self) -> None:
        """reload() from a worker thread hops to the host loop of a start_async runtime."""

        async def scenario() -> tuple[str, ...]:
            runtime = await start_async(
                config_for_tests(exporter={"kind": "prometheus"}), set_global=False
            )
            try:
                return await asyncio.to_thread(
                    runtime.reload, config_for_tests(exporter={"kind": "none"})
                )
            finally:
                await runtime.shutdown_async()

        assert asyncio.run(scenario()) == ("exporter.kind",)

    def test_reload_async_from_another_loop(self) -> None:
        """reload_async() from a foreign event loop works on a start() runtime."""
        runtime = start(
            config_for_tests(exporter={"kind": "prometheus"}), set_global=False
        )
        try:
            changed = asyncio.run(
                runtime.reload_async(config_for_tests(exporter={"kind": "none"}))
            )
            assert changed == ("exporter.kind",)
        finally:
            runtime.shutdown()

    def test_blocking_reload_on_the_runtime_loop_is_refused(self) -> None:
        """reload() called on the runtime's own loop thread raises instead of deadlocking."""
        runtime = start(
            config_for_tests(exporter={"kind": "prometheus"}), set_global=False
        )
        outcome: list[BaseException | tuple[str, ...]] = []
        done = threading.Event()

        def on_loop() -> None:
            try:
                outcome.append(runtime.reload(config_for_tests()))
            except LifecycleError as exc:
                outcome.append(exc)
            done.set()

        try:
            loop = runtime._loop
            assert loop is not None
            loop.call_soon_threadsafe(on_loop)
            assert done.wait(5)
            assert isinstance(outcome[0], LifecycleError)
            assert "reload_async" in str(outcome[0])
        finally:
            runtime.shutdown()

    def test_many_start_stop_cycles(self) -> None:
        """Repeated start/stop leaves no thread behind and never deadlocks."""
        before = {t.ident for t in threading.enumerate()}
        for index in range(20):
            with start(
                config_for_tests(exporter={"kind": "prometheus"}), set_global=False
            ) as runtime:
                if index % 2:
                    runtime.get_meter("app").create_counter("c").add(index)
        leftover = threads_started_since(before)
        assert leftover == []


class TestShutdownOrdering:
    def test_hundreds_of_random_start_stop_cycles(self) -> None:
        """200 start/use/stop cycles with random timing: no deadlock, exception or leaked thread."""
        import random
        import time

        import httpx

        rng = random.Random(1234)  # noqa: S311 - test timing, not security
        before = {t.ident for t in threading.enumerate()}
        for index in range(200):
            kind = rng.choice(["prometheus", "none", "prometheus"])
            runtime = start(config_for_tests(exporter={"kind": kind}), set_global=False)
            counter = runtime.get_meter("app").create_counter("c")
            if rng.random() < 0.5:
                counter.add(index)
            time.sleep(rng.random() * 0.005)
            if kind == "prometheus" and rng.random() < 0.2:
                assert (
                    httpx.get(f"{runtime.address}/healthz", timeout=5).status_code
                    == 200
                )
            runtime.shutdown(timeout=rng.choice([0.5, 2.0, 5.0]))
            if rng.random() < 0.3:
                runtime.shutdown()  # a second call is a no-op
            assert runtime.state is RuntimeState.STOPPED
        time.sleep(0.2)
        leftover = threads_started_since(before)
        assert leftover == []


class TestGlobalProvider:
    def test_second_global_start_is_refused(self) -> None:
        """The OTel global can be installed once; a second start() raises LifecycleError."""
        code = (
            "from opentelemetry import metrics\n"
            "from ron_metrics import start, LifecycleError\n"
            "from ron_metrics.testing import config_for_tests\n"
            "rt = start(config_for_tests())\n"
            "metrics.get_meter('a').create_counter('n').add(2)\n"
            "from ron_metrics.testing import sample_value\n"
            "print(sample_value(rt, 'n_total'))\n"
            "try:\n"
            "    start(config_for_tests())\n"
            "except LifecycleError as e:\n"
            "    print('refused', 'set_global=False' in str(e))\n"
            "rt.shutdown()\n"
        )
        out = run_python(code)
        value, *rest = out.split()
        assert float(value) == 2
        assert rest == ["refused", "True"]


class TestSdkDisabled:
    def test_disabled_runtime_exports_and_installs_nothing(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """sdk.disabled: no exposer, no global provider, no-op meters, said once."""
        code = (
            "import logging, sys\n"
            "logging.basicConfig(level=logging.INFO, stream=sys.stdout,"
            " format='%(message)s')\n"
            "import ron_metrics\n"
            "from opentelemetry import metrics\n"
            "config = ron_metrics.load_config(env={'OTEL_SDK_DISABLED': 'true',"
            " 'OTEL_SERVICE_NAME': 'off', 'OTEL_METRICS_EXPORTER': 'prometheus'})\n"
            "rt = ron_metrics.start(config)\n"
            "print('address', rt.address)\n"
            "print('global', type(metrics.get_meter_provider()).__name__)\n"
            "print('meter', type(rt.get_meter('app')).__name__)\n"
            "rt.get_meter('app').create_counter('c').add(1)\n"
            "rt.shutdown()\n"
        )
        out = run_python(code)
        assert "address None" in out
        assert (
            "global _ProxyMeterProvider" in out
        )  # the API placeholder: none installed
        assert "meter NoOpMeter" in out
        assert out.count('"event":"sdk_disabled"') == 1


class TestForkSafety:
    @pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
    def test_inherited_runtime_reinitialises_in_child(self) -> None:
        """A running Runtime follows fork(): the child's copy runs on its own and stops."""
        code = (
            "import os, sys\n"
            "from ron_metrics.testing import runtime_for_tests\n"
            "with runtime_for_tests() as rt:\n"
            "    pid = os.fork()\n"
            "    if pid == 0:\n"
            "        rt.get_meter('x').create_counter('c').add(1)\n"
            "        ok = rt.state.value == 'running'\n"
            "        rt.shutdown()\n"
            "        os._exit(0 if ok and rt.state.value == 'stopped' else 1)\n"
            "    _, status = os.waitpid(pid, 0)\n"
            "    print(os.waitstatus_to_exitcode(status), rt.state.value)\n"
        )
        assert run_python(code).split() == ["0", "running"]

    @pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
    def test_fork_returns_in_child_and_instruments_keep_working(self) -> None:
        """start() then fork(): the child returns from fork, counts, has its own id."""
        code = (
            "import os\n"
            "import ron_metrics\n"
            "from opentelemetry import metrics\n"
            "rt = ron_metrics.start(ron_metrics.load_config(\n"
            "    service={'name': 'forky'}, exporter={'kind': 'prometheus'}))\n"
            "counter = metrics.get_meter('app').create_counter('jobs')\n"
            "counter.add(1)\n"
            "# First imported after the provider was built: the order that hung the\n"
            "# SDK's own at-fork handler.\n"
            "import concurrent.futures.thread\n"
            "def instance():\n"
            "    resource = rt.meter_provider._sdk_config.resource\n"
            "    return resource.attributes['service.instance.id']\n"
            "parent_id = instance()\n"
            "read, write = os.pipe()\n"
            "pid = os.fork()\n"
            "if pid == 0:\n"
            "    counter.add(5, {'who': 'child'})\n"
            "    os.write(write, f'{instance()} {os.getpid()}'.encode())\n"
            "    os._exit(0)\n"
            "_, status = os.waitpid(pid, 0)\n"
            "child_id, child_pid = os.read(read, 200).decode().split()\n"
            "counter.add(1)\n"
            "print(os.waitstatus_to_exitcode(status), parent_id != child_id,\n"
            "      child_id.endswith('-' + child_pid), parent_id.endswith(str(os.getpid())))\n"
            "rt.shutdown()\n"
        )
        assert run_python(code).split() == ["0", "True", "True", "True"]


class TestTestingHelpers:
    def test_sample_value_and_ambiguity(self, start_runtime: StartFn) -> None:
        """sample_value finds one sample, returns None when absent, refuses ambiguity."""
        with runtime_for_tests() as runtime:
            counter = runtime.get_meter("app").create_counter("jobs")
            counter.add(1, {"q": "a"})
            counter.add(2, {"q": "b"})
            assert sample_value(runtime, "jobs_total", q="b") == 2
            assert sample_value(runtime, "nothing_total") is None
            with pytest.raises(LookupError):
                sample_value(runtime, "jobs_total")


class TestPrometheusReload:
    """A Prometheus setting change keeps the bound socket: no gap, no new port."""

    @pytest.mark.parametrize("fixed_port", [True, False])
    def test_setting_changes_never_refuse_a_connection(self, fixed_port: bool) -> None:
        """Reloads under constant probing: every connection answered, same address."""
        import time

        import httpx

        from ron_metrics.testing import reserved_port

        bind = f"127.0.0.1:{reserved_port() if fixed_port else 0}"

        def config(**prometheus: Any) -> Config:
            return config_for_tests(
                exporter={
                    "kind": "prometheus",
                    "prometheus": {"bind": bind, **prometheus},
                }
            )

        with start(config(), set_global=False) as runtime:
            address = runtime.address
            done = threading.Event()
            failures: list[str] = []
            answered = [0]

            def probe() -> None:
                # A fresh connection each time: a moment without a listener shows
                # up as a refused connection.
                while not done.is_set():
                    try:
                        with httpx.Client(timeout=5) as client:
                            client.get(f"{address}/healthz")
                        answered[0] += 1
                    except httpx.HTTPError as exc:
                        failures.append(repr(exc))

            def probes_answered(more: int) -> None:
                # Probes span every moment of the test: wait for answers, not time.
                target = answered[0] + more
                deadline = time.monotonic() + 60
                while answered[0] < target and not failures:
                    assert time.monotonic() < deadline, "the prober stalled"
                    time.sleep(0.01)

            prober = threading.Thread(target=probe)
            prober.start()
            try:
                probes_answered(3)
                changes: list[dict[str, Any]] = [
                    {"gzip": False},
                    {"gzip": False, "max_in_flight": 9},
                    {},
                ]
                for change in changes:
                    runtime.reload(config(**change))
                    assert runtime.address == address
                    probes_answered(3)
            finally:
                done.set()
                prober.join(10)
            assert failures == []
            body = httpx.get(
                f"{address}/metrics", headers={"accept-encoding": "gzip"}, timeout=5
            )
            assert body.headers.get("content-encoding") == "gzip"  # the last config

    def test_a_new_address_is_bound_before_the_old_one_closes(self) -> None:
        """A changed bind serves the new address; the old one is then released."""
        import httpx

        with start(
            config_for_tests(exporter={"kind": "prometheus"}), set_global=False
        ) as runtime:
            old = runtime.address
            runtime.reload(
                config_for_tests(
                    exporter={"kind": "prometheus", "prometheus": {"bind": "[::1]:0"}}
                )
            )
            assert runtime.address != old
            assert str(runtime.address).startswith("http://[::1]:")
            assert httpx.get(f"{runtime.address}/readyz", timeout=5).status_code == 200
            with pytest.raises(httpx.ConnectError):
                httpx.get(f"{old}/healthz", timeout=2)
