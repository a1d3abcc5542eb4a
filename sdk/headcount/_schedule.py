"""The hourly send schedule: each hour's counts leave at a random moment of the next hour."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Mapping

from headcount._table import Key, fold_point, merge_counts

__all__ = ["HourlyHold"]


class HourlyHold:
    """Counts held back until a random moment of the hour after the one they belong to.

    With immediate sending, the time a batch arrives tells the collector roughly when its
    requests happened (within one flush interval); holding each hour until a uniformly
    random moment of the next one leaves the collector knowing only the hour, which the
    records already say. The price: numbers appear 1-2 hours late, and counts still held
    when the process dies without a clean shutdown are lost.

    Counts are held in windows, one per hour. A count collected within ``settle``
    seconds of its hour's end (by when the sender has collected every request of that
    hour) joins its own hour's window. One collected later is late by nature (a visit is
    counted under the hour it began but only once it ends, often hours later) and joins
    the window of the hour it was collected in: sent at once it would tell the time its
    visitor left, and the hour it was collected in is all its arrival tells. Each window
    leaves at a random moment after ``settle`` seconds into the next hour.
    """

    def __init__(
        self, max_keys: int, *, settle: float = 0.0, rng: random.Random | None = None
    ) -> None:
        self._max_keys = max_keys
        # Never the whole hour: the release moment must stay random within it.
        self._settle = min(max(0.0, settle), 1800.0)
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._windows: dict[int, dict[Key, int]] = {}
        self._release_at: dict[int, float] = {}
        self._fold_at: dict[int, int] = {}

    def add(self, counts: Mapping[Key, int], now: float) -> None:
        """Hold ``counts``, collected at ``now`` (the wall clock's seconds)."""
        current = int(now) // 3600 * 3600
        with self._lock:
            by_window: dict[int, dict[Key, int]] = {}
            for key, n in counts.items():
                window = key[1]
                # Collected after its hour's end plus settle, a count is late by nature
                # (a visit that just ended): it joins the current hour's window, whether
                # or not its own is still held. Joining its own while held would tell,
                # by which batch carried it, whether it ended before or after that
                # window's random moment.
                if now >= window + 3600 + self._settle:
                    window = current
                by_window.setdefault(window, {})[key] = n
            for window, window_counts in by_window.items():
                if window not in self._windows:
                    self._windows[window] = {}
                    self._release_at[window] = (
                        window + 3600 + self._settle + self._rng.uniform(0, 3600 - self._settle)
                    )
                    self._fold_at[window] = fold_point(self._max_keys)
                merge_counts(self._windows[window], window_counts, self._fold_at[window])

    def take_due(self, *, everything: bool = False, now: float | None = None) -> dict[Key, int]:
        """Remove and return the counts of every window whose release time has come."""
        wall = time.time() if now is None else now
        due: dict[Key, int] = {}
        with self._lock:
            for window in sorted(self._windows):
                if everything or self._release_at[window] <= wall:
                    # A late count's key can be in two windows at once (a visit's, in
                    # its own hour's and in the hour it ended).
                    for key, n in self._windows.pop(window).items():
                        due[key] = due.get(key, 0) + n
                    del self._release_at[window]
                    del self._fold_at[window]
        return due

    def take_held(self) -> list[tuple[int, float, dict[Key, int]]]:
        """Remove and return every window still held: (hour, release time, counts)."""
        with self._lock:
            held = [(w, self._release_at[w], self._windows[w]) for w in sorted(self._windows)]
            self._windows.clear()
            self._release_at.clear()
            self._fold_at.clear()
        return held

    def adopt(self, hour: int, release_at: float, counts: Mapping[Key, int]) -> None:
        """Hold a window another process held: joined to this one's window of the same
        hour (which keeps its own moment), or held until ``release_at``."""
        with self._lock:
            if hour not in self._windows:
                self._windows[hour] = {}
                self._release_at[hour] = release_at
                self._fold_at[hour] = fold_point(self._max_keys)
            merge_counts(self._windows[hour], counts, self._fold_at[hour])

    def snapshot(self) -> dict[Key, int]:
        with self._lock:
            snapshot: dict[Key, int] = {}
            for window in self._windows.values():
                for key, n in window.items():
                    snapshot[key] = snapshot.get(key, 0) + n
            return snapshot
