"""What ingest hands to the store: one validated batch, its counts merged by key."""

from __future__ import annotations

from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

__all__ = ["CounterKey", "PendingBatch"]

# (kind, hour, dimension values in the kind's column order)
CounterKey = tuple[str, int, tuple[str | int, ...]]


@dataclass(slots=True)
class PendingBatch:
    """A validated batch, already merged by key, waiting for its group commit."""

    site: str
    batch_id: str
    counts: dict[CounterKey, int]
    records: int
    # The visits mode the sender declared ("off", "memory", "redis"), if any.
    visits: str | None = None
    # The site's time zone: each hourly count is also added to the row of its local day.
    zone: ZoneInfo = field(default=ZoneInfo("UTC"))
    # Set for an import's batch, and only for one: its batch id is remembered until then
    # (its newest hour leaving hourly retention), not just for the dedupe window, since
    # ingest takes an import's hours that far back.
    keep_id_until: int | None = None
    # Set by the commit: per table, counts moved into (other) by the per-hour key cap.
    spilled: dict[str, int] = field(default_factory=dict)
    # Set by the commit: counts for hours already sealed (stored, never released there).
    late: int = 0
