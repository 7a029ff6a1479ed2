from __future__ import annotations

from ron_metrics import HealthRegistry


class TestHealthRegistry:
    def test_empty_registry_is_ready(self) -> None:
        """With no checks at all, the verdict is ready."""
        assert HealthRegistry().snapshot().ready

    def test_declared_but_unreported_is_not_ready(self) -> None:
        """Fail-closed: a declared check that never reported blocks readiness."""
        health = HealthRegistry()
        health.declare("exporter")
        snapshot = health.snapshot()
        assert not snapshot.ready
        assert snapshot.degraded == ("exporter: not yet reported",)

    def test_pushed_state_flips_and_back(self) -> None:
        """A failing pushed check degrades readiness with its detail; success restores it."""
        health = HealthRegistry()
        health.set("otlp", ok=False, detail="export failing")
        assert health.snapshot().degraded == ("otlp: export failing",)
        health.set("otlp", ok=True)
        assert health.snapshot().ready

    def test_raising_check_is_not_ready(self) -> None:
        """Fail-closed: a check that raises counts as failing and names the error type."""
        health = HealthRegistry()

        def broken() -> str | None:
            raise KeyError("boom")

        health.add_check("broken", broken)
        assert health.snapshot().degraded == ("broken: check failed (KeyError)",)

    def test_reasons_are_sorted_and_removable(self) -> None:
        """Several failures are listed in order; removing a check removes its reason."""
        health = HealthRegistry()
        health.add_check("zeta", lambda: "down")
        health.set("alpha", ok=False)
        assert health.snapshot().degraded == ("alpha", "zeta: down")
        health.remove("zeta")
        health.remove("alpha")
        assert health.snapshot().ready

    def test_empty_reason_names_the_check_alone(self) -> None:
        """A pull check that fails with an empty reason is listed by its name."""
        health = HealthRegistry()
        health.add_check("quiet", lambda: "")
        assert health.snapshot().degraded == ("quiet",)
