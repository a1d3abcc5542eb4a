"""The hourly send schedule: each hour's counts leave at a random moment of the next hour."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Mapping

from headcount._table import Key, fold_point, merge_counts

__all__ = ["HourlyHold"]


class HourlyHold:
    """Counts held back per UTC hour until a random release time within the following hour.

    With immediate sending, the time a batch arrives tells the collector roughly when its
    requests happened (within one flush interval); holding each hour until a uniformly
    random moment of the next one leaves the collector knowing only the hour, which the
    records already say. The price: numbers appear 1-2 hours late, and counts still held
    when the process dies without a clean shutdown are lost.
    """

    def __init__(self, max_keys: int, rng: random.Random | None = None) -> None:
        self._max_keys = max_keys
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._hours: dict[int, dict[Key, int]] = {}
        self._release_at: dict[int, float] = {}
        self._fold_at: dict[int, int] = {}

    def add(self, counts: Mapping[Key, int]) -> None:
        by_hour: dict[int, dict[Key, int]] = {}
        for key, n in counts.items():
            by_hour.setdefault(key[1], {})[key] = n
        with self._lock:
            for hour, hour_counts in by_hour.items():
                if hour not in self._hours:
                    self._hours[hour] = {}
                    self._release_at[hour] = hour + 3600 + self._rng.uniform(0, 3600)
                    self._fold_at[hour] = fold_point(self._max_keys)
                merge_counts(self._hours[hour], hour_counts, self._fold_at[hour])

    def take_due(self, *, everything: bool = False, now: float | None = None) -> dict[Key, int]:
        """Remove and return the counts of every hour whose release time has come."""
        wall = time.time() if now is None else now
        due: dict[Key, int] = {}
        with self._lock:
            for hour in sorted(self._hours):
                if everything or self._release_at[hour] <= wall:
                    due.update(self._hours.pop(hour))
                    del self._release_at[hour]
                    del self._fold_at[hour]
        return due

    def snapshot(self) -> dict[Key, int]:
        with self._lock:
            return {key: n for hour in self._hours.values() for key, n in hour.items()}
