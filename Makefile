.PHONY: demo test test-under-load test-sdk-path newest bench mutation bootstrap lint clean

# Run the demo: a synthetic workload served on http://127.0.0.1:9464/metrics
demo:
	@scripts/bootstrap
	.venv/bin/ron-metrics demo $(ARGS)

# The whole test suite (lint, mypy --strict, pytest + coverage, SBOM, licenses)
test:
	@scripts/test

# The tests again with every CPU kept busy: nothing may depend on timing it does
# not control
test-under-load:
	@scripts/test-under-load $(ARGS)

# The suite again with the fast path off (the SDK's own instruments) where a test
# does not choose: both paths must pass the same tests
test-sdk-path:
	@scripts/bootstrap
	RONMETRICS_TEST_SDK_PATH=1 .venv/bin/pytest -q -p no:cacheprovider --no-cov $(ARGS)

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
