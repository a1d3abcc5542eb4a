"""Counter upserts into PostgreSQL: psycopg 3 against asyncpg, row-by-row against unnest.

Run: .venv/bin/python bench/pg_drivers.py [--rounds N] [--rows-per-round N]
     (server: $HEADCOUNT_BENCH_POSTGRES, default postgresql://postgres@127.0.0.1:5432/test;
     a scratch database is created on it and dropped afterwards)

Each transaction upserts a group of pageview counter rows into ``hc_pageview`` (the schema
the PostgreSQL store creates), keys drawn from a fixed pool so that some rows are new and
most add to existing ones, sorted by key as the store does. Four ways:

- psycopg executemany: the row-at-a-time INSERT ... ON CONFLICT (psycopg pipelines it)
- psycopg unnest: one INSERT ... SELECT FROM unnest(arrays) per transaction
- psycopg unnest binary: the same, arrays sent in binary format (the store's way)
- asyncpg executemany / asyncpg unnest: the same two statements through asyncpg

One connection, one transaction after another, like the store's single writer thread.
Rounds are interleaved so machine noise hits every method alike; figures are the median
rows/s over rounds; ratios are against psycopg executemany in the same run.
``synchronous_commit`` stays at the server's setting (on by default), as in production.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import statistics
import time
from collections.abc import Awaitable, Callable

import asyncpg
import psycopg

from _provenance import print_provenance
from headcount_collector.stores.postgres import DIALECT, PostgresStore, _upsert_sql
from headcount_collector.tables import TABLES

SERVER = os.environ.get("HEADCOUNT_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
TABLE = TABLES["pageview"]
ROW_SQL = DIALECT.upsert_sql(TABLE)
# The store's statement sends the arrays in binary (psycopg's %b); %s sends them as text.
UNNEST_BINARY_SQL = _upsert_sql(TABLE)
UNNEST_SQL = UNNEST_BINARY_SQL.replace("%b", "%s")

Row = tuple[str, str, int, str, str, str, str, str, int, int]


def numbered(sql: str) -> str:
    """psycopg's %s placeholders as asyncpg's $1, $2, ..."""
    counter = iter(range(1, 1000))
    return re.sub(r"%[sb]", lambda _: f"${next(counter)}", sql)


def key_pool() -> list[tuple[str, str, int, str, str, str, str, str, int]]:
    hour = int(time.time()) // 3600 * 3600
    return [
        ("bench", "h", hour - h * 3600, f"/page/{r}", ref, "", "", "", entry)
        for h in range(24)
        for r in range(50)
        for ref in ("(direct)", "(internal)", "news.example", "search.example")
        for entry in (0, 1)
    ]


def make_groups(rows_per_round: int, per_txn: int, seed: int) -> list[list[Row]]:
    rng = random.Random(seed)
    pool = key_pool()
    return [
        sorted((*key, rng.randint(1, 9)) for key in rng.sample(pool, per_txn))
        for _ in range(rows_per_round // per_txn)
    ]


def columns(group: list[Row]) -> list[list[object]]:
    site, res, bucket, route, ref, src, med, camp, entry, n = zip(*group, strict=True)
    return [
        list(site),
        list(res),
        list(bucket),
        list(route),
        list(ref),
        list(src),
        list(med),
        list(camp),
        list(entry),
        list(n),
    ]


def psycopg_executemany(
    conn: psycopg.Connection[tuple[object, ...]], groups: list[list[Row]]
) -> None:
    for group in groups:
        with conn.transaction(), conn.cursor() as cur:
            cur.executemany(ROW_SQL, group)


def psycopg_unnest(
    conn: psycopg.Connection[tuple[object, ...]], groups: list[list[Row]], sql: str = UNNEST_SQL
) -> None:
    for group in groups:
        with conn.transaction():
            conn.execute(sql, columns(group))


async def asyncpg_executemany(conn: asyncpg.Connection, groups: list[list[Row]]) -> None:
    sql = numbered(ROW_SQL)
    for group in groups:
        async with conn.transaction():
            await conn.executemany(sql, group)


async def asyncpg_unnest(conn: asyncpg.Connection, groups: list[list[Row]]) -> None:
    sql = numbered(UNNEST_SQL)
    for group in groups:
        async with conn.transaction():
            await conn.execute(sql, *columns(group))


async def run(url: str, rounds: int, rows_per_round: int) -> None:
    pg = psycopg.connect(url, autocommit=True)
    apg = await asyncpg.connect(url)
    print(f"median rows/s upserted, one connection, {rounds} rounds x {rows_per_round} rows")
    print(f"{'method':24} {'rows/txn':>8} {'rows/s':>9} {'vs psycopg executemany':>24}")
    try:
        for per_txn in (100, 1000):
            sync_methods: dict[str, Callable[[list[list[Row]]], None]] = {
                "psycopg executemany": lambda g: psycopg_executemany(pg, g),
                "psycopg unnest": lambda g: psycopg_unnest(pg, g),
                "psycopg unnest binary": lambda g: psycopg_unnest(pg, g, UNNEST_BINARY_SQL),
            }
            async_methods: dict[str, Callable[[list[list[Row]]], Awaitable[None]]] = {
                "asyncpg executemany": lambda g: asyncpg_executemany(apg, g),
                "asyncpg unnest": lambda g: asyncpg_unnest(apg, g),
            }
            rates: dict[str, list[float]] = {name: [] for name in [*sync_methods, *async_methods]}
            for round_no in range(rounds + 1):
                order = [*rates]
                random.Random(round_no).shuffle(order)
                for name in order:
                    groups = make_groups(rows_per_round, per_txn, seed=round_no * 31 + len(name))
                    started = time.perf_counter()
                    if name in sync_methods:
                        sync_methods[name](groups)
                    else:
                        await async_methods[name](groups)
                    elapsed = time.perf_counter() - started
                    if round_no:  # round 0 warms up caches and prepared statements
                        rates[name].append(rows_per_round / elapsed)
            baseline = statistics.median(rates["psycopg executemany"])
            for name, values in rates.items():
                rate = statistics.median(values)
                print(f"{name:24} {per_txn:8} {rate:9.0f} {rate / baseline:23.2f}x")
    finally:
        pg.close()
        await apg.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rows-per-round", type=int, default=10_000)
    args = parser.parse_args()
    print_provenance()
    base = SERVER.rsplit("/", 1)[0]
    name = f"headcount_bench_{os.getpid()}"
    with psycopg.connect(SERVER, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        store = PostgresStore(f"{base}/{name}")
        store.migrate()
        store.close()
        asyncio.run(run(f"{base}/{name}", args.rounds, args.rows_per_round))
    finally:
        with psycopg.connect(SERVER, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
