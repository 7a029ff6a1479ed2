.PHONY: demo test newest bench mutation bootstrap lint clean

# Run the demo: a synthetic workload served on http://127.0.0.1:9464/metrics
demo:
	@scripts/bootstrap
	.venv/bin/ron-metrics demo $(ARGS)

# The whole test suite (lint, mypy --strict, pytest + coverage, SBOM, licenses)
test:
	@scripts/test

# The suite on the newest releases pyproject.toml's ranges allow (fresh venv, no lock)
newest:
	@scripts/peers
	@scripts/newest $(ARGS)

# Benchmarks against the peers; writes docs/benchmarks.md and plots (about 10 minutes)
bench:
	@scripts/bootstrap
	@scripts/peers
	.venv/bin/python benchmarks/run.py $(ARGS)

# Mutation testing of the modules that decide security and correctness (gate 90 %)
mutation:
	@scripts/bootstrap
	.venv/bin/python scripts/mutation.py $(ARGS)

bootstrap:
	@scripts/bootstrap

clean:
	rm -rf .venv .venv-runtime .venv-newest build dist .coverage .pytest_cache .mypy_cache .ruff_cache
