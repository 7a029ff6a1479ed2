"""
The ``ron-metrics`` command.

- ``ron-metrics check-config [FILE]``: print the effective config (secrets masked)
  and its digest; exit 2 with every problem on stderr when invalid.
- ``ron-metrics demo [--config FILE]``: run the demo workload and serve it (or push it,
  with ``exporter.kind = "otlp"`` / ``"both"``); SIGHUP re-reads the file and reloads.
- ``ron-metrics run [--config FILE] [--no-middleware] -- COMMAND ...``: run a Python
  program with ron-metrics started inside it, no code change (see :mod:`._autostart`).
- ``ron-metrics --version``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ron_metrics.config import Config, load_config
from ron_metrics.errors import ConfigError, RonMetricsError
from ron_metrics.logs import say_line

if TYPE_CHECKING:
    from ron_metrics.runtime import Runtime

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2

DEMO_DEFAULTS: dict[str, Any] = {
    "service": {"name": "ron-metrics-demo", "build_version": "demo"},
    "exporter": {"prometheus": {"bind": "127.0.0.1:9464", "drain_delay": "500ms"}},
}


def _version() -> str:
    from importlib.metadata import version

    return version("ron-metrics")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ron-metrics",
        description="OpenTelemetry metrics, exposed or pushed safely.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check-config", help="validate a config and print it")
    check.add_argument(
        "file", nargs="?", help="TOML file (default: $RON_METRICS_CONFIG)"
    )
    demo = commands.add_parser("demo", help="serve a synthetic workload's metrics")
    demo.add_argument("--config", help="TOML file (default: $RON_METRICS_CONFIG)")
    demo.add_argument(
        "--tick",
        type=float,
        default=1.0,
        help="seconds between workload ticks (default 1)",
    )
    run = commands.add_parser(
        "run",
        help="run a Python program with ron-metrics started inside it",
        description="Start ron-metrics inside COMMAND (a Python program) without code"
        " changes; the HTTP middleware is added to Starlette, FastAPI, Flask and Quart"
        " apps unless --no-middleware.",
    )
    run.add_argument("--config", help="TOML file (default: $RON_METRICS_CONFIG)")
    run.add_argument(
        "--no-middleware",
        action="store_true",
        help="do not add the HTTP middleware to detected frameworks",
    )
    run.add_argument("program", nargs=argparse.REMAINDER, help="-- COMMAND [ARG ...]")
    return parser


def _run_program(file: str | None, middleware: bool, program: list[str]) -> int:
    if program[:1] == ["--"]:
        program = program[1:]
    # The runner shares the program's stderr: its lines are JSON, like the
    # program's ron-metrics lines.
    if not program:
        say_line(logging.ERROR, "run_failed", error="give the command after --")
        return EXIT_CONFIG
    try:
        load_config(file)  # every problem now, before the program starts
    except ConfigError as error:
        say_line(
            logging.ERROR,
            "config_invalid",
            error=str(error).split(":", 1)[0],
            problems=[str(problem) for problem in error.problems],
        )
        return EXIT_CONFIG
    site = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_site")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([site, *filter(None, [env.get("PYTHONPATH")])])
    env["RON_METRICS_AUTOSTART"] = "1"
    # gRPC's C core writes its own plain-text lines to stderr; the exporter's
    # failures reach the JSON log through its Python logger anyway.
    env.setdefault("GRPC_VERBOSITY", "NONE")
    env["RON_METRICS_AUTOSTART_MIDDLEWARE"] = "1" if middleware else "0"
    if file is not None:
        env["RON_METRICS_CONFIG"] = os.path.abspath(file)
    try:
        os.execvpe(program[0], program, env)  # noqa: S606 - running the given command is what `run` does
    except OSError as exc:
        say_line(
            logging.ERROR,
            "run_failed",
            error=f"cannot run {program[0]!r}: {exc.strerror}",
        )
    return EXIT_FAILURE


def _print_problems(error: ConfigError) -> None:
    print(str(error), file=sys.stderr)


def _check_config(file: str | None) -> int:
    # Deprecated keys and ignored resource attributes are logged as JSON warnings.
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    try:
        config = load_config(file)
        if config.multiprocess.enabled and config.multiprocess.dir is not None:
            from ron_metrics.multiprocess.memory_fs import check_amnesia_dir

            check_amnesia_dir(config.multiprocess.dir, amnesia=config.service.amnesia)
        if config.exporter.prometheus.tls.enabled:
            from ron_metrics.safety import check_tls_files

            check_tls_files(config.exporter.prometheus.tls)
    except ConfigError as error:
        _print_problems(error)
        return EXIT_CONFIG
    shown = config.to_dict()
    # The endpoint actually dialled (the protocol's default, or the metrics path added).
    shown["exporter"]["otlp"]["resolved_endpoint"] = config.exporter.otlp.shown_endpoint
    print(json.dumps(shown, indent=2, sort_keys=True))
    print(f"digest: blake3:{config.digest}")
    if config.sdk.disabled:
        print(
            "note: sdk.disabled (OTEL_SDK_DISABLED) is true: start() exports nothing"
            " and installs no global MeterProvider",
            file=sys.stderr,
        )

    return EXIT_OK


def _demo_config(file: str | None) -> Config:
    from ron_metrics.demo import DEMO_CARDINALITY

    defaults = dict(DEMO_DEFAULTS, cardinality=DEMO_CARDINALITY)
    return load_config(file, defaults=defaults)


def _run_demo(file: str | None, tick: float) -> int:
    from ron_metrics.demo import DemoWorkload
    from ron_metrics.logs import log_event, own_logging
    from ron_metrics.runtime import start

    if own_logging(root=True) is None:  # opted out: plain messages, as before
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    log = logging.getLogger("ron_metrics.demo")
    try:
        config = _demo_config(file)
    except ConfigError as error:
        _print_problems(error)
        return EXIT_CONFIG
    stop = threading.Event()
    reload_requested = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: reload_requested.set())
    runtime = start(config)
    try:
        log_event(
            log,
            logging.INFO,
            "listening",
            service=config.service.name,
            address=runtime.address,
            exporter=config.exporter.kind,
            otlp_endpoint=(
                config.exporter.otlp.shown_endpoint
                if config.exporter.otlp_enabled
                else None
            ),
            pid=os.getpid(),
        )
        workload = DemoWorkload(runtime.get_meter("ron_metrics.demo", "1.0"))
        while not stop.is_set():
            workload.tick()
            stop.wait(tick)
            if reload_requested.is_set():
                reload_requested.clear()
                _reload_demo(runtime, file, log)
    finally:
        runtime.shutdown(timeout=5.0)
    return EXIT_OK


def _reload_demo(runtime: Runtime, file: str | None, log: logging.Logger) -> None:
    """
    SIGHUP: re-read the config and apply it; a failure is logged and changes nothing.
    """
    from ron_metrics.logs import log_event

    try:
        changed = runtime.reload(_demo_config(file))
    except RonMetricsError as error:
        log_event(log, logging.ERROR, "reload_rejected", error=str(error))
        return
    log_event(
        log,
        logging.INFO,
        "reload_applied",
        changed=list(changed),
        address=runtime.address,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run the CLI; returns the process exit code.
    """
    args = _parser().parse_args(argv)
    try:
        if args.command == "check-config":
            return _check_config(args.file)
        if args.command == "run":
            return _run_program(args.config, not args.no_middleware, args.program)
        return _run_demo(args.config, args.tick)
    except ConfigError as error:
        _print_problems(error)
        return EXIT_CONFIG
    except RonMetricsError as error:
        print(f"ron-metrics: {error}", file=sys.stderr)
        return EXIT_FAILURE
