"""The store interface and the SQL both relational backends share.

A store is synchronous and owns its connections; the app calls it from one dedicated
writer thread (group commit) and from worker threads for queries.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal, Protocol
from zoneinfo import ZoneInfo

from headcount import wire
from headcount_collector.config import Site
from headcount_collector.pending import CounterKey, PendingBatch
from headcount_collector.release.catalogue import MARGINALS, Marginal, Resolution
from headcount_collector.release.policy import ReleasePolicy
from headcount_collector.tables import TABLES, Table, spilled_key
from headcount_collector.timeutil import Unit, bucket_starts, local_day_start

__all__ = [
    "BATCH_ID_SECRET_NAME",
    "DEFAULT_KEY_CAP",
    "LEGACY_IDS_SQL",
    "SEAL_PARAMS_SQL",
    "CounterQuery",
    "Dialect",
    "KeyCounts",
    "OneOf",
    "ReleasedQuery",
    "RetentionResult",
    "SealParams",
    "SealStep",
    "Store",
    "applied_sites",
    "claimed_buckets_sql",
    "counter_rows",
    "data_buckets_sql",
    "declared_modes",
    "delete_expired",
    "ensure_secret",
    "first_copies",
    "forget_legacy_copies",
    "legacy_batch_id",
    "mark_late",
    "needs_roll",
    "over_rolled_days",
    "raw_rows_sql",
    "release_table",
    "remembered_ids",
    "retention_cutoffs",
    "roll_next_day",
    "rolled_watermarks",
    "seal_bucket",
    "seal_claimed",
    "seal_params_of",
    "spill_excess_keys",
    "stored_batch_id",
]


@dataclass(frozen=True, slots=True)
class CounterQuery:
    table: Table
    site: str
    start: int
    end: int
    # Each grouped dimension: a column name, or ("prop", NAME) for an event property.
    group_by: tuple[str | tuple[str, str], ...] = ()
    filters: tuple[tuple[str | tuple[str, str], str | int], ...] = ()
    # "hour" groups by stored hour, "total" not at all, a Unit by local calendar buckets.
    interval: Literal["hour", "total"] | Unit = "day"
    # Which rows to read: "h" hourly, or "d" whole local days: the daily rows where the
    # days are rolled up, which hold the same counts in far fewer rows.
    resolution: Literal["h", "d"] = "h"
    zone_name: str = "UTC"
    buckets: tuple[tuple[int, int], ...] = field(default=())


@dataclass(frozen=True, slots=True)
class RetentionResult:
    hourly_rolled_up: int
    daily_deleted: int
    batch_ids_forgotten: int


class Store(Protocol):
    # Distinct hourly keys per site, table and hour before the rest fold into (other).
    key_cap: int

    def migrate(self) -> None:
        """Create or upgrade the schema; safe to run from several processes at once."""

    def commit(self, batches: Sequence[PendingBatch], now: int) -> list[bool]:
        """Apply ``batches`` in one transaction; per batch, False when it was a duplicate."""

    def query(self, query: CounterQuery) -> list[tuple[int | str | None, ...]]:
        """Rows of (bucket start or None, *group values, count). Resolution "d" reads the
        daily rows of the days rolled up and the hourly rows of the days after them."""

    def apply_retention(self, site: Site, now: int, dedupe_seconds: int) -> RetentionResult:
        """Roll hourly rows older than the site keeps into daily rows; drop expired rows."""

    def rolled_until(self, site: str) -> int | None:
        """The local midnight before which ``site``'s daily rows hold every count, and
        from which they hold none; None while they are written at ingest for every day
        (no roll-up has run for the site yet)."""

    def roll_days(self, site: Site, now: int) -> int:
        """Roll ``site``'s hourly rows up into the rows of its local days that have ended
        by ``now``, a day per transaction (``roll_next_day``); the watermark after it."""

    def declared_visit_modes(self, site: str) -> dict[str, int]:
        """Visits modes this site's senders declared, with when each was last seen."""

    def meta_secret(self, name: str) -> bytes:
        """A random secret kept in the database under ``name``, made on first use."""

    def seal_state(self, site: str) -> dict[str, int]:
        """Per resolution ("h", "d"), the bucket start before which everything is sealed."""

    def start_sealing(self, site: str, resolution: Resolution, watermark: int) -> None:
        """Record where sealing starts for a site that has none yet (first writer wins);
        that first watermark is kept as the site's origin."""

    def seal_origins(self, site: str) -> dict[str, int]:
        """Per resolution, where sealing began (absent when that is unknown: a site
        sealing before schema version 6)."""

    def claimed_buckets(self, site: str, resolution: Resolution, start: int, end: int) -> list[int]:
        """Bucket starts in [start, end) already released once (see ``seal_history``)."""

    def seal_params(self, site: str) -> list[SealParams]:
        """The parameters this site's cells were sealed under, with the buckets each
        covered (from schema version 9 on)."""

    def seal_history(
        self,
        site: str,
        day: int | None,
        hours: Sequence[int],
        policy: ReleasePolicy,
        draw: Callable[[str], int],
    ) -> int:
        """``seal_claimed`` in one transaction: history before the site's origin, each
        bucket released at most once; returns the cells released."""

    def data_buckets(self, site: str, resolution: Resolution, start: int, end: int) -> list[int]:
        """Bucket starts in [start, end) that hold any counts, ascending."""

    def raw_rows(self, site: str, resolution: Resolution, start: int, end: int) -> dict[str, int]:
        """Per record kind, how many counter rows [start, end) holds (sizes noise pools)."""

    def seal(self, step: SealStep, policy: ReleasePolicy, draw: Callable[[str], int]) -> int | None:
        """Release ``step.bucket``'s noisy cells and move the watermark from
        ``step.expected`` to ``step.sealed_until``, in one transaction; None when another
        writer moved it first."""

    def query_released(self, query: ReleasedQuery) -> list[tuple[int | str | None, ...]]:
        """Rows of (target bucket, *group values, sum of noisy values, sum of variances)."""

    def close(self) -> None: ...


def retention_cutoffs(site: Site, now: int) -> tuple[int, int]:
    """(hourly rows before this go, daily rows before this go): local midnights."""
    zone = site.timezone
    hourly = local_day_start(now - site.hourly_seconds, zone)
    daily = local_day_start(now - site.keep_days * 86400, zone)
    return hourly, daily


def delete_expired(
    execute: Callable[..., Any], site: Site, now: int, dedupe_seconds: int, placeholder: str
) -> RetentionResult:
    """Apply ``site``'s retention inside the caller's transaction.

    The caller rolls the site's ended days up first (``Store.roll_days``), so rolling
    hours up into days is deleting the hourly rows past ``hourly_days``; those of days
    not rolled up yet (the roll-up fell behind) stay. The watermark is read without a
    lock: it only moves forward, and a count for an hour before it goes to both rows.
    """
    hourly_cutoff, daily_cutoff = retention_cutoffs(site, now)
    ph = placeholder
    rolled = rolled_watermarks(execute, [site.id], ph).get(site.id)
    if rolled is not None:
        hourly_cutoff = min(hourly_cutoff, rolled)
    if site.policy.noise:
        # True counts stay until their bucket is sealed: a backlog (an upgraded database,
        # a collector that was down) is released before anything is rolled up or dropped.
        sealed = dict(
            execute(
                f"SELECT res, sealed_until FROM hc_seal WHERE site = {ph}", (site.id,)
            ).fetchall()
        )
        hourly_cutoff = min(hourly_cutoff, int(sealed.get("h", 0)))
        daily_cutoff = min(daily_cutoff, int(sealed.get("d", 0)))

    def delete_before(table: str, resolution: Resolution, cutoff: int) -> int:
        return int(
            execute(
                f"DELETE FROM {table} WHERE site = {ph} AND res = '{resolution}' AND bucket < {ph}",
                (site.id, cutoff),
            ).rowcount
        )

    rolled = deleted = 0
    for table in TABLES.values():
        rolled += delete_before(table.name, "h", hourly_cutoff)
        deleted += delete_before(table.name, "d", daily_cutoff)
        delete_before(release_table(table.kind), "h", hourly_cutoff)
        delete_before(release_table(table.kind), "d", daily_cutoff)
    delete_before("hc_rel_buckets", "h", hourly_cutoff)
    delete_before("hc_rel_buckets", "d", daily_cutoff)
    # Which buckets live sealing released is forgotten with the cells: the watermark
    # keeps them closed. Before the origin a claim is the only guard, so it stays: were
    # it forgotten, a longer retention later would let the same history in again, and
    # out again as a second noisy copy of the same requests.
    origins = dict(
        execute(f"SELECT res, origin FROM hc_seal WHERE site = {ph}", (site.id,)).fetchall()
    )
    for resolution, cutoff in (("h", hourly_cutoff), ("d", daily_cutoff)):
        origin = origins.get(resolution)
        execute(
            f"DELETE FROM hc_sealed_data WHERE site = {ph} AND res = {ph} AND bucket < {ph} "
            f"AND bucket >= {ph}",
            (site.id, resolution, cutoff, -1 if origin is None else int(origin)),
        )
    forgotten = execute(
        f"DELETE FROM hc_batch WHERE site = {ph} AND received < {ph} "
        f"AND (keep_until IS NULL OR keep_until < {ph})",
        (site.id, now - dedupe_seconds, now),
    ).rowcount
    return RetentionResult(rolled, deleted, forgotten)


DEFAULT_KEY_CAP = 10_000
# The kinds with open-ended dimensions, which a flood of new keys can fold into (other).
_FOLDING_KINDS = frozenset(name for name, kind in wire.KINDS.items() if kind.folds)


class KeyCounts:
    """Per worker, an upper bound on how many hourly keys each (site, table, hour) holds,
    so that the database is asked only when a bucket gets near its cap; and the secret
    that hides where exactly each bucket's cap lies.

    The bound counts only this worker's writes. Other workers and collectors on the same
    database write keys too, so a bound is trusted for ``max_age`` seconds at most, and
    the store calls ``forget`` whenever it can tell that someone else wrote (SQLite's
    ``data_version``): otherwise N writers could each fill a bucket to its cap, N times
    the cap together.
    """

    def __init__(self, limit: int = 50_000, max_age: float = float("inf")) -> None:
        self._known: dict[tuple[str, str, int], tuple[int, float]] = {}
        self._limit = limit
        self._max_age = max_age
        self.secret = b""

    def get(self, key: tuple[str, str, int]) -> int | None:
        found = self._known.get(key)
        if found is None or time.monotonic() - found[1] > self._max_age:
            return None
        return found[0]

    def set(self, key: tuple[str, str, int], count: int, *, counted: bool) -> None:
        """Record ``count`` for ``key``; ``counted`` when it was just read from the
        database (its age starts now), not added to an earlier bound (which keeps its age)."""
        if len(self._known) >= self._limit:
            self._known.clear()  # only an optimisation: the database stays the truth
        earlier = self._known.get(key)
        since = time.monotonic() if counted or earlier is None else earlier[1]
        self._known[key] = (count, since)

    def forget(self) -> None:
        """Someone else wrote: every bound is to be read again from the database."""
        self._known.clear()

    def cap_for(self, cap: int, bucket: tuple[str, str, int]) -> int:
        """``cap`` less a secret offset of up to half of it, fixed per site, table and
        hour. Whether a key is folded into (other) depends on how many keys other people
        brought; with the exact fold point unknown, watching where folding starts tells
        next to nothing about one more visitor (about 2/cap per hour)."""
        site, kind, hour = bucket
        digest = hmac.new(self.secret, f"{site}\x00{kind}\x00{hour}".encode(), "sha256")
        return cap - int.from_bytes(digest.digest()[:8], "big") % max(1, cap // 2)


KEY_CAP_SECRET_NAME = "key_cap_secret"  # noqa: S105 - a row name, not a secret


def ensure_secret(
    execute: Callable[..., Any], placeholder: str, name: str = KEY_CAP_SECRET_NAME
) -> bytes:
    """A random secret of the collector's, made once and shared by every worker and
    collector of the database (inside the caller's transaction)."""
    ph = placeholder
    execute(
        f"INSERT INTO hc_meta (key, value) VALUES ({ph}, {ph}) ON CONFLICT (key) DO NOTHING",
        (name, secrets.token_hex(32)),
    )
    row = execute(f"SELECT value FROM hc_meta WHERE key = {ph}", (name,)).fetchone()
    return bytes.fromhex(str(row[0]))


def spill_excess_keys(
    execute: Callable[..., Any],
    batches: Sequence[PendingBatch],
    applied: Sequence[bool],
    cap: int,
    known: KeyCounts,
    placeholder: str,
) -> None:
    """Fold keys past ``cap`` distinct keys per site, table and hour into (other).

    A write token can otherwise create rows without end (every record a new route or
    referrer). Runs inside the commit's transaction, before the upserts; the counts stay,
    only their open-ended labels become (other), and each batch's ``spilled`` says how
    many counts moved.
    """
    ph = placeholder
    # How many keys each bucket gets, counted without building the key sets: an upper
    # bound (a key in two batches of the group counts twice), which is all the estimate
    # needs; the exact sets are built only for a bucket near its cap.
    sizes: dict[tuple[str, str, int], int] = {}
    for batch, ok in zip(batches, applied, strict=True):
        if not ok:
            continue
        site = batch.site
        for kind, hour, _ in batch.counts:
            if kind in _FOLDING_KINDS:
                bucket = (site, kind, hour)
                sizes[bucket] = sizes.get(bucket, 0) + 1
    moves: dict[tuple[str, str, int, tuple[str | int, ...]], tuple[str | int, ...]] = {}
    for bucket, size in sizes.items():
        site, kind, hour = bucket
        table = TABLES[kind]
        estimate = known.get(bucket)
        counted = estimate is None
        if estimate is None:
            row = execute(
                f"SELECT COUNT(*) FROM {table.name} WHERE site = {ph} AND res = 'h' "
                f"AND bucket = {ph}",
                (site, hour),
            ).fetchone()
            estimate = int(row[0])
        bucket_cap = known.cap_for(cap, bucket)
        if estimate + size + 1 <= bucket_cap:
            known.set(bucket, estimate + size, counted=counted)
            continue
        keys = {
            dims
            for batch, ok in zip(batches, applied, strict=True)
            if ok and batch.site == site
            for key_kind, key_hour, dims in batch.counts
            if key_kind == kind and key_hour == hour
        }
        # Near the cap: find out exactly which keys are new.
        existing = {
            tuple(found)
            for found in execute(
                f"SELECT {', '.join(table.dimensions)} FROM {table.name} "
                f"WHERE site = {ph} AND res = 'h' AND bucket = {ph}",
                (site, hour),
            ).fetchall()
        }
        fresh = sorted((k for k in keys if k not in existing), key=repr)
        room = max(0, bucket_cap - len(existing) - 1)  # one row is kept for (other) itself
        for dims in fresh[room:]:
            moves[(site, kind, hour, dims)] = spilled_key(kind, dims) or dims
        known.set(bucket, len(existing) + min(len(fresh), room) + 1, counted=True)
    if not moves:
        return
    for batch, ok in zip(batches, applied, strict=True):
        if not ok:
            continue
        counts: dict[CounterKey, int] = {}
        for (kind, hour, dims), n in batch.counts.items():
            target = moves.get((batch.site, kind, hour, dims))
            if target is not None:
                batch.spilled[kind] = batch.spilled.get(kind, 0) + n
                dims = target
            key = (kind, hour, dims)
            counts[key] = counts.get(key, 0) + n
        batch.counts = counts


def mark_late(
    execute: Callable[..., Any],
    batches: Sequence[PendingBatch],
    applied: Sequence[bool],
    placeholder: str,
) -> None:
    """Set each applied batch's ``late``: its counts for hours the release model already
    sealed, read inside the commit's transaction so every worker and collector agrees."""
    sites = applied_sites(batches, applied)
    if not sites:
        return
    marks = ", ".join(placeholder for _ in sites)
    sealed = {
        str(site): (int(until), None if origin is None else int(origin))
        for site, until, origin in execute(
            f"SELECT site, sealed_until, origin FROM hc_seal WHERE res = 'h' AND site IN ({marks})",
            sites,
        ).fetchall()
    }
    for batch, ok in zip(batches, applied, strict=True):
        if not ok or batch.site not in sealed:
            continue
        until, origin = sealed[batch.site]
        hours = {hour for (_, hour, _) in batch.counts if hour < until}
        if batch.keep_id_until is not None and origin is not None and hours and min(hours) < origin:
            # An import's hours before the origin are released by its seal, unless an
            # import released them already. (A live batch's are counted in their day only.)
            history = sorted(hour for hour in hours if hour < origin)
            released = {
                int(row[0])
                for row in execute(
                    f"SELECT bucket FROM hc_sealed_data WHERE site = {placeholder} "
                    f"AND res = 'h' AND bucket >= {placeholder} AND bucket <= {placeholder}",
                    (batch.site, history[0], history[-1]),
                ).fetchall()
            }
            hours -= set(history) - released
        batch.late = sum(n for (_, hour, _), n in batch.counts.items() if hour in hours)


def applied_sites(batches: Sequence[PendingBatch], applied: Sequence[bool]) -> list[str]:
    """The distinct sites of the applied batches, sorted (PostgreSQL locks them in this order)."""
    return sorted({b.site for b, ok in zip(batches, applied, strict=True) if ok})


def declared_modes(
    batches: Sequence[PendingBatch], applied: Sequence[bool]
) -> list[tuple[str, str]]:
    """Distinct (site, visits mode) pairs declared by the applied batches, sorted."""
    return sorted(
        {(b.site, b.visits) for b, ok in zip(batches, applied, strict=True) if ok and b.visits}
    )


Row = tuple[str | int, ...]

# A day's rows from its hours: the same dimensions summed, one statement per table.
_ROLL_SQL: Final = {
    table.name: (
        f"INSERT INTO {table.name} (site, res, bucket, {', '.join(table.dimensions)}, n) "
        f"SELECT site, 'd', CAST({{ph}} AS BIGINT), {', '.join(table.dimensions)}, SUM(n) "
        f"FROM {table.name} WHERE site = {{ph}} AND res = 'h' AND bucket >= {{ph}} "
        f"AND bucket < {{ph}} GROUP BY site, {', '.join(table.dimensions)} "
        f"ON CONFLICT (site, res, bucket, {', '.join(table.dimensions)}) "
        f"DO UPDATE SET n = {table.name}.n + excluded.n"
    )
    for table in TABLES.values()
}


def rolled_watermarks(
    execute: Callable[..., Any], sites: Sequence[str], placeholder: str
) -> dict[str, int]:
    """Per site that has one, the local midnight before which its days are rolled up;
    read inside the caller's write transaction, which ``roll_next_day`` cannot
    interleave with (SQLite's write lock; on PostgreSQL the caller holds the sites'
    shared lock)."""
    if not sites:
        return {}
    marks = ", ".join(placeholder for _ in sites)
    return {
        str(site): int(until)
        for site, until in execute(
            f"SELECT site, rolled_until FROM hc_rollup WHERE site IN ({marks})", list(sites)
        ).fetchall()
    }


def roll_next_day(
    execute: Callable[..., Any], site: str, zone: ZoneInfo, now: int, placeholder: str
) -> int:
    """One step of the roll-up, inside the caller's write transaction (which excludes
    every commit of the site): fold the hourly rows of ``site``'s first day not rolled up
    into that day's rows if it has ended by ``now``, and move the watermark past it; the
    watermark after it. One day per transaction, so that a backlog (a collector that was
    down for weeks) never holds the write lock for long.

    Ingest writes a day's row only for hours before the watermark, so the rows of the
    days from it on are empty and a roll adds each hour once. A site with no watermark
    yet had its daily rows written at ingest for every hour: its first step sets the
    watermark at today's local midnight, the rows of every earlier day being complete,
    and empties today's rows (and any later), whose counts all sit in hourly rows too.
    """
    ph = placeholder
    row = execute(f"SELECT rolled_until FROM hc_rollup WHERE site = {ph}", (site,)).fetchone()
    if row is None:
        watermark = local_day_start(now, zone)
        for table in TABLES.values():
            execute(
                f"DELETE FROM {table.name} WHERE site = {ph} AND res = 'd' AND bucket >= {ph}",
                (site, watermark),
            )
        execute(
            f"INSERT INTO hc_rollup (site, rolled_until) VALUES ({ph}, {ph})", (site, watermark)
        )
        return watermark
    watermark = int(row[0])
    next_day = local_day_start(watermark + 26 * 3600, zone)
    if next_day > now:
        return watermark
    # Bounded by the watermark, not by day boundaries in today's zone: after a change of
    # the site's time zone every hour is still rolled exactly once.
    for table in TABLES.values():
        execute(_ROLL_SQL[table.name].format(ph=ph), (watermark, site, watermark, next_day))
    execute(f"UPDATE hc_rollup SET rolled_until = {ph} WHERE site = {ph}", (next_day, site))
    return next_day


CounterRow = tuple[int | str | None, ...]


def over_rolled_days(
    query: CounterQuery, rolled: int | None, select: Callable[[CounterQuery], list[CounterRow]]
) -> list[CounterRow]:
    """``query`` over whole days (resolution "d"): the daily rows of the days rolled up
    (before ``rolled``), the hourly rows of the rest (the last day or two). Rows of one
    time bucket and group from both parts are summed: suppression sees each cell once."""
    if rolled is None or rolled >= query.end:
        return select(query)
    if rolled <= query.start:
        return select(replace(query, resolution="h"))
    summed: dict[CounterRow, int] = {}
    for part in (replace(query, end=rolled), replace(query, start=rolled, resolution="h")):
        for row in select(part):
            key = row[:-1]
            summed[key] = summed.get(key, 0) + int(row[-1] or 0)
    return [(*key, n) for key, n in summed.items()]


def needs_roll(watermark: int, now: int, zone: ZoneInfo) -> bool:
    """Whether ``roll_next_day`` would move ``watermark`` (read outside a write
    transaction, so that an idle site costs no write lock)."""
    return local_day_start(watermark + 26 * 3600, zone) <= now


def counter_rows(
    batches: Sequence[PendingBatch], applied: Sequence[bool], rolled: dict[str, int]
) -> dict[Table, list[Row]]:
    """Per table, the rows (site, res, bucket, *dims, n) that the applied batches add:
    every count goes to its hourly row, and to its local day's row when that day is
    already rolled up (an hour before the site's watermark in ``rolled``, see
    ``roll_next_day``: a late count, an import of history) or the site has no watermark
    yet.

    Batches of one site are merged on their own keys first (cheap: the tuples exist
    already), so hourly rows come out unique; daily rows (of different hours of one day)
    are merged too, since PostgreSQL's ON CONFLICT cannot touch a row twice in one
    statement and a SQLite upsert costs more than a dict update.
    """
    by_site: dict[tuple[str, str], dict[CounterKey, int]] = {}
    borrowed: set[tuple[str, str]] = set()
    zones: dict[str, ZoneInfo] = {}
    for batch, ok in zip(batches, applied, strict=True):
        if not ok:
            continue
        group = (batch.site, batch.zone.key)
        acc = by_site.get(group)
        if acc is None:
            # The common case, one batch per site: its counts are used as they are.
            by_site[group] = batch.counts
            borrowed.add(group)
            zones[batch.zone.key] = batch.zone
            continue
        if group in borrowed:
            # A second batch of the site: merge into a copy, never into a batch's counts.
            borrowed.discard(group)
            acc = by_site[group] = dict(acc)
        get = acc.get
        for key, n in batch.counts.items():
            acc[key] = get(key, 0) + n
    hourly: dict[str, list[Row]] = {}
    # Daily rows go after the hourly ones: each kind of row then lands in one region of
    # the table's B-tree (res leads the key after site), which costs less than sorting.
    daily: dict[str, dict[Row, int]] = {}
    # A site whose time zone changed while its batches waited comes under two zones:
    # its hourly rows are merged across them (PostgreSQL cannot upsert a row twice in one
    # statement), its daily rows stay per zone.
    zones_per_site = Counter(site for site, _ in by_site)
    rezoned_hourly: dict[str, dict[Row, int]] = {}
    for (site, zone_key), acc in by_site.items():
        zone = zones[zone_key]
        # Hours from the watermark on are rolled up into their days later.
        watermark = rolled.get(site)
        day_of: dict[int, int] = {}
        merge_hours = zones_per_site[site] > 1
        for (kind, hour, dims), n in acc.items():
            table_hourly = hourly.get(kind)
            if table_hourly is None:
                table_hourly = hourly[kind] = []
                daily[kind] = {}
            if merge_hours:
                merged = rezoned_hourly.setdefault(kind, {})
                hour_key = (site, "h", hour, *dims)
                merged[hour_key] = merged.get(hour_key, 0) + n
            else:
                table_hourly.append((site, "h", hour, *dims, n))
            if watermark is not None and hour >= watermark:
                continue
            day = day_of.get(hour)
            if day is None:
                day = day_of[hour] = local_day_start(hour, zone)
            table_daily = daily[kind]
            day_key = (site, "d", day, *dims)
            table_daily[day_key] = table_daily.get(day_key, 0) + n
    rows = {}
    for kind, table_hourly in hourly.items():
        table_hourly.extend((*key, n) for key, n in rezoned_hourly.get(kind, {}).items())
        table_hourly.extend((*key, n) for key, n in daily[kind].items())
        rows[TABLES[kind]] = table_hourly
    return rows


@dataclass(frozen=True, slots=True)
class Dialect:
    """The few places where SQLite and PostgreSQL SQL differ."""

    placeholder: str  # "?" or "%s"
    prop_expression: str  # with {ph} where the property name goes
    lateral: bool = False  # time targets joined through LATERAL (see _summed)
    # Whether a route-filtered read of released cells finds each released bucket's cells
    # by key (see released_sql). SQLite's planner does it as written; PostgreSQL's, with
    # the statistics a table has before it is analyzed, joined the buckets as a filter
    # over every route's cells, once per bucket (10 s for a year by month, against 35 ms
    # for its plain range scan), so PostgreSQL keeps the range scan.
    probes_released_buckets: bool = False

    def upsert_sql(self, table: Table) -> str:
        columns = ("site", "res", "bucket", *table.dimensions, "n")
        values = ", ".join(self.placeholder for _ in columns)
        key = ", ".join(c for c in columns if c != "n")
        return (
            f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({values}) "
            f"ON CONFLICT ({key}) DO UPDATE SET n = {table.name}.n + excluded.n"
        )

    def _column(self, column: str | tuple[str, str], params: list[object]) -> str:
        if isinstance(column, tuple):
            params.append(column[1])
            return self.prop_expression.format(ph=self.placeholder)
        return column

    def released_sql(self, query: ReleasedQuery) -> tuple[str, list[object]]:
        """SQL summing released cells of ``query.marginal`` into its time targets."""
        ph = self.placeholder
        params: list[object] = []
        prefix = ""
        if query.per_bucket:
            time_col = "c.bucket"
        else:
            rows = ", ".join(f"({ph}, {ph}, {ph})" for _ in query.segments)
            for segment in query.segments:
                params += list(segment)
            prefix = f"WITH b(lo, hi, t) AS (VALUES {rows}) "
            time_col = "b.t"
        group_exprs = [self._column(c, params) for c in query.group_by]
        table = release_table(query.marginal.kind)
        probe = self.probes_released_buckets and _probes_released_buckets(query)
        where: list[str] = []
        if probe:
            # The cells of one route (or a few) over a long period: each released bucket's
            # cells of that route are found by their key (bucket, then route), rather
            # than by reading every route's cells in the range and keeping that route's
            # (a year by day for one route of 1,000 through /v1/stats: 4.3 against 26.6 ms
            # on SQLite). hc_rel_buckets lists the buckets that hold released cells, and
            # nothing unreleased: how long a read takes must not depend on anything
            # unreleased (hc_sealed_data, which lists every bucket that held counts, made
            # an hour someone visited take longer to read). The unary plus keeps SQLite
            # from turning the buckets' range into a range on the cells too, which it
            # then preferred to the key.
            where += [f"s.site = {ph}", f"s.res = {ph}", "c.bucket = +s.bucket"]
            params += [query.site, query.resolution]
        where += [f"c.site = {ph}", f"c.res = {ph}", f"c.marginal = {ph}"]
        params += [query.site, query.resolution, query.marginal.code]
        bucket = "s.bucket" if probe else "c.bucket"
        if not prefix:
            lo = min(segment[0] for segment in query.segments)
            hi = max(segment[1] for segment in query.segments)
            where += [f"{bucket} >= {ph}", f"{bucket} < {ph}"]
            params += [lo, hi]
        # With segments, their bounds are the only ones on the bucket: a constant range
        # beside them made SQLite and PostgreSQL scan the whole range once per segment
        # (27 years of weeks took 19 s instead of 0.1).
        for column, value in query.filters:
            where.append(f"{self._column(column, params)} = {ph}")
            params.append(value)
        if query.one_of is not None:
            column, values = query.one_of
            where.append(f"c.{column} IN ({', '.join(ph for _ in values)})")
            params += values
        source = f"hc_rel_buckets s CROSS JOIN {table} c" if probe else f"{table} c"
        sql = self._summed(prefix, time_col, group_exprs, ("n", "var"), source, where, bucket)
        return sql, params

    def select_sql(self, query: CounterQuery) -> tuple[str, list[object]]:
        """SQL summing ``query``'s counters, grouped by time bucket and dimensions."""
        ph = self.placeholder
        params: list[object] = []
        prefix = ""
        if query.interval == "hour" or (query.interval == "day" and query.resolution == "d"):
            time_col = "c.bucket"
        elif query.interval == "total":
            time_col = "NULL"
        else:
            buckets = query.buckets or tuple(
                bucket_starts(query.start, query.end, query.interval, ZoneInfo(query.zone_name))
            )
            rows = ", ".join(f"({ph}, {ph}, {ph})" for _ in buckets)
            for lo, hi in buckets:
                # Clipped to the range: the buckets' bounds are the only ones on it.
                params += [max(lo, query.start), min(hi, query.end), lo]
            prefix = f"WITH b(lo, hi, t) AS (VALUES {rows}) "
            time_col = "b.t"
        group_exprs = [self._column(c, params) for c in query.group_by]
        where = [f"c.site = {ph}"]
        params.append(query.site)
        if not prefix:  # with buckets, their bounds only (see released_sql)
            where += [f"c.bucket >= {ph}", f"c.bucket < {ph}"]
            params += [query.start, query.end]
        where.append(f"c.res = {ph}")
        params.append("h" if query.interval == "hour" else query.resolution)
        for column, value in query.filters:
            where.append(f"{self._column(column, params)} = {ph}")
            params.append(value)
        source = f"{query.table.name} c"
        return self._summed(prefix, time_col, group_exprs, ("n",), source, where), params

    def _summed(
        self,
        prefix: str,
        time_col: str,
        group_exprs: list[str],
        sums: tuple[str, ...],
        source: str,
        where: list[str],
        bucket: str = "c.bucket",
    ) -> str:
        """``SELECT time, groups, SUM(...)`` over ``source`` (the cells as ``c``, and the
        released buckets as ``s`` when ``bucket`` is ``s.bucket``); with time targets
        (``prefix`` names them ``b(lo, hi, t)``) each target reads its own buckets through
        the index. SQLite keeps the tables in the order written (CROSS JOIN). PostgreSQL
        is told so with LATERAL, and OFFSET 0 so that it cannot flatten the subquery back
        into a join: left to itself, with a table whose statistics are stale, it planned
        the table outside and compared every row with every target (25 million
        comparisons for 18,000 rows and 27 years of weeks)."""
        group = ", ".join(["1", *[str(i + 2) for i in range(len(group_exprs))]])
        within = f"{bucket} >= b.lo AND {bucket} < b.hi"
        condition = " AND ".join(where)
        if not prefix or not self.lateral:
            select = ", ".join([time_col, *group_exprs, *(f"SUM(c.{s})" for s in sums)])
            if not prefix:
                tables = source
            elif bucket == "c.bucket":
                tables = f"{source} JOIN b ON {within}"
            else:
                tables = f"b CROSS JOIN {source}"
                condition = f"{within} AND {condition}"
            return f"{prefix}SELECT {select} FROM {tables} WHERE {condition} GROUP BY {group}"
        inner = ", ".join([*(f"{e} AS g{i}" for i, e in enumerate(group_exprs)), *sums])
        outer = ", ".join(
            [
                time_col,
                *(f"x.g{i}" for i in range(len(group_exprs))),
                *(f"SUM(x.{s})" for s in sums),
            ]
        )
        return (
            f"{prefix}SELECT {outer} FROM b CROSS JOIN LATERAL (SELECT {inner} FROM {source} "
            f"WHERE {condition} AND {within} OFFSET 0) x GROUP BY {group}"
        )


def _probes_released_buckets(query: ReleasedQuery) -> bool:
    """Whether the query fixes the cells' first key column after the bucket (a route
    filter, or a few routes), so that each bucket's cells can be found by key."""
    first = TABLES[query.marginal.kind].dimensions[0]
    if query.one_of is not None and query.one_of[0] == first:
        return True
    return any(column == first for column, _ in query.filters)


BATCH_ID_SECRET_NAME = "batch_id_secret"  # noqa: S105 - a row name, not a secret
# Where a sender's id keeps its parts (wire.Batch.batch_id): 6 hex digits naming the
# sending process, 8 of its batch counter, 18 random.
_SENDER_DIGITS = 6
_COUNTER_DIGITS = 8
# Consecutive counts of one sender that share a stored prefix: a group commit of small
# batches from one sender touches one or two such runs.
_RUN_BITS = 5
# The stored form of collectors before schema version 7: 32 hex digits; the current one has 52.
LEGACY_STORED_ID_LENGTH = 32
# Answered from the partial index of migration 7: ids in that form, if any are left.
LEGACY_IDS_SQL = (
    f"SELECT EXISTS (SELECT 1 FROM hc_batch WHERE length(batch_id) = {LEGACY_STORED_ID_LENGTH})"
)


def stored_batch_id(site: str, batch_id: str, secret: bytes) -> str:
    """What is remembered of a batch id: keyed digests (the key is a secret kept in the
    database, in hc_meta), so no digit of the id is at rest in readable form; the id is
    only ever compared for equality. A reader of the whole database holds the key too and
    can test guesses, as with any digest of a short input: trying every sender part and
    count recovers them (minutes of CPU), which tells which process sent a batch and
    about how many batches before it, never anything about a visitor or a time.

    Three digests, laid out so that one sender's consecutive batches are remembered side
    by side: of the id's sender part (48 bits), of that part with the run of 32 counts
    the id's count falls in (32 bits), and of the whole id (128 bits, what tells two
    batches apart, as the earlier single digest did). A group commit of small batches
    then writes a few index pages instead of one random page per batch, which had halved
    ingest throughput (docs/benchmarks.md, "Collector ingest"). At rest, rows that share
    a prefix show only that one sender sent them close together."""
    return _stored_prefix(site, *_neighbourhood(batch_id), secret) + _whole_digest(
        site, batch_id, secret
    )


def _neighbourhood(batch_id: str) -> tuple[str, int]:
    """The id's sender part and the run of counts it falls in: what its prefix is made of."""
    count = int(batch_id[_SENDER_DIGITS : _SENDER_DIGITS + _COUNTER_DIGITS], 16)
    return batch_id[:_SENDER_DIGITS], count >> _RUN_BITS


def _stored_prefix(site: str, sender_part: str, run: int, secret: bytes) -> str:
    sender = hashlib.blake2b(f"{site}\x00{sender_part}".encode(), key=secret, digest_size=6)
    nearby = hashlib.blake2b(
        f"{site}\x00{sender_part}\x00{run}".encode(), key=secret, digest_size=4
    )
    return sender.hexdigest() + nearby.hexdigest()


def _whole_digest(site: str, batch_id: str, secret: bytes) -> str:
    return hashlib.blake2b(f"{site}\x00{batch_id}".encode(), key=secret, digest_size=16).hexdigest()


def legacy_batch_id(site: str, batch_id: str) -> str:
    """The form collectors before schema version 7 remembered ``batch_id`` in (unkeyed, random)."""
    return hashlib.sha256(f"{site}\x00{batch_id}".encode()).hexdigest()[:LEGACY_STORED_ID_LENGTH]


def stored_ids(batches: Sequence[PendingBatch], secret: bytes) -> list[str]:
    """Each batch's id in its stored form (``stored_batch_id``), made once per commit. A
    group's batches mostly come from a few senders in a few runs: each prefix is made once."""
    prefixes: dict[tuple[str, str, int], str] = {}
    stored: list[str] = []
    for batch in batches:
        place = (batch.site, *_neighbourhood(batch.batch_id))
        prefix = prefixes.get(place)
        if prefix is None:
            prefix = prefixes[place] = _stored_prefix(*place, secret)
        stored.append(prefix + _whole_digest(batch.site, batch.batch_id, secret))
    return stored


def remembered_ids(
    batches: Sequence[PendingBatch], stored: Sequence[str]
) -> list[tuple[str, str, int | None]]:
    """(site, stored id, keep until) per distinct batch id, sorted: one lock order for
    every writer remembering overlapping ids."""
    keep: dict[tuple[str, str], int | None] = {}
    for batch, stored_id in zip(batches, stored, strict=True):
        key = (batch.site, stored_id)
        if key not in keep or batch.keep_id_until is not None:
            keep[key] = batch.keep_id_until
    return sorted((site, stored_id, until) for (site, stored_id), until in keep.items())


def first_copies(
    batches: Sequence[PendingBatch], stored: Sequence[str], fresh: set[tuple[str, str]]
) -> list[bool]:
    """Per batch, whether to apply it: its (site, stored id) was newly remembered by this
    group commit (in ``fresh``), and it is the first copy of that id in the group, since
    a batch id sent twice within one group counts once."""
    unclaimed = set(fresh)
    applied: list[bool] = []
    for batch, stored_id in zip(batches, stored, strict=True):
        key = (batch.site, stored_id)
        applied.append(key in unclaimed)
        unclaimed.discard(key)
    return applied


def forget_legacy_copies(
    execute: Callable[..., Any],
    batches: Sequence[PendingBatch],
    stored: Sequence[str],
    fresh: set[tuple[str, str]],
    placeholder: str,
) -> None:
    """Take out of ``fresh`` the batches a collector before schema version 7 remembered in its
    own form: a retry that straddles the upgrade is still a retry. Asked on every commit,
    so ids an older collector stored after this one started are seen too; a commit of an
    older collector that races this one is not (the two forms never meet in the unique
    key), which is why older collectors must be stopped before this version starts. It
    costs one look at an index that is empty once those ids expire."""
    if not execute(LEGACY_IDS_SQL).fetchone()[0]:
        return
    legacy: dict[tuple[str, str], tuple[str, str]] = {}
    for batch, stored_id in zip(batches, stored, strict=True):
        key = (batch.site, stored_id)
        if key in fresh:
            legacy[(batch.site, legacy_batch_id(batch.site, batch.batch_id))] = key
    items = sorted(legacy)
    for start in range(0, len(items), 200):  # bound the statement's parameter count
        chunk = items[start : start + 200]
        pairs = " OR ".join(f"(site = {placeholder} AND batch_id = {placeholder})" for _ in chunk)
        rows = execute(
            f"SELECT site, batch_id FROM hc_batch WHERE {pairs}",
            [x for pair in chunk for x in pair],
        ).fetchall()
        for site, legacy_id in rows:
            fresh.discard(legacy[(str(site), str(legacy_id))])


def release_table(kind: str) -> str:
    return f"hc_rel_{kind}"


# A column of a marginal, and the values its cells may have.
OneOf = tuple[str, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class ReleasedQuery:
    """Sum released cells of one marginal over time segments.

    Each segment (lo, hi, target) adds the cells with lo <= bucket < hi into the answer
    row of time bucket ``target``; ``per_bucket`` instead answers each stored bucket on
    its own (hourly charts).
    """

    marginal: Marginal
    site: str
    resolution: Resolution
    segments: tuple[tuple[int, int, int], ...]
    group_by: tuple[str | tuple[str, str], ...] = ()
    filters: tuple[tuple[str | tuple[str, str], str | int], ...] = ()
    per_bucket: bool = False
    # A column and the values it may take (several routes' series in one read).
    one_of: OneOf | None = None


def _marginal_select(marginal: Marginal, ph: str) -> tuple[str, list[object]]:
    table = TABLES[marginal.kind]
    dims = ", ".join(marginal.dims)
    where = [f"site = {ph}", f"res = {ph}", f"bucket = {ph}"]
    params: list[object] = []
    for column, value in marginal.where:
        where.append(f"{column} = {ph}")
        params.append(value)
    select = f"{dims + ', ' if dims else ''}SUM(n)"
    group = f" GROUP BY {dims}" if dims else ""
    return (
        f"SELECT {select} FROM {table.name} WHERE {' AND '.join(where)}{group}",
        params,
    )


@dataclass(frozen=True, slots=True)
class SealStep:
    """One move of a site's watermark for one resolution, from ``expected`` to
    ``sealed_until``, releasing every bucket in between that holds counts. The bounds
    never depend on the data (a chunk of time, or the sealable limit), so watching the
    watermark move tells nothing about when anyone visited."""

    site: str
    resolution: Resolution
    expected: int
    sealed_until: int


def _per_table_params(site: str, resolution: Resolution, start: int, end: int) -> list[object]:
    return [x for _ in TABLES for x in (site, resolution, start, end)]


def raw_rows_sql(
    placeholder: str, site: str, resolution: Resolution, start: int, end: int
) -> tuple[str, list[object]]:
    """SQL and parameters counting the counter rows per kind of one site and resolution
    in [start, end)."""
    ph = placeholder
    sql = " UNION ALL ".join(
        f"SELECT '{table.kind}', COUNT(*) FROM {table.name} "
        f"WHERE site = {ph} AND res = {ph} AND bucket >= {ph} AND bucket < {ph}"
        for table in TABLES.values()
    )
    return sql, _per_table_params(site, resolution, start, end)


def data_buckets_sql(
    placeholder: str, site: str, resolution: Resolution, start: int, end: int
) -> tuple[str, list[object]]:
    """SQL and parameters finding the bucket starts of one site and resolution in
    [start, end) that hold any counts."""
    ph = placeholder
    union = " UNION ".join(
        f"SELECT DISTINCT bucket FROM {table.name} "
        f"WHERE site = {ph} AND res = {ph} AND bucket >= {ph} AND bucket < {ph}"
        for table in TABLES.values()
    )
    return f"{union} ORDER BY 1", _per_table_params(site, resolution, start, end)


def seal_bucket(
    execute: Callable[..., Any],
    execute_many: Callable[[str, list[tuple[object, ...]]], Any],
    step: SealStep,
    policy: ReleasePolicy,
    draw: Callable[[str], int],
    placeholder: str,
) -> int | None:
    """Release a step's buckets of one site inside the caller's write transaction.

    Finds the buckets that hold counts inside this transaction (so a record committed
    just before is either released now or counted late, never lost between the two),
    reads the true counts of every marginal, adds one noise draw to each cell, keeps the
    cells whose noisy value reaches the threshold, and moves the watermark. Returns how
    many cells were released, or None when the watermark was no longer ``step.expected``
    (another collector sealed these buckets first; its values stand).
    """
    site, resolution = step.site, step.resolution
    ph = placeholder
    moved = execute(
        f"UPDATE hc_seal SET sealed_until = {ph} WHERE site = {ph} AND res = {ph} "
        f"AND sealed_until = {ph}",
        (step.sealed_until, site, resolution, step.expected),
    ).rowcount
    if moved != 1:
        return None
    # The step's bounds, not the buckets that held counts: they are the data-free part.
    _record_params(execute, site, resolution, step.expected, step.sealed_until, policy, ph)
    buckets = [
        int(row[0])
        for row in execute(
            *data_buckets_sql(ph, site, resolution, step.expected, step.sealed_until)
        ).fetchall()
    ]
    released = 0
    for bucket in buckets:
        if _claim(execute, site, resolution, bucket, ph):
            released += _seal_one(execute, execute_many, site, resolution, bucket, policy, draw, ph)
    return released


def _claim(
    execute: Callable[..., Any], site: str, resolution: Resolution, bucket: int, ph: str
) -> bool:
    """Record that ``bucket`` is released; False when it already was. Live sealing
    records the buckets that held counts, as a second guard behind the watermark's
    compare-and-swap (should the watermark ever stand behind a released bucket again: a
    restored ``hc_seal``, an older collector on the same database); an import's seal
    records every bucket before the origin it asks for, and this row is its only guard.
    A concurrent claim of the same row waits on its key and then finds it taken."""
    return bool(
        execute(
            f"INSERT INTO hc_sealed_data (site, res, bucket) VALUES ({ph}, {ph}, {ph}) "
            "ON CONFLICT DO NOTHING",
            (site, resolution, bucket),
        ).rowcount
        == 1
    )


def seal_claimed(
    execute: Callable[..., Any],
    execute_many: Callable[[str, list[tuple[object, ...]]], Any],
    site: str,
    day: int | None,
    hours: Sequence[int],
    policy: ReleasePolicy,
    draw: Callable[[str], int],
    placeholder: str,
) -> int:
    """Release, inside the caller's write transaction, history before a site's origin:
    ``day`` (a local day, or None) and ``hours`` (every hour of that day an import can
    reach), each at most once. Every bucket asked for is claimed, empty or not: whether
    one could still be released must never say whether anyone visited in it.

    The day is claimed only together with all its hours, and only when none of them was
    claimed before: a day's cell then always holds every hour released in it, and a day
    drawn at other midnights (the site's time zone changed) cannot release those hours a
    second time inside another day's cell.
    """
    ph = placeholder
    released = 0
    if hours:
        # The whole range asked for, claimed or not: it depends on the request only.
        span = (min(hours), max(hours) + 3600)
        _record_params(execute, site, "h", *span, policy, ph)
        if day is not None:
            _record_params(execute, site, "d", min(day, span[0]), span[1], policy, ph)
    if day is not None and hours:
        # One history seal per site at a time: on PostgreSQL two concurrent ones (two
        # collectors, say, during a change of the site's zone) would each find none of
        # the other's hours claimed yet and release overlapping days twice. Updating the
        # site's row holds its lock to the end of the transaction; SQLite already holds
        # the database's.
        execute(f"UPDATE hc_seal SET origin = origin WHERE site = {ph} AND res = 'd'", (site,))
        (taken,) = execute(
            f"SELECT COUNT(*) FROM hc_sealed_data WHERE site = {ph} AND res = 'h' "
            f"AND bucket >= {ph} AND bucket <= {ph}",
            (site, min(hours), max(hours)),
        ).fetchone()
        if not taken and _claim(execute, site, "d", day, ph):
            released += _seal_one(execute, execute_many, site, "d", day, policy, draw, ph)
    for hour in sorted(set(hours)):
        if _claim(execute, site, "h", hour, ph):
            released += _seal_one(execute, execute_many, site, "h", hour, policy, draw, ph)
    return released


def claimed_buckets_sql(
    placeholder: str, site: str, resolution: Resolution, start: int, end: int
) -> tuple[str, tuple[object, ...]]:
    ph = placeholder
    return (
        f"SELECT bucket FROM hc_sealed_data WHERE site = {ph} AND res = {ph} "
        f"AND bucket >= {ph} AND bucket < {ph} ORDER BY bucket",
        (site, resolution, start, end),
    )


def _seal_one(
    execute: Callable[..., Any],
    execute_many: Callable[[str, list[tuple[object, ...]]], Any],
    site: str,
    resolution: Resolution,
    bucket: int,
    policy: ReleasePolicy,
    draw: Callable[[str], int],
    ph: str,
) -> int:
    released = 0
    for kind, marginals in MARGINALS.items():
        table = TABLES[kind]
        budget = policy.budget_for(kind)
        variance = float(budget.variance)
        columns = ("site", "res", "bucket", "marginal", *table.dimensions, "n", "var")
        insert = (
            f"INSERT INTO {release_table(kind)} ({', '.join(columns)}) VALUES "
            f"({', '.join(ph for _ in columns)}) ON CONFLICT DO NOTHING"
        )
        rows: list[tuple[object, ...]] = []
        for marginal in marginals:
            sql, extra = _marginal_select(marginal, ph)
            fixed = dict(marginal.where)
            for found in execute(sql, (site, resolution, bucket, *extra)).fetchall():
                if found[-1] is None:  # a total over no rows
                    continue
                true_count = int(found[-1])
                if true_count <= 0:
                    continue
                noisy = true_count + draw(budget.unit.name)
                if noisy < budget.threshold:
                    continue
                values = dict(zip(marginal.dims, found[:-1], strict=True))
                dims = tuple(
                    values.get(c, fixed.get(c, 0 if c in table.integer else ""))
                    for c in table.dimensions
                )
                rows.append((site, resolution, bucket, marginal.code, *dims, noisy, variance))
        if rows:
            execute_many(insert, rows)
            released += len(rows)
    if released:
        # Listed only when something was released: see Dialect.released_sql.
        execute(
            f"INSERT INTO hc_rel_buckets (site, res, bucket) VALUES ({ph}, {ph}, {ph}) "
            "ON CONFLICT DO NOTHING",
            (site, resolution, bucket),
        )
    return released


@dataclass(frozen=True, slots=True)
class SealParams:
    """Time from ``sealed_from`` to ``sealed_until`` (a watermark's steps, or history
    ranges, merged into one span) was sealed at ``resolution`` under ``epsilon`` and
    ``delta``, or under parameters not recorded (both -1: sealed before schema version
    9). A span says where these parameters may apply, never where they cannot."""

    resolution: Resolution
    epsilon: float
    delta: float
    sealed_from: int
    sealed_until: int


def _record_params(
    execute: Callable[..., Any],
    site: str,
    resolution: Resolution,
    start: int,
    end: int,
    policy: ReleasePolicy,
    ph: str,
) -> None:
    # CASE rather than LEAST/GREATEST or min/max: the one form both databases know.
    execute(
        "INSERT INTO hc_seal_params (site, res, epsilon, delta, sealed_from, sealed_until) "
        f"VALUES ({ph}, {ph}, {ph}, {ph}, {ph}, {ph}) "
        "ON CONFLICT (site, res, epsilon, delta) DO UPDATE SET "
        "sealed_from = CASE WHEN excluded.sealed_from < hc_seal_params.sealed_from "
        "THEN excluded.sealed_from ELSE hc_seal_params.sealed_from END, "
        "sealed_until = CASE WHEN excluded.sealed_until > hc_seal_params.sealed_until "
        "THEN excluded.sealed_until ELSE hc_seal_params.sealed_until END",
        (site, resolution, policy.epsilon, policy.delta, start, end),
    )


SEAL_PARAMS_SQL: Final = (
    "SELECT res, epsilon, delta, sealed_from, sealed_until FROM hc_seal_params WHERE site = {ph}"
)


def seal_params_of(rows: Iterable[Sequence[Any]]) -> list[SealParams]:
    return [
        SealParams("d" if res == "d" else "h", float(epsilon), float(delta), int(lo), int(hi))
        for res, epsilon, delta, lo, hi in rows
    ]
