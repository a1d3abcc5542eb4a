"""The migration that gives bot counters a category; counts stored before it become 'other'.

Each store is taken back to the version before it, with ``hc_bot`` in its old shape (no
category, key without it) holding counts, then migrated as a collector start would."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from headcount_collector.pending import PendingBatch
from headcount_collector.stores import Store, open_store
from headcount_collector.stores.base import CounterQuery
from headcount_collector.stores.postgres import PostgresStore
from headcount_collector.stores.sqlite import SQLiteStore
from headcount_collector.tables import TABLES

# The schema version that adds the category (renumber here if migrations are reordered).
BOT_CATEGORY_VERSION = 3
HOUR = 1_796_000_400
OLD_ROWS = [("blog", "h", HOUR, 7), ("blog", "h", HOUR + 3600, 2), ("blog", "d", HOUR - 3600, 11)]


def schema_version(store: Store) -> int:
    # Both stores record it; the Store protocol leaves it out (only migrations need it).
    assert isinstance(store, SQLiteStore | PostgresStore)
    return store.schema_version()


@contextmanager
def raw(url: str) -> Iterator[Any]:
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        try:
            yield conn
        finally:
            conn.close()
    else:
        with psycopg.connect(url, autocommit=True) as pg:
            yield pg


def downgrade_before_categories(url: str) -> None:
    """The hc_bot table exactly as the versions before categories made it, holding
    OLD_ROWS, and the schema version just before the category migration."""
    sqlite = url.startswith("sqlite:///")
    mark = "?" if sqlite else "%s"
    integer = "INTEGER" if sqlite else "BIGINT"
    with raw(url) as conn:
        conn.execute("DROP TABLE hc_bot")
        conn.execute(
            f"CREATE TABLE hc_bot (site TEXT NOT NULL, res TEXT NOT NULL, bucket {integer} NOT NULL,"
            f" n {integer} NOT NULL, PRIMARY KEY (site, res, bucket))"
            + (" WITHOUT ROWID" if sqlite else "")
        )
        for row in OLD_ROWS:
            conn.execute(
                f"INSERT INTO hc_bot (site, res, bucket, n) VALUES ({mark}, {mark}, {mark}, {mark})",
                row,
            )
        # Later versions run again on the way back up: undo those that are not
        # idempotent (version 6 adds columns).
        conn.execute("ALTER TABLE hc_seal DROP COLUMN origin")
        conn.execute("ALTER TABLE hc_batch DROP COLUMN keep_until")
        conn.execute(
            f"UPDATE hc_meta SET value = {mark} WHERE key = 'schema_version'",
            (str(BOT_CATEGORY_VERSION - 1),),
        )


def stored_bots(url: str) -> set[tuple[str, int, str, int]]:
    with raw(url) as conn:
        rows = conn.execute("SELECT res, bucket, category, n FROM hc_bot").fetchall()
    return {(str(r[0]), int(r[1]), str(r[2]), int(r[3])) for r in rows}


def released_bots(store: Any) -> dict[str, int]:
    """What /v1/stats?metric=bots&by=category reads: the sum per category."""
    rows = store.query(
        CounterQuery(
            table=TABLES["bot"], site="blog", start=0, end=2**40, interval="total",
            group_by=("category",),
        )
    )  # fmt: skip
    return {str(r[-2]): int(r[-1]) for r in rows}


def test_counts_from_before_categories_become_other_and_new_ones_keep_theirs(
    store_url: str,
) -> None:
    store = open_store(store_url)
    try:
        store.migrate()
        latest = schema_version(store)
        downgrade_before_categories(store_url)
    finally:
        store.close()
    store = open_store(store_url)
    try:
        store.migrate()
        assert schema_version(store) == latest
        assert stored_bots(store_url) == {
            ("h", HOUR, "other", 7), ("h", HOUR + 3600, "other", 2), ("d", HOUR - 3600, "other", 11),
        }  # fmt: skip
        # The key now holds the category: two categories in one hour are two counters.
        counts: dict[tuple[str, int, tuple[str | int, ...]], int] = {
            ("bot", HOUR, ("ai",)): 3,
            ("bot", HOUR, ("other",)): 1,
        }
        assert store.commit([PendingBatch("blog", "a" * 32, counts, 2)], HOUR) == [True]
        assert released_bots(store) == {"ai": 3, "other": 10}
        # Migrating again changes nothing.
        store.migrate()
        assert ("h", HOUR, "other", 8) in stored_bots(store_url)
    finally:
        store.close()
