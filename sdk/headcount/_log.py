"""The ``headcount`` logger, rate-limited so a broken collector cannot flood app logs."""

from __future__ import annotations

import logging
import threading
import time

__all__ = ["RateLimitedLog", "logger"]

logger = logging.getLogger("headcount")


class RateLimitedLog:
    """At most one line per kind per ``interval`` seconds. Never given request data."""

    def __init__(self, interval: float = 60.0) -> None:
        self._interval = interval
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def warning(self, kind: str, message: str, *args: object) -> None:
        if self._due(kind):
            logger.warning(message, *args)

    def exception(self, kind: str, message: str, *args: object) -> None:
        """From an ``except`` block: the message and the traceback, rate-limited."""
        if self._due(kind):
            logger.exception(message, *args)

    def error(self, kind: str, message: str, *args: object) -> None:
        """For what needs an operator now (a refused token), rate-limited all the same."""
        if self._due(kind):
            logger.error(message, *args)

    def _due(self, kind: str) -> bool:
        now = time.monotonic()
        with self._lock:
            last = self._last.get(kind)
            if last is not None and now - last < self._interval:
                return False
            self._last[kind] = now
        return True
