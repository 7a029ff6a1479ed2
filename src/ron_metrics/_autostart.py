"""
Zero-code start: what ``ron-metrics run -- COMMAND`` does inside the launched program.

``autostart()`` runs from ``sitecustomize`` before the program's own code: it loads
the config (``RON_METRICS_CONFIG`` and the environment), starts ron-metrics (the
OpenTelemetry global is installed, so ``metrics.get_meter()`` works everywhere),
flushes at exit, and — unless ``RON_METRICS_AUTOSTART_MIDDLEWARE=0`` — adds the
HTTP middleware to every application of a supported framework the program creates:

- Starlette and FastAPI (``ron_metrics.asgi.MetricsMiddleware`` as the outermost
  user middleware),
- Flask (``ron_metrics.wsgi.MetricsMiddleware`` around ``app.wsgi_app``),
- Quart (``ron_metrics.asgi.MetricsMiddleware`` around ``app.asgi_app``).

Nothing here may stop the program: a failure is one line on stderr and the program
runs without metrics. Pre-fork servers are covered by the runtime itself (it
follows ``fork()`` into each worker; spawned workers run this again).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import logging
import os
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

from ron_metrics.logs import say_line

__all__ = ["PATCHES", "autostart"]

_MARK = "_ron_metrics_instrumented"


def _after_init(cls: Any, install: Callable[[Any], None]) -> None:
    # Wrap the class's constructor: every app it makes gets ``install``ed once.
    original = cls.__init__

    def instrumented_init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        if not getattr(self, _MARK, False):
            install(self)
            setattr(self, _MARK, True)

    cls.__init__ = instrumented_init


def _starlette(module: ModuleType) -> None:
    from ron_metrics.asgi import MetricsMiddleware

    _after_init(module.Starlette, lambda app: app.add_middleware(MetricsMiddleware))


def _fastapi(module: ModuleType) -> None:
    # FastAPI's constructor does not run Starlette's: it needs its own wrap.
    from ron_metrics.asgi import MetricsMiddleware

    _after_init(module.FastAPI, lambda app: app.add_middleware(MetricsMiddleware))


def _flask(module: ModuleType) -> None:
    from ron_metrics.wsgi import MetricsMiddleware

    def install(app: Any) -> None:
        app.wsgi_app = MetricsMiddleware(app.wsgi_app, route_app=app)

    _after_init(module.Flask, install)


def _quart(module: ModuleType) -> None:
    from ron_metrics.asgi import MetricsMiddleware

    def install(app: Any) -> None:
        app.asgi_app = MetricsMiddleware(app.asgi_app, route_app=app)

    _after_init(module.Quart, install)


# module whose import is watched -> how to patch it once it ran
PATCHES: dict[str, Callable[[ModuleType], None]] = {
    "starlette.applications": _starlette,
    "fastapi.applications": _fastapi,
    "flask.app": _flask,
    "quart.app": _quart,
}


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, loader: Any, patch: Callable[[ModuleType], None]) -> None:
        self._loader = loader
        self._patch = patch

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        created: ModuleType | None = self._loader.create_module(spec)
        return created

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        try:
            self._patch(module)
        except Exception as exc:
            say_line(
                logging.ERROR,
                "autostart_middleware_failed",
                module=module.__name__,
                error=repr(exc),
            )


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """
    Finds watched modules through the other finders and patches them once loaded.
    """

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        patch = PATCHES.get(fullname)
        if patch is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _PatchingLoader(spec.loader, patch)
                return spec
        return None


def autostart() -> None:
    """
    Start ron-metrics for the launched program (called from ``sitecustomize``).
    """
    try:
        import ron_metrics
        from ron_metrics.logs import own_logging

        own_logging()
        runtime = ron_metrics.start(ron_metrics.load_config())
    except Exception as exc:
        say_line(logging.ERROR, "autostart_failed", error=str(exc), pid=os.getpid())
        return
    try:
        from ron_metrics._signals import install_runner_signals

        install_runner_signals(runtime)
    except Exception as exc:
        say_line(logging.ERROR, "autostart_signals_failed", error=repr(exc))
    if os.environ.get("RON_METRICS_AUTOSTART_MIDDLEWARE", "1") != "0":
        for name, patch in PATCHES.items():
            if name in sys.modules:  # imported before us (rare): patch it now
                patch(sys.modules[name])
        sys.meta_path.insert(0, _PatchOnImport())
    say_line(logging.INFO, "autostart", address=runtime.address, pid=os.getpid())
