"""Retention: roll each site's old hourly rows into days and drop what it no longer keeps.

Run by the collector's retention loop and by ``headcount-collector purge``; kept apart from
the web app so that purging loads no HTTP stack.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from headcount_collector.config import Settings, Site
from headcount_collector.errors import StoreUnavailable
from headcount_collector.stores.base import RetentionResult, Store

if TYPE_CHECKING:
    from headcount_collector.metrics import Metrics

__all__ = ["run_retention"]

# The app's logger: an operator filters one name for the collector's own lines.
logger = logging.getLogger("headcount_collector")


def run_retention(
    store: Store,
    sites: list[Site],
    settings: Settings,
    now: float,
    metrics: Metrics | None = None,
) -> dict[str, RetentionResult | None]:
    """Roll up and delete old rows for each site; logs one line per run, even an idle one,
    so an operator can see that retention runs. None for a site whose run failed."""
    results: dict[str, RetentionResult | None] = {}
    for site in sites:
        try:
            results[site.id] = store.apply_retention(site, int(now), settings.dedupe_seconds)
        except StoreUnavailable as exc:
            logger.warning("retention for site %s failed, will retry: %s", site.id, exc)
            results[site.id] = None
    done = [r for r in results.values() if r is not None]
    if metrics is not None:
        metrics.retention_run(len(done) == len(results))
    logger.info(
        "retention run: %d of %d sites done, %d hourly rows rolled up, %d daily rows deleted",
        len(done),
        len(results),
        sum(r.hourly_rolled_up for r in done),
        sum(r.daily_deleted for r in done),
    )
    return results
