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
        now = time.monotonic()
        with self._lock:
            last = self._last.get(kind)
            if last is not None and now - last < self._interval:
                return
            self._last[kind] = now
        logger.warning(message, *args)
