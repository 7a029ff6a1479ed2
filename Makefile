.PHONY: demo test bench bootstrap lint clean

# Run the demo: a synthetic workload served on http://127.0.0.1:9464/metrics
demo:
	@scripts/bootstrap
	.venv/bin/ron-metrics demo $(ARGS)

# The whole test suite (lint, mypy --strict, pytest + coverage, SBOM, licenses)
test:
	@scripts/test

# Benchmarks against the peers; writes docs/benchmarks.md and plots (about 10 minutes)
bench:
	@scripts/bootstrap
	@scripts/peers
	.venv/bin/python benchmarks/run.py $(ARGS)

bootstrap:
	@scripts/bootstrap

clean:
	rm -rf .venv build dist .coverage .pytest_cache .mypy_cache .ruff_cache
