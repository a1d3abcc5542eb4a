"""Nothing at rest is finer than an hour: every column that holds a time holds an hour
(a daily row's bucket is its local midnight), whatever second the writes happened at."""

from __future__ import annotations

import secrets
from typing import Any

from headcount_collector.pending import CounterKey, PendingBatch
from headcount_collector.stores.base import Store
from headcount_collector.stores.migrations import SQLITE, apply_migrations
from tests.collector.test_batch_ids import execute_on
from tests.collector.test_query import NOW, pv

HOUR = int(NOW) // 3600 * 3600
# A write at 47 minutes 13 seconds past the hour.
ODD_SECOND = HOUR + 47 * 60 + 13
# Columns that hold times; every other integer column holds a count, a flag or a variance.
TIME_COLUMNS = {
    "bucket", "received", "keep_until", "seen", "sealed_until", "origin",
    "sealed_from", "rolled_until",
}  # fmt: skip
NOT_TIMES = {"n", "entry", "var", "epsilon", "delta"}


def integer_columns(store_url: str) -> dict[str, list[str]]:
    execute = execute_on(store_url)
    if store_url.startswith("sqlite:"):
        tables = [
            row[0] for row in execute("SELECT name FROM sqlite_master WHERE type = 'table'", ())
        ]
        return {
            table: [
                str(row[1])
                for row in execute(f"PRAGMA table_info({table})", ())
                if str(row[2]).upper() in ("INTEGER", "BIGINT", "REAL")
            ]
            for table in tables
            if table.startswith("hc_")
        }
    columns: dict[str, list[str]] = {}
    for table, column in execute(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() "
        "AND data_type IN ('bigint', 'integer', 'double precision', 'real')",
        (),
    ):
        if str(table).startswith("hc_"):
            columns.setdefault(str(table), []).append(str(column))
    return columns


def test_every_time_at_rest_is_on_the_hour(store: Store, store_url: str) -> None:
    counts: dict[CounterKey, int] = {("pageview", HOUR, pv("/")): 3}
    live = PendingBatch("shop", secrets.token_hex(16), counts, 1, visits="memory")
    imported = PendingBatch(
        "shop", secrets.token_hex(16), counts, 1, visits="off", keep_id_until=HOUR + 86400
    )
    assert store.commit([live, imported], ODD_SECOND) == [True, True]
    columns = integer_columns(store_url)
    found = {column for names in columns.values() for column in names}
    # A new integer column must be placed on one side or the other here.
    assert found <= TIME_COLUMNS | NOT_TIMES, found - TIME_COLUMNS - NOT_TIMES
    execute = execute_on(store_url)
    checked = 0
    for table, names in columns.items():
        for column in sorted(set(names) & TIME_COLUMNS):
            rows: list[tuple[Any, ...]] = execute(
                f"SELECT {column} FROM {table} WHERE {column} IS NOT NULL", ()
            )
            for (value,) in rows:
                assert int(value) % 3600 == 0, (table, column, value)
                checked += 1
    # The commit wrote the sender's mode, both batch ids and hourly and daily rows.
    assert {"seen", "received", "keep_until", "bucket"} <= {
        column
        for table, names in columns.items()
        for column in names
        if execute(f"SELECT COUNT(*) FROM {table} WHERE {column} IS NOT NULL", ())[0][0]
    }
    assert checked >= 6


def test_migration_8_rounds_the_seconds_earlier_versions_wrote(tmp_path: Any) -> None:
    import sqlite3

    conn = sqlite3.connect(tmp_path / "old.sqlite3", isolation_level=None)
    try:
        execute = conn.execute
        apply_migrations(execute, SQLITE)
        execute(
            "INSERT INTO hc_sender (site, visits, seen) VALUES ('shop', 'memory', ?)", (ODD_SECOND,)
        )
        execute("UPDATE hc_meta SET value = '7' WHERE key = 'schema_version'")
        apply_migrations(execute, SQLITE)
        assert execute("SELECT seen FROM hc_sender").fetchall() == [(HOUR,)]
    finally:
        conn.close()


def test_a_site_in_a_zone_off_the_hour_seals_from_a_whole_hour(
    store: Store, store_url: str, tmp_path: Any
) -> None:
    """Retention keeps local days, and in Kathmandu (UTC+5:45) a local midnight is 15
    minutes past a UTC hour. Sealing of a database that already held counts began at
    that midnight, so its hourly origin and watermark were stored at minutes past the
    hour (a review found them). Hourly sealing now starts at the first whole hour."""
    from headcount_collector.config import load_sites
    from headcount_collector.release.sealing import begin_sealing
    from tests.conftest import site_file_text

    sites = tmp_path / "sites.toml"
    sites.write_text(
        site_file_text(noise=True).replace('timezone = "UTC"', 'timezone = "Asia/Kathmandu"'),
        encoding="utf-8",
    )
    site = load_sites(sites).get("shop")
    assert site is not None
    counts: dict[CounterKey, int] = {("pageview", HOUR - 3 * 86400, pv("/")): 3}
    batch = PendingBatch("shop", secrets.token_hex(16), counts, 1, visits="memory")
    assert store.commit([batch], ODD_SECOND) == [True]
    begin_sealing(store, site, ODD_SECOND)
    execute = execute_on(store_url)
    rows = execute("SELECT res, origin, sealed_until FROM hc_seal WHERE site = 'shop'", ())
    origins = {str(res): (int(origin), int(until)) for res, origin, until in rows}
    assert origins["h"][0] % 3600 == 0, origins
    assert origins["h"][1] % 3600 == 0, origins
    assert origins["d"][0] % 3600 == 15 * 60  # a local midnight, as a day's key is
