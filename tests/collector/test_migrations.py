"""Frozen migrations: the latest schema is the registry's, and an old database upgrades
without losing a count.

``fixtures/schema_v1.sqlite3`` and ``fixtures/schema_v1_postgres.sql`` are databases made
by schema version 1 (bots without a category, no release tables) holding a few counts.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from headcount import wire
from headcount_collector.stores.base import release_table
from headcount_collector.stores.migrations import latest_version
from headcount_collector.stores.postgres import PostgresStore
from headcount_collector.stores.sqlite import SQLiteStore
from headcount_collector.tables import TABLES
from tests.conftest import POSTGRES_URL

FIXTURES = Path(__file__).parent / "fixtures"
COUNTER_TABLES = [t.name for t in TABLES.values()]

# table -> (column -> "integer" or "text", primary key columns in order)
Schema = dict[str, tuple[dict[str, str], tuple[str, ...]]]


def registry_schema() -> Schema:
    """The counter and released tables as ``wire.KINDS`` declares them."""
    schema: Schema = {}
    for name, kind in wire.KINDS.items():
        dims = {d.name: "integer" if d.integer else "text" for d in kind.dimensions}
        schema[f"hc_{name}"] = (
            {"site": "text", "res": "text", "bucket": "integer", **dims, "n": "integer"},
            ("site", "res", "bucket", *dims),
        )
        schema[release_table(name)] = (
            {
                "site": "text",
                "res": "text",
                "bucket": "integer",
                "marginal": "text",
                **dims,
                "n": "integer",
                "var": "real",
            },
            ("site", "res", "marginal", "bucket", *dims),
        )
    return schema


def _type_class(declared: str) -> str:
    declared = declared.lower()
    if "int" in declared:
        return "integer"
    if declared in {"real", "double precision"}:
        return "real"
    return "text"


def sqlite_schema(path: Path, tables: list[str]) -> Schema:
    schema: Schema = {}
    with closing(sqlite3.connect(path)) as conn:
        for table in tables:
            info = conn.execute(f"PRAGMA table_info({table})").fetchall()
            columns = {row[1]: _type_class(row[2]) for row in info}
            key = tuple(row[1] for row in sorted((r for r in info if r[5]), key=lambda r: r[5]))
            schema[table] = (columns, key)
    return schema


def postgres_schema(url: str, tables: list[str]) -> Schema:
    import psycopg

    schema: Schema = {}
    with psycopg.connect(url) as conn:
        for table in tables:
            columns = {
                str(name): _type_class(str(kind))
                for name, kind in conn.execute(
                    "SELECT column_name, data_type FROM information_schema.columns "
                    "WHERE table_schema = 'public' AND table_name = %s",
                    (table,),
                ).fetchall()
            }
            key = tuple(
                str(name)
                for (name,) in conn.execute(
                    "SELECT a.attname FROM pg_index i"
                    " JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, position)"
                    " ON true"
                    " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum"
                    " WHERE i.indrelid = %s::regclass AND i.indisprimary ORDER BY k.position",
                    (f"public.{table}",),
                ).fetchall()
            )
            schema[table] = (columns, key)
    return schema


@pytest.fixture
def fresh_postgres() -> Iterator[Callable[[], str]]:
    """Makes empty databases of its own (the upgrade test needs one without any schema)."""
    import psycopg

    made: list[str] = []
    base = POSTGRES_URL.rsplit("/", 1)[0]

    def make() -> str:
        name = f"headcount_migrations_{len(made)}_{id(made)}"
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
            admin.execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        return f"{base}/{name}"

    yield make
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        for name in made:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_new_sqlite_database_has_the_registry_schema(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "new.sqlite3")
    store.migrate()
    store.close()
    expected = registry_schema()
    assert sqlite_schema(tmp_path / "new.sqlite3", list(expected)) == expected


@pytest.mark.postgres
def test_a_new_postgres_database_has_the_registry_schema(
    fresh_postgres: Callable[[], str],
) -> None:
    url = fresh_postgres()
    store = PostgresStore(url)
    try:
        store.migrate()
    finally:
        store.close()
    expected = registry_schema()
    assert postgres_schema(url, list(expected)) == expected


def _counts(rows: list[Any]) -> dict[tuple[object, ...], int]:
    """Rows of (*key, n) as key -> n; bots without a category count as 'other'."""
    return {tuple(row[:-1]): int(row[-1]) for row in rows}


def _stored(execute: Callable[[str], Any]) -> dict[str, dict[tuple[object, ...], int]]:
    stored = {}
    for table in TABLES.values():
        columns = ", ".join(("site", "res", "bucket", *table.dimensions, "n"))
        stored[table.name] = _counts(execute(f"SELECT {columns} FROM {table.name}").fetchall())
    return stored


def _v1_counts(execute: Callable[[str], Any]) -> dict[str, dict[tuple[object, ...], int]]:
    """The version-1 rows as the upgraded schema should hold them."""
    stored = {}
    for table in TABLES.values():
        dims = [d for d in table.dimensions if not (table.kind == "bot" and d == "category")]
        columns = ", ".join(("site", "res", "bucket", *dims, "n"))
        rows = execute(f"SELECT {columns} FROM {table.name}").fetchall()
        if table.kind == "bot":
            rows = [(*row[:-1], "other", row[-1]) for row in rows]
        stored[table.name] = _counts(rows)
    return stored


def test_a_version_1_sqlite_database_upgrades_with_every_count(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "old.sqlite3"
    shutil.copy(FIXTURES / "schema_v1.sqlite3", path)
    with closing(sqlite3.connect(path)) as conn:
        before = _v1_counts(conn.execute)
        version = conn.execute("SELECT value FROM hc_meta WHERE key = 'schema_version'")
        assert version.fetchone() == ("1",)
    assert all(before.values())  # the fixture holds counts in every table
    store = SQLiteStore(path)
    with caplog.at_level("INFO", logger="headcount_collector.migrations"):
        store.migrate()
        store.migrate()  # nothing left to do: nothing said
    assert [r.getMessage() for r in caplog.records] == [
        f"database schema migrated from version 1 to {latest_version()}"
    ]
    assert store.schema_version() == latest_version()
    store.close()
    with closing(sqlite3.connect(path)) as conn:
        assert _stored(conn.execute) == before
        received = conn.execute("SELECT received FROM hc_batch").fetchall()
    assert len(received) == 2
    assert all(r % 3600 == 0 for (r,) in received)  # arrival times kept to the hour
    expected = registry_schema()
    assert sqlite_schema(path, list(expected)) == expected


@pytest.mark.postgres
def test_a_version_1_postgres_database_upgrades_with_every_count(
    fresh_postgres: Callable[[], str],
) -> None:
    import psycopg

    url = fresh_postgres()
    with psycopg.connect(url, autocommit=True) as conn:
        # A plain-SQL dump without parameters: one simple-protocol execute.
        conn.execute((FIXTURES / "schema_v1_postgres.sql").read_text())
    with psycopg.connect(url) as conn:
        before = _v1_counts(conn.execute)
    assert all(before.values())
    store = PostgresStore(url)
    try:
        store.migrate()
        assert store.schema_version() == latest_version()
    finally:
        store.close()
    with psycopg.connect(url) as conn:
        assert _stored(conn.execute) == before
    expected = registry_schema()
    assert postgres_schema(url, list(expected)) == expected


def test_version_11_lists_the_buckets_of_the_released_cells_already_stored(
    tmp_path: Path,
) -> None:
    """A database at version 10 holds released cells but no list of their buckets, which
    route-filtered reads on SQLite go through: the upgrade fills it from the cells."""
    path = tmp_path / "v10.sqlite3"
    store = SQLiteStore(path)
    store.migrate()
    store.close()
    cells = [("blog", "h", 7200), ("blog", "h", 7200), ("blog", "d", 0), ("shop", "h", 3600)]
    with closing(sqlite3.connect(path)) as conn:
        for index, (site, res, bucket) in enumerate(cells):
            table = release_table(["pageview", "request", "event", "visit"][index])
            columns = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
            values = {"site": site, "res": res, "bucket": bucket, "n": 50, "var": 49.0}
            row = [values.get(c, 0 if c in ("entry", "marginal") else "") for c in columns]
            conn.execute(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
                f"({', '.join('?' for _ in columns)})",
                row,
            )
        conn.execute("DROP TABLE hc_rel_buckets")
        conn.execute("UPDATE hc_meta SET value = '10' WHERE key = 'schema_version'")
        conn.commit()
    store = SQLiteStore(path)
    store.migrate()
    assert store.schema_version() == latest_version()
    store.close()
    with closing(sqlite3.connect(path)) as conn:
        listed = set(conn.execute("SELECT site, res, bucket FROM hc_rel_buckets").fetchall())
    assert listed == set(cells)
