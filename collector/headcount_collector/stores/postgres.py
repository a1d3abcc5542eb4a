"""The scale-out store: PostgreSQL through a psycopg 3 connection pool.

Several collectors may share one database. Everything that must be agreed between them
lives in the database: the schema version (migrated under an advisory lock), the batch
ids that make retries idempotent (one ``hc_batch`` table for every collector) and the
counters (set-based upserts, rows locked in one global order so writers never deadlock
each other).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import ConnectionPool

from headcount_collector.config import Site
from headcount_collector.errors import StoreUnavailable
from headcount_collector.pending import PendingBatch
from headcount_collector.release.catalogue import Resolution
from headcount_collector.release.policy import ReleasePolicy
from headcount_collector.stores.base import (
    BATCH_ID_SECRET_NAME,
    DEFAULT_KEY_CAP,
    SEAL_PARAMS_SQL,
    CounterQuery,
    CounterRow,
    Dialect,
    KeyCounts,
    ReleasedQuery,
    RetentionResult,
    SealParams,
    SealStep,
    applied_sites,
    claimed_buckets_sql,
    counter_rows,
    data_buckets_sql,
    declared_modes,
    delete_expired,
    ensure_secret,
    first_copies,
    forget_legacy_copies,
    mark_late,
    needs_roll,
    over_rolled_days,
    raw_rows_sql,
    remembered_ids,
    roll_next_day,
    rolled_watermarks,
    seal_bucket,
    seal_claimed,
    seal_params_of,
    spill_excess_keys,
    stored_ids,
)
from headcount_collector.stores.migrations import (
    POSTGRESQL,
    apply_migrations,
    latest_version,
    log_migration,
)
from headcount_collector.tables import TABLES, Table
from headcount_collector.timeutil import floor_hour

__all__ = ["PoolSettings", "PostgresStore"]

logger = logging.getLogger("headcount_collector.stores.postgres")

# Seconds a worker trusts its own bound on a bucket's keys (see KeyCounts).
_KEY_COUNT_MAX_AGE = 1.0
DIALECT = Dialect(placeholder="%s", prop_expression="(c.props::jsonb ->> {ph})", lateral=True)

# Arbitrary but fixed: every collector takes this transaction-level advisory lock before
# looking at the schema version, so concurrent starts migrate one after the other.
_MIGRATION_LOCK = 0x68630001
# Retention of one site runs in one collector at a time; the others skip it.
_RETENTION_LOCK = 0x68630002
# Per site: taken shared by every commit, exclusively by a roll-up of its days.
_ROLLUP_LOCK = 0x68630003
_LOCK_ROLLUP = "SELECT pg_advisory_xact_lock(%s, hashtext(%s))"
_LOCK_ROLLUPS_SHARED = (
    "SELECT count(pg_advisory_xact_lock_shared(%s, hashtext(s))) FROM unnest(%s::text[]) s"
)

_ROLLED_UNTIL_SQL = "SELECT rolled_until FROM hc_rollup WHERE site = %s"
_RETRYABLE = (pg_errors.SerializationFailure, pg_errors.DeadlockDetected)
_ATTEMPTS = 4

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PoolSettings:
    """Connections per collector process: one writer thread plus the query threads."""

    min_size: int = 1
    max_size: int = 4
    # How long a request waits for a free or new connection before answering 503.
    timeout: float = 5.0
    # The pool retries a failed connect with doubling delays until this many seconds have
    # passed, then starts afresh on the next request. Kept short so that the collector
    # stops answering 503 within seconds of the database coming back, not minutes.
    reconnect_timeout: float = 10.0

    def __post_init__(self) -> None:
        if self.min_size < 0 or self.max_size < max(1, self.min_size):
            raise ValueError("need 0 <= min_size <= max_size and max_size >= 1")
        if self.timeout <= 0 or self.reconnect_timeout <= 0:
            raise ValueError("timeout and reconnect_timeout must be positive")


def _int(value: object) -> int:
    # Counts come back as int or, from SUM/COUNT, as Decimal/int; anything else is a bug.
    if isinstance(value, int):
        return value
    if isinstance(value, Decimal):
        return int(value)
    if isinstance(value, str):
        return int(value)
    raise TypeError(f"expected an integer from PostgreSQL, got {type(value).__name__}")


def _cell(value: object) -> int | str | None:
    if value is None or isinstance(value, int | str):
        return value
    raise TypeError(f"unexpected {type(value).__name__} in a counter row")


def _query_rows(rows: list[tuple[object, ...]]) -> list[CounterRow]:
    # SUM over bigint is numeric in PostgreSQL; the store interface promises ints.
    return [(*(_cell(value) for value in row[:-1]), _int(row[-1])) for row in rows]


SCHEMA_VERSION = latest_version()


def _upsert_sql(table: Table) -> str:
    # One statement per table per group commit: the rows travel as one array per column,
    # in binary (%b), which PostgreSQL decodes faster than array text (bench/pg_drivers.py).
    # The statement text never changes with the row count, so psycopg prepares it once.
    columns = ("site", "res", "bucket", *table.dimensions, "n")
    types = ("text", "text", "bigint", *(table.column_type(c) for c in table.dimensions), "bigint")
    arrays = ", ".join(f"%b::{t}[]" for t in types)
    key = ", ".join(("site", "res", "bucket", *table.dimensions))
    dims = "".join(f", u.{c}" for c in table.dimensions)
    return (
        f"INSERT INTO {table.name} ({key}, n) "
        f"SELECT u.site, u.res, u.bucket{dims}, u.n "
        f"FROM unnest({arrays}) AS u({', '.join(columns)}) "
        f"ON CONFLICT ({key}) DO UPDATE SET n = {table.name}.n + excluded.n"
    )


_UPSERT_SQL = {table.name: _upsert_sql(table) for table in TABLES.values()}

_REMEMBER_BATCHES_SQL = (
    "INSERT INTO hc_batch (site, batch_id, received, keep_until) "
    "SELECT u.site, u.batch_id, %b, u.keep_until "
    "FROM unnest(%b::text[], %b::text[], %b::bigint[]) AS u(site, batch_id, keep_until) "
    "ON CONFLICT DO NOTHING RETURNING site, batch_id"
)


class PostgresStore:
    def __init__(
        self, conninfo: str, pool: PoolSettings | None = None, key_cap: int = DEFAULT_KEY_CAP
    ) -> None:
        settings = pool or PoolSettings()
        # Distinct hourly keys per site, table and hour; more fold into (other).
        self.key_cap = key_cap
        # Other collectors' keys cannot be seen coming here: each bound is read again
        # after a second, so together they pass a bucket's cap by at most a second of
        # their new keys (SQLite, which can tell, reads again as soon as another wrote).
        self._key_counts = KeyCounts(max_age=_KEY_COUNT_MAX_AGE)
        self._batch_id_secret = b""
        self._pool_timeout = settings.timeout
        self._conninfo = conninfo
        self._pool = ConnectionPool(
            conninfo,
            min_size=settings.min_size,
            max_size=settings.max_size,
            timeout=settings.timeout,
            reconnect_timeout=settings.reconnect_timeout,
            # Autocommit so a query holds no transaction open; writes open one explicitly.
            kwargs={"autocommit": True},
            # A connection broken by a server restart is found and replaced at checkout
            # instead of failing the next request.
            check=ConnectionPool.check_connection,
            name="headcount",
            open=False,
        )
        # Connect in the background: a collector starts even while the database is down
        # and answers 503 until it is back.
        self._pool.open(wait=False)

    @classmethod
    def from_url(cls, url: str) -> PostgresStore:
        return cls(url)

    def _run(self, work: Callable[[psycopg.Connection[tuple[object, ...]]], T], what: str) -> T:
        """Run ``work`` in one transaction, retrying when PostgreSQL asks for it."""
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                with self._pool.connection() as conn, conn.transaction():
                    return work(conn)
            except _RETRYABLE as exc:
                if attempt == _ATTEMPTS:
                    raise StoreUnavailable(f"PostgreSQL {what} failed: {exc}") from exc
                logger.info("PostgreSQL %s: %s; retrying", what, type(exc).__name__)
                time.sleep(0.01 * 2**attempt)
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                # Server down, restarting, too many connections, disk full, pool empty.
                raise StoreUnavailable(f"PostgreSQL {what} failed: {exc}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _read(self, sql: str, params: Sequence[object]) -> list[tuple[object, ...]]:
        return self._run(lambda conn: conn.execute(sql, params).fetchall(), "read")

    def migrate(self) -> None:
        def migrate_in(conn: psycopg.Connection[tuple[object, ...]]) -> int:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            found = apply_migrations(conn.execute, POSTGRESQL)
            self._key_counts.secret = ensure_secret(conn.execute, "%s")
            self._batch_id_secret = ensure_secret(conn.execute, "%s", BATCH_ID_SECRET_NAME)
            return found

        try:
            log_migration(self._run(migrate_in, "migration"))
        except StoreUnavailable as exc:
            # The pool says only that no connection came in time; its reason (no such
            # database, authentication, refused) went to its log as a warning. Ask once
            # more, directly, so that the one message an operator reads names it.
            cause = self._connect_error()
            if cause is None:
                raise
            raise StoreUnavailable(f"{exc}; connecting directly: {cause}") from exc

    def _connect_error(self) -> str | None:
        try:
            psycopg.connect(self._conninfo, connect_timeout=5).close()
        except psycopg.Error as exc:
            return " ".join(str(exc).split())
        return None

    def schema_version(self) -> int:
        row = self._run(
            lambda conn: conn.execute(
                "SELECT value FROM hc_meta WHERE key = 'schema_version'"
            ).fetchone(),
            "read",
        )
        return _int(row[0]) if row else 0

    def commit(self, batches: Sequence[PendingBatch], now: int) -> list[bool]:
        if not batches:
            return []
        stored = stored_ids(batches, self._batch_id_secret)
        ids = remembered_ids(batches, stored)

        def commit_in(conn: psycopg.Connection[tuple[object, ...]]) -> list[bool]:
            fresh = {
                (str(site), str(batch_id))
                for site, batch_id in conn.execute(
                    _REMEMBER_BATCHES_SQL,
                    (
                        floor_hour(now),
                        [site for site, _, _ in ids],
                        [batch_id for _, batch_id, _ in ids],
                        [keep_until for _, _, keep_until in ids],
                    ),
                ).fetchall()
            }
            forget_legacy_copies(conn.execute, batches, stored, fresh, "%s")
            applied = first_copies(batches, stored, fresh)
            spill_excess_keys(conn.execute, batches, applied, self.key_cap, self._key_counts, "%s")
            mark_late(conn.execute, batches, applied, "%s")
            sites = applied_sites(batches, applied)
            # Shared with other commits; a roll-up of a site waits for it (and it for the
            # roll-up), so the watermarks read next stay true until COMMIT.
            conn.execute(_LOCK_ROLLUPS_SHARED, (_ROLLUP_LOCK, sites))
            rolled = rolled_watermarks(conn.execute, sites, "%s")
            for table, rows in counter_rows(batches, applied, rolled).items():
                rows.sort()  # one global lock order: concurrent writers never deadlock
                columns = [list(column) for column in zip(*rows, strict=True)]
                conn.execute(_UPSERT_SQL[table.name], columns)
            for site, mode in declared_modes(batches, applied):
                conn.execute(
                    "INSERT INTO hc_sender (site, visits, seen) VALUES (%s, %s, %s) "
                    "ON CONFLICT (site, visits) DO UPDATE SET seen = excluded.seen",
                    (site, mode, floor_hour(now)),
                )
            return applied

        return self._run(commit_in, "commit")

    def query(self, query: CounterQuery) -> list[tuple[int | str | None, ...]]:
        if query.resolution != "d":
            return self._select(query)

        def in_one_snapshot(conn: psycopg.Connection[tuple[object, ...]]) -> list[CounterRow]:
            # The watermark and the rows on both sides of it from one snapshot: a roll-up
            # between two reads (the first one empties today's daily rows) would
            # otherwise drop or double a day.
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            rows = conn.execute(_ROLLED_UNTIL_SQL, (query.site,)).fetchall()
            return over_rolled_days(
                query,
                _int(rows[0][0]) if rows else None,
                lambda part: _query_rows(conn.execute(*DIALECT.select_sql(part)).fetchall()),
            )

        return self._run(in_one_snapshot, "read")

    def _select(self, query: CounterQuery) -> list[tuple[int | str | None, ...]]:
        return _query_rows(self._read(*DIALECT.select_sql(query)))

    def apply_retention(self, site: Site, now: int, dedupe_seconds: int) -> RetentionResult:
        def retain(conn: psycopg.Connection[tuple[object, ...]]) -> RetentionResult:
            locked = conn.execute(
                "SELECT pg_try_advisory_xact_lock(%s, hashtext(%s))", (_RETENTION_LOCK, site.id)
            ).fetchone()
            if not locked or not locked[0]:
                return RetentionResult(0, 0, 0)  # another collector is doing this site now
            return delete_expired(conn.execute, site, now, dedupe_seconds, "%s")

        self.roll_days(site, now)
        result = self._run(retain, "retention")
        if result.hourly_rolled_up or result.daily_deleted:
            self._vacuum()
        return result

    def _vacuum(self) -> None:
        # Deleted rows stay in the table files until vacuumed; reclaim them now so purged
        # counts do not linger until autovacuum gets round to it.
        try:
            with self._pool.connection() as conn:
                for table in TABLES.values():
                    conn.execute(f"VACUUM {table.name}")
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            logger.warning("VACUUM after retention failed, autovacuum will do it: %s", exc)

    def rolled_until(self, site: str) -> int | None:
        rows = self._read(_ROLLED_UNTIL_SQL, (site,))
        return _int(rows[0][0]) if rows else None

    def roll_days(self, site: Site, now: int) -> int:
        def roll(conn: psycopg.Connection[tuple[object, ...]]) -> int:
            conn.execute(_LOCK_ROLLUP, (_ROLLUP_LOCK, site.id))
            return roll_next_day(conn.execute, site.id, site.timezone, now, "%s")

        while True:
            watermark = self.rolled_until(site.id)
            if watermark is not None and not needs_roll(watermark, now, site.timezone):
                return watermark
            self._run(roll, "roll-up")

    def declared_visit_modes(self, site: str) -> dict[str, int]:
        rows = self._read("SELECT visits, seen FROM hc_sender WHERE site = %s", (site,))
        return {str(mode): _int(seen) for mode, seen in rows}

    def meta_secret(self, name: str) -> bytes:
        return self._run(lambda conn: ensure_secret(conn.execute, "%s", name), "write")

    def seal_state(self, site: str) -> dict[str, int]:
        rows = self._read("SELECT res, sealed_until FROM hc_seal WHERE site = %s", (site,))
        return {str(res): _int(until) for res, until in rows}

    def start_sealing(self, site: str, resolution: Resolution, watermark: int) -> None:
        self._run(
            lambda conn: conn.execute(
                "INSERT INTO hc_seal (site, res, sealed_until, origin) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT DO NOTHING",
                (site, resolution, watermark, watermark),
            ),
            "write",
        )

    def seal_origins(self, site: str) -> dict[str, int]:
        rows = self._read("SELECT res, origin FROM hc_seal WHERE site = %s", (site,))
        return {str(res): _int(origin) for res, origin in rows if origin is not None}

    def seal_params(self, site: str) -> list[SealParams]:
        return seal_params_of(self._read(SEAL_PARAMS_SQL.format(ph="%s"), (site,)))

    def claimed_buckets(self, site: str, resolution: Resolution, start: int, end: int) -> list[int]:
        rows = self._read(*claimed_buckets_sql("%s", site, resolution, start, end))
        return [_int(row[0]) for row in rows]

    def seal_history(
        self,
        site: str,
        day: int | None,
        hours: Sequence[int],
        policy: ReleasePolicy,
        draw: Callable[[str], int],
    ) -> int:
        def seal_in(conn: psycopg.Connection[tuple[object, ...]]) -> int:
            with conn.cursor() as cursor:
                return seal_claimed(
                    conn.execute, cursor.executemany, site, day, hours, policy, draw, "%s"
                )

        return self._run(seal_in, "write")

    def data_buckets(self, site: str, resolution: Resolution, start: int, end: int) -> list[int]:
        rows = self._read(*data_buckets_sql("%s", site, resolution, start, end))
        return [_int(row[0]) for row in rows]

    def raw_rows(self, site: str, resolution: Resolution, start: int, end: int) -> dict[str, int]:
        rows = self._read(*raw_rows_sql("%s", site, resolution, start, end))
        return {str(kind): _int(n) for kind, n in rows}

    def seal(self, step: SealStep, policy: ReleasePolicy, draw: Callable[[str], int]) -> int | None:
        def seal_in(conn: psycopg.Connection[tuple[object, ...]]) -> int | None:
            with conn.cursor() as cursor:
                return seal_bucket(conn.execute, cursor.executemany, step, policy, draw, "%s")

        return self._run(seal_in, "seal")

    def query_released(self, query: ReleasedQuery) -> list[tuple[int | str | None, ...]]:
        rows = self._read(*DIALECT.released_sql(query))
        return [
            (*(_cell(value) for value in row[:-2]), _int(row[-2]), float(row[-1]))  # type: ignore[arg-type]
            for row in rows
        ]

    def close(self) -> None:
        self._pool.close()
