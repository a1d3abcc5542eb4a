"""Calendar buckets in a site's time zone, expressed as UTC instants.

Counters are stored by UTC hour; days, weeks and months are the site's local ones, so
their edges move with daylight saving time and are computed here, not in SQL.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo

__all__ = [
    "Unit",
    "bucket_starts",
    "floor_hour",
    "is_local_midnight",
    "local_day_start",
    "local_midnight",
    "to_local_iso",
]

Unit = Literal["day", "week", "month"]


def floor_hour(ts: float) -> int:
    return int(ts) // 3600 * 3600


def _local_midnight(day: date, zone: ZoneInfo) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=zone).timestamp())


def _local_day_start(ts: int, zone: ZoneInfo) -> int:
    return local_midnight(datetime.fromtimestamp(ts, zone).date(), zone)


# A page of answers asks for the same few hundred day edges thousands of times (every
# question splits its period into days), and each costs two datetimes with a zone. The
# arguments are the callers' (any instant, any day), so the caches are bounded; a question
# longer than that only misses. Assigned with their types: a bare lru_cache wrapper would
# let mypy accept any arguments.
_CACHED_CALLS = 4096
local_midnight: Callable[[date, ZoneInfo], int] = lru_cache(maxsize=_CACHED_CALLS)(_local_midnight)
"""The UTC instant at which ``day`` begins in ``zone``."""
local_day_start: Callable[[int, ZoneInfo], int] = lru_cache(maxsize=_CACHED_CALLS)(_local_day_start)
"""The UTC instant at which the local day containing ``ts`` began."""


def _unit_start(day: date, unit: Unit) -> date:
    if unit == "week":
        return day - timedelta(days=day.weekday())
    if unit == "month":
        return day.replace(day=1)
    return day


def _next_start(day: date, unit: Unit) -> date:
    if unit == "day":
        return day + timedelta(days=1)
    if unit == "week":
        return day + timedelta(days=7)
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1)


def bucket_starts(start: int, end: int, unit: Unit, zone: ZoneInfo) -> list[tuple[int, int]]:
    """The local calendar buckets overlapping [start, end) as (start, stop) UTC instants."""
    first = datetime.fromtimestamp(start, zone).date()
    day = _unit_start(first, unit)
    buckets: list[tuple[int, int]] = []
    while True:
        following = _next_start(day, unit)
        lo, hi = local_midnight(day, zone), local_midnight(following, zone)
        if lo >= end:
            break
        buckets.append((lo, hi))
        day = following
    return buckets


def to_local_iso(ts: int, zone: ZoneInfo) -> str:
    return datetime.fromtimestamp(ts, UTC).astimezone(zone).isoformat()


def is_local_midnight(ts: int, zone: ZoneInfo) -> bool:
    return local_day_start(ts, zone) == ts
