"""Sealing: when an hour or a local day is over (plus a grace window), its noisy cells are
drawn once, stored, and never change again.

Only sealed buckets are ever released. Each bucket is sealed in one transaction that also
moves the site's watermark for that resolution; a second collector sealing the same
bucket finds the watermark moved and keeps the values already stored, so every collector,
every restart and every later query sees the same numbers.

Records that arrive for a bucket already sealed are stored and counted in every coarser
bucket that is still open (their day), but never change a sealed cell: publishing c+Z
and then c+d+Z would reveal d exactly.
"""

from __future__ import annotations

import logging
import secrets
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from zoneinfo import ZoneInfo

from headcount_collector.config import Site
from headcount_collector.release.catalogue import MARGINALS, RESOLUTIONS, Resolution
from headcount_collector.release.policy import ReleasePolicy
from headcount_collector.release.sampler import RandomBelow, discrete_gaussian
from headcount_collector.stores.base import SealStep, Store, retention_cutoffs
from headcount_collector.timeutil import floor_hour, local_day_start

__all__ = [
    "NoisePool",
    "SealReport",
    "begin_sealing",
    "seal_due",
    "seal_history",
    "sealable_before",
]

logger = logging.getLogger("headcount_collector.sealing")

# Sealing steps per site and resolution in one call, so that catching up on a long
# history (an upgraded database) never holds the writer for long.
MAX_STEPS_PER_CALL = 48


class NoisePool:
    """Noise drawn ahead of time, so a seal's running time does not depend on the draws
    (sampler timing reveals the magnitude of what it drew)."""

    def __init__(self, randbelow: RandomBelow = secrets.randbelow) -> None:
        self._randbelow = randbelow
        self._pools: dict[Fraction, deque[int]] = {}

    def fill(self, variance: Fraction, count: int) -> None:
        pool = self._pools.setdefault(variance, deque())
        while len(pool) < count:
            pool.append(discrete_gaussian(variance, self._randbelow))

    def prepare(self, policy: ReleasePolicy, rows: Mapping[str, int]) -> None:
        """Draw, before a seal's transaction, as much noise as it can possibly spend: a
        draw per non-empty cell of every marginal, at most one per counter row each."""
        needed: dict[Fraction, int] = {}
        for kind, count in rows.items():
            variance = policy.budget_for(kind).variance
            needed[variance] = needed.get(variance, 0) + count * len(MARGINALS[kind])
        for variance, count in needed.items():
            self.fill(variance, count)

    def draw(self, variance: Fraction) -> int:
        pool = self._pools.get(variance)
        if pool:
            return pool.popleft()
        return discrete_gaussian(variance, self._randbelow)

    def drawer(self, policy: ReleasePolicy) -> Callable[[str], int]:
        variances = {name: budget.variance for name, budget in policy.budgets.items()}
        return lambda unit: self.draw(variances[unit])


def sealable_before(resolution: Resolution, now: float, zone: ZoneInfo, grace: int) -> int:
    """Buckets starting before this instant have ended at least ``grace`` seconds ago."""
    last_hour_end = floor_hour(now - grace)
    if resolution == "h":
        return last_hour_end
    # A day whose last hour ends past its midnight (half-hour time zones) waits for it.
    return local_day_start(last_hour_end, zone)


def _chunk_end(start: int, zone: ZoneInfo) -> int:
    """Where one sealing transaction ends: the next local midnight. Hours are sealed a
    local day at a time at most, days one at a time."""
    return local_day_start(local_day_start(start, zone) + 26 * 3600, zone)


@dataclass(slots=True)
class SealReport:
    steps: int = 0
    cells: int = 0
    behind: bool = False
    lost_races: int = 0


def begin_sealing(store: Store, site: Site, now: float) -> dict[str, int]:
    """The site's watermarks, first setting those it has none of yet. That first
    watermark is the site's origin: nothing before it was ever released."""
    state = store.seal_state(site.id)
    if all(resolution in state for resolution in RESOLUTIONS):
        return state
    # Whether days before the limit hold counts is read from their daily rows.
    store.roll_days(site, int(now))
    for resolution in RESOLUTIONS:
        if resolution in state:
            continue
        limit = sealable_before(resolution, now, site.timezone, site.policy.seal_grace_seconds)
        # Counts already stored (an upgraded database) are released from the start of
        # what retention keeps; a new site starts now.
        hourly_from, daily_from = retention_cutoffs(site, int(now))
        # Retention keeps local days; in a zone 15, 30 or 45 minutes off the hour the
        # hourly origin is the first whole hour of them, never a time inside an hour.
        start = -(-hourly_from // 3600) * 3600 if resolution == "h" else daily_from
        if not store.data_buckets(site.id, resolution, 0, limit):
            start = limit
        store.start_sealing(site.id, resolution, min(start, limit))
    return store.seal_state(site.id)


def seal_due(store: Store, site: Site, now: float, pool: NoisePool) -> SealReport:
    """Seal what is due for one site, oldest first, a bounded number of steps per call.

    The watermark moves only to local midnights or to the sealable limit (both set by the
    clock, never by the data), and each step releases every bucket in it in one
    transaction: someone watching ``sealed_until`` while a backlog is worked off learns
    nothing about which hours held counts.
    """
    report = SealReport()
    policy = site.policy
    zone = site.timezone
    # Every site's ended days are rolled up here, noised or not: their daily rows are
    # what a day is sealed from, and what a query over whole days reads.
    store.roll_days(site, int(now))
    if not policy.noise:
        return report
    state = begin_sealing(store, site, now)
    for resolution in RESOLUTIONS:
        limit = sealable_before(resolution, now, zone, policy.seal_grace_seconds)
        watermark = state[resolution]
        steps = 0
        while watermark < limit:
            if steps == MAX_STEPS_PER_CALL:
                report.behind = True
                break
            end = min(_chunk_end(watermark, zone), limit)
            pool.prepare(policy, store.raw_rows(site.id, resolution, watermark, end))
            step = SealStep(site.id, resolution, watermark, end)
            cells = store.seal(step, policy, pool.drawer(policy))
            steps += 1
            if cells is None:
                report.lost_races += 1
                refreshed = store.seal_state(site.id).get(resolution)
                if refreshed is None:
                    break
                watermark = refreshed
                continue
            watermark = end
            report.steps += 1
            report.cells += cells
    return report


def seal_history(
    store: Store, site: Site, start: int, until: int, now: float, pool: NoisePool
) -> int:
    """Release, once each, the history an import filled: the local days that [start,
    until) touches before the site's origin, each with every hour of it inside hourly
    retention, and the hours of [start, until) between the daily and the hourly origin.
    Returns the cells released.

    Every bucket is claimed whether or not it holds counts, and a claimed bucket never
    takes part again: which buckets an import can still fill is decided by the ranges
    asked for, never by who visited. A day goes with all of its hours, so that a later
    import of an earlier log finds them closed rather than counted in the hour but not in
    its day. Sites without a known origin (sealing since before schema version 6) have no
    history to fill.
    """
    policy = site.policy
    origins = store.seal_origins(site.id)
    hourly_origin, daily_origin = origins.get("h"), origins.get("d")
    if not policy.noise or hourly_origin is None or daily_origin is None:
        return 0
    # Whole days are released from their daily rows: those of every ended day complete.
    store.roll_days(site, int(now))
    zone = site.timezone
    hourly_from, daily_from = retention_cutoffs(site, int(now))
    end = min(until, hourly_origin)
    days_sealed = store.seal_state(site.id).get("d", daily_origin)
    released = 0
    day = local_day_start(max(start, hourly_from), zone)
    while day < end:
        next_day = local_day_start(day + 26 * 3600, zone)
        whole = next_day <= daily_origin and day >= daily_from
        if not whole and day < days_sealed:
            # The origin's own day, already sealed by the clock: its hours before the
            # origin would be released by the hour but never reach the day (they are
            # closed to imports for that reason).
            day = next_day
            continue
        low, high = (day, next_day) if whole else (max(day, start), min(next_day, end))
        # The hours that start inside the day, as its daily row counts them (in a zone
        # with a half-hour offset the hour across midnight belongs to the earlier day).
        first = -(-max(low, hourly_from) // 3600) * 3600
        hours = list(range(first, min(high, hourly_origin), 3600))
        if hours:
            rows = Counter(store.raw_rows(site.id, "h", hours[0], hours[-1] + 1))
            if whole:
                rows.update(store.raw_rows(site.id, "d", day, day + 1))
            pool.prepare(policy, rows)
            released += store.seal_history(
                site.id, day if whole else None, hours, policy, pool.drawer(policy)
            )
        day = next_day
    return released
