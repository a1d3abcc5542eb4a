"""What the tracker did: a frozen snapshot for users, mutable counters for the SDK."""

from __future__ import annotations

import threading
from dataclasses import dataclass

__all__ = ["Counters", "TrackerStats"]


@dataclass(frozen=True, slots=True)
class TrackerStats:
    """A snapshot of one process's tracker, from ``Tracker.stats()``.

    ``recorded`` counts requests and events; ``overflowed`` those among them counted into
    route ``(other)`` because ``max_keys`` distinct keys already existed, ``discarded``
    those lost past a hard ceiling above that. ``sent``, ``dropped`` and ``buffered``
    count batches (one POST each): acknowledged by the collector, given up on (rejected,
    or pushed out of a full buffer, or too old), and waiting to be sent; when the
    collector refuses a single record (say an event the site has not declared), that one
    record is dropped and counted in ``dropped`` too, and the rest of its batch is sent
    again under a new batch id (nothing of a refused batch is ever stored). ``late``
    counts what the collector stored for hours it had already sealed and released: those
    counts reach their day's numbers if the day is still open, never the sealed hour's
    (see the README, "Privacy"). ``retried``
    counts repeated attempts to send a batch, ``errors`` unexpected exceptions the SDK
    swallowed instead of raising into the app, and invalid custom events.
    """

    recorded: int = 0
    overflowed: int = 0
    discarded: int = 0
    sent: int = 0
    retried: int = 0
    dropped: int = 0
    buffered: int = 0
    errors: int = 0
    late: int = 0


class Counters:
    """Sender-side and error counters of one process; the count table keeps its own."""

    __slots__ = ("_lock", "dropped", "errors", "late", "retried", "sent")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sent = 0
        self.retried = 0
        self.dropped = 0
        self.errors = 0
        self.late = 0

    def add(
        self,
        *,
        sent: int = 0,
        retried: int = 0,
        dropped: int = 0,
        errors: int = 0,
        late: int = 0,
    ) -> None:
        with self._lock:
            self.sent += sent
            self.retried += retried
            self.dropped += dropped
            self.errors += errors
            self.late += late
