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
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from zoneinfo import ZoneInfo

from headcount_collector.release.catalogue import RESOLUTIONS, Resolution
from headcount_collector.release.policy import ReleasePolicy
from headcount_collector.release.sampler import RandomBelow, discrete_gaussian
from headcount_collector.stores.base import SealStep, Store
from headcount_collector.timeutil import floor_hour, local_day_start

__all__ = ["NoisePool", "SealReport", "seal_due", "sealable_before"]

logger = logging.getLogger("headcount_collector.sealing")

# Buckets sealed per site and resolution in one call, so that catching up on a long
# history (an upgraded database) never holds the writer for long.
MAX_BUCKETS_PER_CALL = 48


class NoisePool:
    """Noise drawn ahead of time, so a seal's running time does not depend on the draws
    (sampler timing reveals the magnitude of what it drew)."""

    def __init__(self, randbelow: RandomBelow = secrets.randbelow) -> None:
        self._randbelow = randbelow
        self._pools: dict[Fraction, deque[int]] = {}
        # Cells the last seal of each resolution needed: the next one likely needs as many.
        self._last_cells: dict[str, int] = {}

    def prepare(self, policy: ReleasePolicy, resolution: str) -> None:
        """Draw enough noise for the next seal before its transaction starts. Cells whose
        noisy value misses the threshold draw too, hence the margin."""
        expected = max(256, 4 * self._last_cells.get(resolution, 0))
        for budget in policy.budgets.values():
            self.fill(budget.variance, expected)

    def used(self, resolution: str, cells: int) -> None:
        self._last_cells[resolution] = cells

    def fill(self, variance: Fraction, count: int) -> None:
        pool = self._pools.setdefault(variance, deque())
        while len(pool) < count:
            pool.append(discrete_gaussian(variance, self._randbelow))

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
    if resolution == "h":
        return floor_hour(now - grace - 3600) + 3600
    return local_day_start(int(now - grace), zone)


def _bucket_end(resolution: Resolution, bucket: int, zone: ZoneInfo) -> int:
    if resolution == "h":
        return bucket + 3600
    # The next local midnight: 23, 24 or 25 hours later.
    return local_day_start(bucket + 26 * 3600, zone)


@dataclass(slots=True)
class SealReport:
    buckets: int = 0
    cells: int = 0
    behind: bool = False
    lost_races: int = 0
    per_resolution: dict[str, int] = field(default_factory=dict)


def seal_due(
    store: Store,
    site_id: str,
    zone: ZoneInfo,
    policy: ReleasePolicy,
    now: float,
    pool: NoisePool,
) -> SealReport:
    """Seal every bucket of one site that is due, oldest first, a bounded number per call."""
    report = SealReport()
    if not policy.noise:
        return report
    state = store.seal_state(site_id)
    for resolution in RESOLUTIONS:
        limit = sealable_before(resolution, now, zone, policy.seal_grace_seconds)
        watermark = state.get(resolution)
        if watermark is None:
            # First run for this site (or an upgraded database): start at its oldest
            # counts, so history that is already stored gets released too.
            existing = store.data_buckets(site_id, resolution, 0, limit)
            watermark = existing[0] if existing else limit
            store.start_sealing(site_id, resolution, watermark)
            watermark = store.seal_state(site_id).get(resolution, watermark)
        if watermark >= limit:
            continue
        due = store.data_buckets(site_id, resolution, watermark, limit)
        if len(due) > MAX_BUCKETS_PER_CALL:
            due = due[:MAX_BUCKETS_PER_CALL]
            report.behind = True
        for bucket in due:
            if bucket < watermark:  # sealed meanwhile by another collector
                continue
            end = _bucket_end(resolution, bucket, zone)
            pool.prepare(policy, resolution)
            step = SealStep(site_id, resolution, bucket, watermark, end)
            cells = store.seal(step, policy, pool.drawer(policy))
            if cells is None:
                report.lost_races += 1
                refreshed = store.seal_state(site_id).get(resolution)
                if refreshed is None or refreshed >= limit:
                    break
                watermark = refreshed
                continue
            watermark = end
            pool.used(resolution, cells)
            report.buckets += 1
            report.cells += cells
            report.per_resolution[resolution] = report.per_resolution.get(resolution, 0) + 1
        if not report.behind and watermark < limit:
            # Nothing left but empty buckets: move the watermark over them.
            empty = SealStep(site_id, resolution, None, watermark, limit)
            moved = store.seal(empty, policy, pool.drawer(policy))
            if moved is None:
                report.lost_races += 1
    return report
