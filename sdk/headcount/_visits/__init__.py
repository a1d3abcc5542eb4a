"""Visits: one browser's pageviews linked in memory, sent only as a finished visit's ranges.

A visit is a run of pageviews from one browser with no gap of ``visit_gap`` seconds or
more. Pageviews are linked by a keyed hash (BLAKE2b, 128 bits) of the client address,
the user agent and the host. In memory the key is a random secret replaced every 24
hours; in Redis it is derived from ``visits_secret`` and the UTC day. Replacing the key
closes every open visit, so no link outlives a day. An idle visit is closed by the
sender's periodic sweep, and shutdown closes what this process can still close.

Nothing about an open visit is sent, logged or written anywhere. A closed visit becomes
one count-table key, ``("visit", start_hour, entry_route, duration_label, pages_label)``,
aggregated and sent like every other count.

Modules: ``_link`` (the keyed hash and a finished visit's key, shared by both stores),
``_memory`` (one process's open visits) and ``_redis`` (open visits shared by workers
through Redis, imported only when asked for: redis-py is optional).
"""

from __future__ import annotations

from headcount._log import RateLimitedLog
from headcount._settings import TrackerSettings
from headcount._stats import Counters
from headcount._visits._link import KEY_LIFETIME, Clock, CountPageview, Emit, Linked, VisitStore
from headcount._visits._memory import MemoryVisits

__all__ = ["KEY_LIFETIME", "Linked", "MemoryVisits", "VisitStore", "build_visit_store"]


def build_visit_store(
    settings: TrackerSettings,
    emit: Emit,
    count_pageview: CountPageview,
    counters: Counters,
    log: RateLimitedLog,
    clock: Clock,
) -> VisitStore | None:
    """The store ``settings`` ask for, or None when visits are off."""
    mode = settings.visits_mode
    if mode == "off":
        return None
    if mode == "memory":
        return MemoryVisits(settings, emit, clock=clock)
    # Imported only when asked for: redis-py is an optional dependency.
    from headcount._visits._redis import RedisVisits

    return RedisVisits(settings, emit, counters, log, count_pageview=count_pageview)
