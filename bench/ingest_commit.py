"""The new-key write path in one process, SQLite and PostgreSQL, against plain upserts.

Run: .venv/bin/python bench/ingest_commit.py [--rounds 5] [--batches 24] [--stores sqlite,postgres]
     (PostgreSQL server: $HEADCOUNT_BENCH_POSTGRES, default
     postgresql://postgres@127.0.0.1:5432/test; a scratch database is created and dropped)

No HTTP: what ``bench/ingest.py`` cannot separate. Each round decodes, validates and
commits (groups of 4, as the group commit would) 500-record batches where every record
is a new key of the current hour (route templates repeat, keys do not: an hour's
rollover), through the store's own ``commit`` with its key cap and late marks, for a
site whose days are rolled up once ended (a running collector's) and, for comparison,
one that still has its daily rows written at ingest (before schema version 10); and,
interleaved, a plain loop upserting new keys into the same table, as many rows per
transaction as one group commit of the collector's writes (2,000) (sqlite3 ``executemany``; psycopg ``executemany``), of the same shape of new
keys in the same order (until 2026-12-04 the plain loop wrote keys that sorted next to
each other, which a growing table favoured). Figures: records/s
against the plain loop's rows/s, medians over rounds, where a batch's time goes, and
what the day's roll-up costs later per hourly row.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import string
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

import msgspec
import psycopg

from _provenance import print_provenance
from headcount import wire
from headcount_collector.config import Site
from headcount_collector.ingest import decode_batch, validate_batch
from headcount_collector.pending import PendingBatch
from headcount_collector.stores.base import CounterQuery
from headcount_collector.stores.postgres import PostgresStore
from headcount_collector.stores.sqlite import SQLiteStore
from headcount_collector.tables import TABLES

SERVER = os.environ.get("HEADCOUNT_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
BATCH = 500
GROUP = 4
ROWS_PER_COMMIT = GROUP * BATCH
ROUTES = 4000
COMBOS = [
    (method, status, latency)
    for latency in wire.LATENCY_LABELS
    for status in wire.STATUS_CLASSES
    for method in wire.METHODS
]
PLAIN_SQL = (
    "INSERT INTO hc_request (site, res, bucket, route, method, status, latency, n) "
    "VALUES ({ph}, 'h', {ph}, {ph}, {ph}, {ph}, {ph}, {ph}) ON CONFLICT "
    "(site, res, bucket, route, method, status, latency) DO UPDATE SET n = hc_request.n + excluded.n"
)


def _word(n: int) -> str:
    letters = []
    for _ in range(6):
        letters.append(string.ascii_lowercase[n % 26])
        n //= 26
    return "".join(letters)


class NewKeys:
    """Keys never written before, in the order a site's senders produce them at an hour's
    rollover. The route templates (ROUTES of them, under a run word of letters g-v, never
    hex) repeat as a site's do, so after the warm-up they are known; what is new is the
    route x method x status x latency combination. The collector and the plain loop each
    draw from one of their own, so both write the same shape of keys into a region of
    the index that grows the same way."""

    def __init__(self) -> None:
        self.run = "".join("ghijklmnopqrstuv"[int(c, 16)] for c in uuid.uuid4().hex[:6])
        self.sent = 0

    def take(self, count: int) -> list[tuple[str, str, str, str]]:
        keys = []
        for k in range(self.sent, self.sent + count):
            method, status, latency = COMBOS[k // ROUTES % len(COMBOS)]
            keys.append((f"/n/{self.run}/{_word(k % ROUTES)}", method, status, latency))
        self.sent += count
        return keys


class Bodies:
    """Request bodies of 500 new keys each (``NewKeys``)."""

    def __init__(self, hour: int) -> None:
        self.hour = hour
        self.keys = NewKeys()

    def make(self, batches: int) -> list[bytes]:
        bodies = []
        for _ in range(batches):
            records = [
                {"kind": "request", "hour": self.hour, "route": route, "method": method,
                 "status": status, "latency": latency, "n": 1}
                for route, method, status, latency in self.keys.take(BATCH)
            ]  # fmt: skip
            bodies.append(
                msgspec.json.encode(
                    {"batch_id": uuid.uuid4().hex, "sender": "bench", "sender_version": "1",
                     "records": records}
                )
            )  # fmt: skip
        return bodies


def collector_round(
    store: SQLiteStore | PostgresStore, site: Site, bodies: list[bytes], now: int
) -> tuple[float, dict[str, float]]:
    """Records/s through decode, validate and commit; seconds per batch of each step."""
    steps = {"decode": 0.0, "validate": 0.0, "commit": 0.0}
    pending: list[PendingBatch] = []
    started = time.perf_counter()
    for body in bodies:
        a = time.perf_counter()
        batch = decode_batch(body)
        b = time.perf_counter()
        pending.append(validate_batch(batch, site, now))
        c = time.perf_counter()
        steps["decode"] += b - a
        steps["validate"] += c - b
        if len(pending) == GROUP:
            store.commit(pending, now)
            pending = []
            steps["commit"] += time.perf_counter() - c
    elapsed = time.perf_counter() - started
    return len(bodies) * BATCH / elapsed, {k: v / len(bodies) for k, v in steps.items()}


def plain_round(
    upsert: Callable[[list[tuple[object, ...]]], None], hour: int, keys: NewKeys, rows: int
) -> float:
    """Rows/s of a plain loop upserting new keys, a group commit's worth (GROUP x BATCH)
    per transaction (built before the clock starts)."""
    transactions: list[list[tuple[object, ...]]] = [
        [("bench", hour, *key, 1) for key in keys.take(ROWS_PER_COMMIT)]
        for _ in range(0, rows, ROWS_PER_COMMIT)
    ]
    started = time.perf_counter()
    for transaction in transactions:
        upsert(transaction)
    return rows / (time.perf_counter() - started)


def measure(kind: str, args: argparse.Namespace, workdir: Path) -> str:
    now = int(time.time())
    hour = now // 3600 * 3600
    site = Site("bench", ZoneInfo("UTC"), b"", b"")
    store: SQLiteStore | PostgresStore
    if kind == "sqlite":
        path = workdir / "bench.sqlite3"
        store = SQLiteStore(path)
        store.migrate()
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        sql = PLAIN_SQL.format(ph="?")

        def upsert(rows: list[tuple[object, ...]]) -> None:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(sql, rows)
            conn.execute("COMMIT")

        close = conn.close
    else:
        name = f"headcount_bench_commit_{os.getpid()}"
        url = f"{SERVER.rsplit('/', 1)[0]}/{name}"
        with psycopg.connect(SERVER, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        store = PostgresStore(url)
        store.migrate()
        pg = psycopg.connect(url, autocommit=True)
        sql = PLAIN_SQL.format(ph="%s")

        def upsert(rows: list[tuple[object, ...]]) -> None:
            with pg.transaction(), pg.cursor() as cursor:
                cursor.executemany(sql, rows)

        def close() -> None:
            pg.close()
            with psycopg.connect(SERVER, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    # So that the cap's fold into (other) stays out of the way: this measures new keys.
    store.key_cap = 100_000_000
    # As the running collector's sealing loop does on its first pass: from then on a
    # day's rows are rolled up once it has ended, not written by every commit. A second
    # site without that pass measures the write path before it (schema version 9).
    store.roll_days(site, now)
    unrolled = Site("bench-unrolled", ZoneInfo("UTC"), b"", b"")
    bodies = Bodies(hour)
    rates: dict[str, list[float]] = {"mine": [], "unrolled": [], "base": []}
    steps: list[dict[str, float]] = []
    try:
        warm = bodies.make(ROUTES // BATCH)  # every route once
        collector_round(store, site, warm, now)
        collector_round(store, unrolled, warm, now)
        plain_keys = NewKeys()
        plain_round(upsert, hour, plain_keys, ROUTES)  # warm-up: every route
        for round_no in range(args.rounds):
            work = bodies.make(args.batches)
            order = ["mine", "unrolled", "base"]
            for which in order[round_no % 3 :] + order[: round_no % 3]:
                if which == "base":
                    rates["base"].append(
                        plain_round(upsert, hour, plain_keys, args.batches * BATCH)
                    )
                    continue
                rate, step = collector_round(
                    store, site if which == "mine" else unrolled, work, now
                )
                rates[which].append(rate)
                if which == "mine":
                    steps.append(step)
            print(
                f"  {kind} round {round_no + 1}: {rates['mine'][-1]:,.0f} records/s "
                f"(daily rows at ingest: {rates['unrolled'][-1]:,.0f}) "
                f"vs {rates['base'][-1]:,.0f} rows/s",
                flush=True,
            )
        # The work moved off the write path: rolling today's hourly rows into its day,
        # as happens once the day has ended.
        hourly = len(
            store.query(
                CounterQuery(
                    TABLES["request"],
                    site.id,
                    hour,
                    hour + 3600,
                    ("route", "method", "status", "latency"),
                    interval="total",
                )
            )
        )
        started = time.perf_counter()
        store.roll_days(site, now + 86400)
        roll_us = (time.perf_counter() - started) / hourly * 1e6
    finally:
        store.close()
        close()
    m, u, b = (statistics.median(rates[k]) for k in ("mine", "unrolled", "base"))
    per = {
        k: statistics.median(s[k] for s in steps) * 1e3 for k in ("decode", "validate", "commit")
    }
    return (
        f"| {kind} | {m:,.0f} records/s | {u:,.0f} records/s | {b:,.0f} rows/s | "
        f"{m / b:.0%} (at ingest {u / b:.0%}) | "
        f"decode {per['decode']:.2f} ms, validate {per['validate']:.2f} ms, "
        f"commit {per['commit']:.2f} ms; the day's roll-up later {roll_us:.2f} us "
        f"per hourly row ({hourly:,} rows) |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batches", type=int, default=24, help="500-record batches per round")
    parser.add_argument("--stores", default="sqlite,postgres")
    args = parser.parse_args()
    print_provenance()
    print(
        f"{args.rounds} rounds x {args.batches} batches of {BATCH} new keys, groups of {GROUP}; "
        f"{os.cpu_count()} CPUs"
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="hc-bench-commit-", dir="/var/tmp") as tmp:
        for kind in args.stores.split(","):
            rows.append(measure(kind, args, Path(tmp)))
    print()
    print(
        "| store | collector: decode, validate, commit | the same, daily rows written at "
        "ingest | plain upserts, 2,000 rows/txn | ratio | per 500-record batch (medians) |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
