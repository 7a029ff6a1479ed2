"""
Lines written straight to stderr (the runner's and autostart's) stay whole when
other threads log at the same moment: every line of the stream is one JSON object.
"""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import clean_env

RACE = """
import logging, sys, threading
from ron_metrics.logs import log_event, own_logging, say_line

sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
own_logging()
logger = logging.getLogger("ron_metrics.race")
go = threading.Event()

def straight(n):
    go.wait()
    for i in range(n):
        say_line(logging.INFO, "straight", i=i)

def logged(n):
    go.wait()
    for i in range(n):
        log_event(logger, logging.WARNING, "logged", i=i)

threads = [threading.Thread(target=f, args=(1500,)) for f in (straight, logged) * 2]
for thread in threads:
    thread.start()
go.set()
for thread in threads:
    thread.join()
"""


def test_straight_lines_and_logged_lines_never_share_a_line() -> None:
    done = subprocess.run(
        [sys.executable, "-c", RACE],
        capture_output=True,
        env=clean_env(),
        timeout=120,
        check=True,
    )
    lines = done.stderr.decode().splitlines()
    events = [json.loads(line)["event"] for line in lines]  # each line whole
    assert events.count("straight") == 3000
    assert events.count("logged") == 3000
    assert len(lines) == 6000
