.PHONY: demo test bootstrap lint clean

# Run the demo: a synthetic workload served on http://127.0.0.1:9464/metrics
demo:
	@scripts/bootstrap
	.venv/bin/ron-metrics demo $(ARGS)

# The whole test suite (lint, mypy --strict, pytest + coverage, SBOM, licenses)
test:
	@scripts/test

bootstrap:
	@scripts/bootstrap

clean:
	rm -rf .venv build dist .coverage .pytest_cache .mypy_cache .ruff_cache
