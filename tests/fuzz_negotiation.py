"""
Coverage-guided fuzz target for Accept / Accept-Encoding negotiation and the label
sanitizer, runnable with atheris when it is installed:

    .venv/bin/pip install atheris
    .venv/bin/python tests/fuzz_negotiation.py -max_total_time=60

Without atheris the same entry point can be driven by hypothesis (see
tests/test_properties.py), which the test command runs on every build.
"""

from __future__ import annotations

import sys

from ron_metrics.exporters.prometheus.render import accepts_gzip, negotiate_format
from ron_metrics.labels import check_label_key, check_label_value


def one_input(data: bytes) -> None:
    text = data.decode("utf-8", errors="replace")
    negotiate_format(text)
    accepts_gzip(text)
    check_label_key(text[:80])
    check_label_value(text)


def main() -> None:
    import atheris  # type: ignore[import-untyped]  # optional fuzzer without stubs

    atheris.instrument_all()
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
