"""The embedded default store: one SQLite file in WAL mode.

Durability: ``synchronous=FULL`` so an acknowledged count survives power loss, made
affordable by group commit (many batches per fsync). ``secure_delete`` overwrites
deleted rows so purged data is really gone from the file.

Checkpoints (copying the WAL back into the database file) run on a background thread
rather than inside whichever commit happens to cross SQLite's 1,000-page mark: under
steady ingest they were most of a group commit's mean time, and every request of that
group waited for them. Only when commits follow each other so closely that the
background checkpoint never catches up does the writer finish one itself (see
``CATCH_UP_FRAMES``): a few milliseconds, once the WAL passes 16 MiB.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

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
    SQLITE,
    apply_migrations,
    latest_version,
    log_migration,
)
from headcount_collector.tables import TABLES
from headcount_collector.timeutil import floor_hour

__all__ = ["SQLiteStore"]

logger = logging.getLogger("headcount_collector.stores.sqlite")

DIALECT = Dialect(
    placeholder="?",
    prop_expression="json_extract(c.props, '$.\"' || {ph} || '\"')",
    probes_released_buckets=True,
)

_UPSERT_SQL = {table.name: DIALECT.upsert_sql(table) for table in TABLES.values()}

_ROLLED_UNTIL_SQL = "SELECT rolled_until FROM hc_rollup WHERE site = ?"
_REMEMBER_SQL = "INSERT INTO hc_batch (site, batch_id, received, keep_until) VALUES "
_REMEMBER_NEW_SQL = "INSERT OR IGNORE INTO hc_batch (site, batch_id, received, keep_until) VALUES "
_PRAGMAS = (
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = FULL",
    "PRAGMA secure_delete = ON",
    # The checkpointer thread does it (see the module docstring).
    "PRAGMA wal_autocheckpoint = 0",
    # A WAL that grew once (a large roll-up, a burst) is cut back when it next restarts,
    # instead of keeping its largest size on disk.
    f"PRAGMA journal_size_limit = {32 * 1024 * 1024}",
)
# Commits between two background checkpoints: about what SQLite's own 1,000-page mark
# comes to for small group commits, while the WAL stays a few megabytes.
CHECKPOINT_EVERY = 16
# WAL frames (4 KiB pages) past which the writer finishes a checkpoint itself. SQLite
# starts the WAL over only when a write begins with every frame already copied back,
# and a background checkpoint never gets there while commits follow each other without
# a pause (a backlog, an import): the WAL then grew without bound (2 GB in a minute of
# back-to-back group commits), and every page lookup searched all of its index.
CATCH_UP_FRAMES = 4096


class _Checkpointer:
    """Runs ``PRAGMA wal_checkpoint(PASSIVE)`` on its own thread and connection every
    ``CHECKPOINT_EVERY`` commits. PASSIVE never blocks a writer or a reader; a
    checkpoint that cannot finish (a reader still needs old pages) is finished by a
    later one, exactly as SQLite's automatic checkpoints would be.

    ``behind`` says the WAL it last found held more than ``CATCH_UP_FRAMES`` frames: the
    writer then copies back what is left, between two transactions, until a checkpoint
    of its own finds every frame copied, so that its next transaction starts the WAL
    over."""

    def __init__(self, connect: Callable[[], sqlite3.Connection]) -> None:
        self._connect = connect
        self._wake = threading.Event()
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._commits = 0
        self.behind = False

    def committed(self) -> None:
        # Unlocked: a lost increment only shifts the next checkpoint by a commit.
        self._commits += 1
        if self._commits % CHECKPOINT_EVERY:
            return
        if self._thread is None:
            with self._start_lock:
                if self._thread is None and not self._stopping:
                    self._thread = threading.Thread(
                        target=self._run, name="headcount-sqlite-checkpoint", daemon=True
                    )
                    self._thread.start()
        self._wake.set()

    def stop(self) -> None:
        with self._start_lock:
            self._stopping = True
            thread = self._thread
        self._wake.set()
        if thread is not None:
            thread.join(timeout=30)
        with self._start_lock:
            # A store may be used again after close(): its next commits start a new one.
            self._thread = None
            self._stopping = False

    def _run(self) -> None:
        conn = self._connect()
        try:
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._stopping:
                    return
                try:
                    row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    # (busy, frames in the WAL, frames copied back). Busy: another
                    # checkpoint (the writer's, another process's) ran; it says nothing.
                    if row is not None and not row[0]:
                        self.behind = row[1] > CATCH_UP_FRAMES
                except sqlite3.Error as exc:
                    # The next one retries; the WAL keeps every commit meanwhile.
                    logger.warning("SQLite checkpoint failed: %s", exc)
        finally:
            conn.close()


SCHEMA_VERSION = latest_version()


class SQLiteStore:
    def __init__(
        self, path: str | Path, busy_timeout: float = 10.0, key_cap: int = DEFAULT_KEY_CAP
    ) -> None:
        if busy_timeout < 0:
            raise ValueError("busy_timeout must not be negative")
        # Distinct hourly keys per site, table and hour; more fold into (other).
        self.key_cap = key_cap
        self._key_counts = KeyCounts()
        self._data_version: int | None = None
        self.path = Path(path)
        # How long a write waits for another process's lock before the batch is answered
        # 503 (Retry-After) instead of being held indefinitely.
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._checkpointer = _Checkpointer(self._open)
        self._batch_id_secret = b""

    @classmethod
    def from_url(cls, url: str) -> SQLiteStore:
        """``sqlite:///relative.db`` or ``sqlite:////abs/path.db``, optionally with
        ``?busy_timeout=SECONDS``."""
        parsed = urlsplit(url)
        path = parsed.path[1:] if parsed.path.startswith("/") else parsed.path
        if not path:
            raise ValueError("sqlite URL needs a file path, e.g. sqlite:///headcount.sqlite3")
        options = parse_qs(parsed.query)
        unknown = set(options) - {"busy_timeout"}
        if unknown:
            raise ValueError(f"unknown sqlite URL option(s): {', '.join(sorted(unknown))}")
        try:
            busy = float(options.get("busy_timeout", ["10"])[-1])
        except ValueError:
            raise ValueError("busy_timeout must be a number of seconds") from None
        return cls(path, busy_timeout=busy)

    def _connection(self) -> sqlite3.Connection:
        # One connection per thread: sqlite3 connections must not be shared across threads
        # while in use, and the writer and the query threads never wait on each other's
        # Python-level locks this way; WAL lets readers run during a write.
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._open()
            self._local.conn = conn
            with self._connections_lock:
                self._connections.append(conn)
        return conn

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path,
            isolation_level=None,
            check_same_thread=False,
            timeout=self.busy_timeout,
        )
        for pragma in _PRAGMAS:
            conn.execute(pragma)
        return conn

    def _read(self, sql: str, params: Sequence[object]) -> list[Any]:
        return self._connection().execute(sql, params).fetchall()

    def _answer(self, sql: str, params: Sequence[object]) -> list[Any]:
        """A read that answers a query: a busy or broken file is the store unavailable."""
        try:
            return self._read(sql, params)
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"SQLite read failed: {exc}") from exc

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            self._checkpointer.committed()
        except sqlite3.OperationalError as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StoreUnavailable(f"SQLite write failed: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            raise StoreUnavailable(f"SQLite write failed: {exc}") from exc
        if self._checkpointer.behind:
            self._catch_up(conn)

    def _catch_up(self, conn: sqlite3.Connection) -> None:
        """Copy back what the background checkpoint has not yet, between two transactions
        (a few commits' frames): the next write then finds the WAL fully copied back and
        starts it over. What is committed is committed whatever happens here."""
        self._checkpointer.behind = False  # an error is logged once, not after every commit
        try:
            row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:
            logger.warning("SQLite checkpoint after a commit failed: %s", exc)
            return
        # A reader still on an older snapshot keeps the last frames from being copied (or
        # another checkpoint held the lock): try again after the next commit.
        self._checkpointer.behind = row is not None and (bool(row[0]) or row[1] > row[2])

    def migrate(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._write() as conn:
            found = apply_migrations(conn.execute, SQLITE)
            self._key_counts.secret = ensure_secret(conn.execute, "?")
            self._batch_id_secret = ensure_secret(conn.execute, "?", BATCH_ID_SECRET_NAME)
        log_migration(found)

    def schema_version(self) -> int:
        row = (
            self._connection()
            .execute("SELECT value FROM hc_meta WHERE key = 'schema_version'")
            .fetchone()
        )
        return int(row[0]) if row else 0

    def commit(self, batches: Sequence[PendingBatch], now: int) -> list[bool]:
        with self._write() as conn:
            # One statement for the whole group; RETURNING names the ids that were new.
            stored = stored_ids(batches, self._batch_id_secret)
            ids = remembered_ids(batches, stored)
            fresh: set[tuple[str, str]] = set()
            received = floor_hour(now)
            for start in range(0, len(ids), 200):  # bound the statement's parameter count
                chunk = ids[start : start + 200]
                values = ", ".join("(?, ?, ?, ?)" for _ in chunk)
                params = [
                    x
                    for site, batch_id, keep_until in chunk
                    for x in (site, batch_id, received, keep_until)
                ]
                try:
                    # Nearly every group is all new ids: then a plain INSERT says so, at
                    # about three quarters of the cost of one that also returns its rows.
                    conn.execute(f"{_REMEMBER_SQL}{values}", params)
                    fresh.update((site, batch_id) for site, batch_id, _ in chunk)
                    continue
                except sqlite3.IntegrityError:
                    pass  # a retry among them: the statement changed nothing
                inserted = conn.execute(
                    f"{_REMEMBER_NEW_SQL}{values} RETURNING site, batch_id", params
                ).fetchall()
                fresh.update((str(site), str(batch_id)) for site, batch_id in inserted)
            forget_legacy_copies(conn.execute, batches, stored, fresh, "?")
            applied = first_copies(batches, stored, fresh)
            # Another worker's commit (or a purge on another connection) changes the
            # database's data_version as this connection sees it: the key bounds, which
            # count this worker's writes only, are then read again.
            version = conn.execute("PRAGMA data_version").fetchone()[0]
            if version != self._data_version:
                self._key_counts.forget()
                self._data_version = version
            spill_excess_keys(conn.execute, batches, applied, self.key_cap, self._key_counts, "?")
            mark_late(conn.execute, batches, applied, "?")
            rolled = rolled_watermarks(conn.execute, applied_sites(batches, applied), "?")
            for table, rows in counter_rows(batches, applied, rolled).items():
                conn.executemany(_UPSERT_SQL[table.name], rows)
            conn.executemany(
                "INSERT INTO hc_sender (site, visits, seen) VALUES (?, ?, ?) "
                "ON CONFLICT (site, visits) DO UPDATE SET seen = excluded.seen",
                [(site, mode, received) for site, mode in declared_modes(batches, applied)],
            )
        return applied

    def query(self, query: CounterQuery) -> list[tuple[int | str | None, ...]]:
        if query.resolution != "d":
            return self._select(query)
        # The watermark and the rows on both sides of it from one snapshot: a roll-up
        # between two reads (the first one empties today's daily rows) would otherwise
        # drop or double a day.
        conn = self._connection()
        begun = not conn.in_transaction  # inside a write, that write's view already is one
        try:
            if begun:
                conn.execute("BEGIN")
            try:
                rows = conn.execute(_ROLLED_UNTIL_SQL, (query.site,)).fetchall()
                return over_rolled_days(
                    query,
                    int(rows[0][0]) if rows else None,
                    lambda part: conn.execute(*DIALECT.select_sql(part)).fetchall(),
                )
            finally:
                if begun:
                    conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"SQLite read failed: {exc}") from exc

    def _select(self, query: CounterQuery) -> list[tuple[int | str | None, ...]]:
        return self._answer(*DIALECT.select_sql(query))

    def apply_retention(self, site: Site, now: int, dedupe_seconds: int) -> RetentionResult:
        self.roll_days(site, now)
        with self._write() as conn:
            result = delete_expired(conn.execute, site, now, dedupe_seconds, "?")
        if result.hourly_rolled_up or result.daily_deleted or result.batch_ids_forgotten:
            # Deleted pages may still sit in the WAL file; fold it back and truncate it
            # so a purged value is gone from every file on disk.
            self._connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return result

    def rolled_until(self, site: str) -> int | None:
        rows = self._answer(_ROLLED_UNTIL_SQL, (site,))
        return int(rows[0][0]) if rows else None

    def roll_days(self, site: Site, now: int) -> int:
        while True:
            watermark = self.rolled_until(site.id)
            if watermark is not None and not needs_roll(watermark, now, site.timezone):
                return watermark
            with self._write() as conn:
                roll_next_day(conn.execute, site.id, site.timezone, now, "?")

    def declared_visit_modes(self, site: str) -> dict[str, int]:
        rows = self._read("SELECT visits, seen FROM hc_sender WHERE site = ?", (site,))
        return {str(mode): int(seen) for mode, seen in rows}

    def meta_secret(self, name: str) -> bytes:
        with self._write() as conn:
            return ensure_secret(conn.execute, "?", name)

    def seal_state(self, site: str) -> dict[str, int]:
        rows = self._read("SELECT res, sealed_until FROM hc_seal WHERE site = ?", (site,))
        return {str(res): int(until) for res, until in rows}

    def start_sealing(self, site: str, resolution: Resolution, watermark: int) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO hc_seal (site, res, sealed_until, origin) VALUES (?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                (site, resolution, watermark, watermark),
            )

    def seal_origins(self, site: str) -> dict[str, int]:
        rows = self._read("SELECT res, origin FROM hc_seal WHERE site = ?", (site,))
        return {str(res): int(origin) for res, origin in rows if origin is not None}

    def seal_params(self, site: str) -> list[SealParams]:
        return seal_params_of(self._read(SEAL_PARAMS_SQL.format(ph="?"), (site,)))

    def claimed_buckets(self, site: str, resolution: Resolution, start: int, end: int) -> list[int]:
        rows = self._read(*claimed_buckets_sql("?", site, resolution, start, end))
        return [int(row[0]) for row in rows]

    def seal_history(
        self,
        site: str,
        day: int | None,
        hours: Sequence[int],
        policy: ReleasePolicy,
        draw: Callable[[str], int],
    ) -> int:
        with self._write() as conn:
            return seal_claimed(conn.execute, conn.executemany, site, day, hours, policy, draw, "?")

    def data_buckets(self, site: str, resolution: Resolution, start: int, end: int) -> list[int]:
        rows = self._read(*data_buckets_sql("?", site, resolution, start, end))
        return [int(row[0]) for row in rows]

    def raw_rows(self, site: str, resolution: Resolution, start: int, end: int) -> dict[str, int]:
        rows = self._read(*raw_rows_sql("?", site, resolution, start, end))
        return {str(kind): int(n) for kind, n in rows}

    def seal(self, step: SealStep, policy: ReleasePolicy, draw: Callable[[str], int]) -> int | None:
        with self._write() as conn:
            return seal_bucket(conn.execute, conn.executemany, step, policy, draw, "?")

    def query_released(self, query: ReleasedQuery) -> list[tuple[int | str | None, ...]]:
        return self._answer(*DIALECT.released_sql(query))

    def close(self) -> None:
        self._checkpointer.stop()
        with self._connections_lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()
