"""
What the wire layer reports: self-metrics, rate-limited audit lines, TLS health.

A high rate of failed TLS handshakes makes the exposer not ready: at least
``TLS_FAILURE_THRESHOLD`` failures within the window, making up at least half of
all handshakes in it — a scraper with a wrong certificate. A rate, so one lucky
success does not hide a failing scraper and a few failures among many successes
do not flip readiness.
"""

from __future__ import annotations

import collections
import logging
import time

from ron_metrics.families import SelfMetrics
from ron_metrics.logs import RateLimitedLog

__all__ = ["WireAudit"]

_log = logging.getLogger("ron_metrics.exposer")
TLS_FAILURE_THRESHOLD = 5
TLS_FAILURE_WINDOW = 60.0
TLS_FAILURE_SHARE = 0.5
_TLS_HISTORY = 1024


class WireAudit:
    """
    The exposer's wire events: counted, logged at most once a second per kind.
    """

    def __init__(self, self_metrics: SelfMetrics, *, max_connections: int) -> None:
        self._self_metrics = self_metrics
        self._max_connections = max_connections
        self._audit = RateLimitedLog(_log)
        # (when, succeeded) for recent handshakes, oldest first.
        self._tls_handshakes: collections.deque[tuple[float, bool]] = collections.deque(
            maxlen=_TLS_HISTORY
        )

    def timeout(self, op: str, *, peer: str) -> None:
        """
        Count and log an I/O timeout (``read``, ``write`` or ``idle``).
        """
        self._self_metrics.io_timeouts.add(1, {"op": op})
        self._audit.log(logging.WARNING, f"{op}_timeout", op=op, peer_addr=peer)

    def refused_connection(self, *, peer: str) -> None:
        """
        Count and log a connection closed at once because the connection cap was reached.
        """
        self._self_metrics.rejected.add(1, {"reason": "connections"})
        self._audit.log(
            logging.WARNING,
            "connection_refused",
            reason="connections",
            limit=self._max_connections,
            peer_addr=peer,
        )

    def tls_handshake(self, *, ok: bool, peer: str, error: str = "") -> None:
        """
        Record a handshake (the client sent bytes); count and log it if it failed.
        """
        self._tls_handshakes.append((time.monotonic(), ok))
        if not ok:
            self._self_metrics.tls_handshake_failures.add(1)
            self._audit.log(
                logging.WARNING, "tls_handshake_failed", error=error, peer_addr=peer
            )

    def tls_probe(self, *, peer: str) -> None:
        """
        Count and log a TLS connection closed before the client sent a byte (a probe).
        """
        self._self_metrics.rejected.add(1, {"reason": "tls_probe"})
        self._audit.log(logging.INFO, "tls_probe", peer_addr=peer)

    def tls_failing(self) -> bool:
        """
        True when recent handshakes mostly fail (see the module docstring).
        """
        now = time.monotonic()
        recent = self._tls_handshakes
        while recent and now - recent[0][0] > TLS_FAILURE_WINDOW:
            recent.popleft()
        failures = sum(1 for _, ok in recent if not ok)
        return (
            failures >= TLS_FAILURE_THRESHOLD
            and failures >= TLS_FAILURE_SHARE * len(recent)
        )
