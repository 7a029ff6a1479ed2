"""
Loaded by Python at start-up when ``ron-metrics run`` put this directory on
``PYTHONPATH``: starts ron-metrics in the launched program, then hands over to any
other ``sitecustomize`` further down the path.
"""

import os
import sys


def _start() -> None:
    try:
        from ron_metrics._autostart import autostart
    except Exception as exc:  # never stop the program because of us
        print(f"ron-metrics: autostart unavailable: {exc!r}", file=sys.stderr)
        return
    autostart()


def _chain() -> None:
    # The sitecustomize this one shadows (e.g. a distribution's own) still runs.
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    for entry in sys.path:
        if os.path.abspath(entry or ".") == here:
            continue
        candidate = os.path.join(entry or ".", "sitecustomize.py")
        if os.path.isfile(candidate):
            spec = importlib.util.spec_from_file_location(
                "_chained_sitecustomize", candidate
            )
            if spec is not None and spec.loader is not None:
                spec.loader.exec_module(importlib.util.module_from_spec(spec))
            return


if os.environ.get("RON_METRICS_AUTOSTART") == "1":
    _start()
_chain()
