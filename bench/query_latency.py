"""/v1/stats latency over a year of hourly data for 1,000 routes, SQLite and PostgreSQL.

Run: .venv/bin/python bench/query_latency.py [--repeats 40] [--density zipf|full]
     [--stores sqlite,postgres]
     (PostgreSQL: $HEADCOUNT_BENCH_POSTGRES, default postgresql://postgres@127.0.0.1:5432/test;
     a scratch database is created and dropped)

Data is written through the store's own ``commit`` (so it has exactly the layout the
collector writes), a year of hours up to now. ``--density zipf`` (default) is a realistic
long tail: route i appears in an hour with probability min(1, 30 / (i + 1)), about 135
routes an hour, ~1.2M hourly rows; ``full`` puts every route in every hour (8.76M rows,
slow to generate).

The site is noised (the default): after writing, every hour and day is sealed through
the collector's own sealing, so queries read released cells exactly as in production.
Only the noise values come from a cheap stand-in (uniform integers) instead of the exact
sampler, which would take minutes to seal a year and does not change what a query reads.

Queries go through ``run_stats_query`` (parsing, marginal choice, store query, shaping),
the path ``GET /v1/stats`` takes minus HTTP. Baseline, interleaved with each query: the bare
SQL a hand-written dashboard would run for the same answer on the same connection (SUM
of n GROUP BY route / by day over the hourly rows, with the route filter where the
question has one). Figures: p50 and p95 over
``--repeats`` runs. Goal: p95 under 50 ms for the 30-day by-route query.
"""

from __future__ import annotations

import argparse
import functools
import os
import random
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _load import site_file
from _provenance import print_provenance
from headcount_collector.config import Site, load_sites
from headcount_collector.pending import CounterKey, PendingBatch
from headcount_collector.query import parse_stats_query, run_stats_query
from headcount_collector.release.policy import ReleasePolicy
from headcount_collector.release.sealing import seal_due
from headcount_collector.stores import Store, open_store

SERVER = os.environ.get("HEADCOUNT_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
ROUTES = 1000
DAYS = 365
REFERRERS = ["(direct)", "(internal)", "google.com", "news.example"]
# The sixth most visited route, in every hour: a page a reader would drill into.
ROUTE = "/section5/page0"


def generate(store: Store, site: Site, now: int, density: str) -> int:
    """Write a year of hourly pageview counts; return the number of hourly keys."""
    rng = random.Random(5)
    routes = [f"/section{i % 40}/page{i // 40}" for i in range(ROUTES)]
    probability = [1.0 if density == "full" else min(1.0, 30 / (i + 1)) for i in range(ROUTES)]
    last_hour = now // 3600 * 3600
    first_hour = last_hour - DAYS * 24 * 3600
    keys = 0
    counts: dict[CounterKey, int] = {}
    for hour in range(first_hour, last_hour + 3600, 3600):
        for index, route in enumerate(routes):
            if rng.random() < probability[index]:
                referrer = REFERRERS[index % len(REFERRERS)]
                dims = (route, referrer, "", "", "", int(referrer != "(internal)"))
                counts[("pageview", hour, dims)] = rng.randint(1, 200)
        if len(counts) >= 20_000 or hour == last_hour:
            keys += len(counts)
            batch = PendingBatch(site.id, secrets.token_hex(16), counts, len(counts))
            store.commit([batch], now)
            counts = {}
    return keys


class UniformNoise:
    """Stands in for the exact sampler's pool when only the layout of released cells matters."""

    def __init__(self) -> None:
        self._rng = random.Random(7)

    def prepare(self, policy: ReleasePolicy, rows: Mapping[str, int]) -> None:
        pass

    def drawer(self, policy: ReleasePolicy) -> Callable[[str], int]:
        return lambda unit: self._rng.randint(-8, 8)


def seal(store: Store, site: Site, now: int) -> int:
    pool = UniformNoise()
    buckets = 0
    while True:
        report = seal_due(store, site, now + 4 * 3600, pool)  # type: ignore[arg-type]
        buckets += report.steps
        if not report.behind:
            return buckets


def timed(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return (time.perf_counter() - started) * 1000


def percentile(values: list[float], q: float) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[round(q) - 1]
        if len(values) > 1
        else values[0]
    )


def raw_sql(store: Store, sql: str, params: list[Any]) -> Callable[[], object]:
    """The same question as plain SQL on the store's own connection."""
    connection = getattr(store, "_connection", None)
    if connection is not None:  # SQLite: one connection per thread
        conn = connection()
        return lambda: conn.execute(sql, params).fetchall()
    pool = store._pool  # type: ignore[attr-defined]
    pg_sql = sql.replace("?", "%s")

    def run() -> object:
        with pool.connection() as conn:
            return conn.execute(pg_sql, params).fetchall()

    return run


def measure(
    store: Store, site: Site, now: int, repeats: int
) -> list[tuple[str, list[float], list[float]]]:
    today = datetime.fromtimestamp(now, UTC).date()

    def day(offset: int) -> str:
        return (today - timedelta(days=offset)).isoformat()

    queries = {
        "30 days by route (total)": [("from", day(29)), ("to", day(-1)), ("by", "route"), ("interval", "total")],
        "30 days by route, by day (limit 10)": [("from", day(29)), ("to", day(-1)), ("by", "route"), ("interval", "day"), ("limit", "10")],
        "1 year by day": [("from", day(364)), ("to", day(-1)), ("interval", "day")],
        "1 year by day, one route": [("from", day(364)), ("to", day(-1)), ("interval", "day"), ("filter", f"route:{ROUTE}")],
        "1 year by month, one route": [("from", day(364)), ("to", day(-1)), ("interval", "month"), ("filter", f"route:{ROUTE}")],
    }  # fmt: skip
    cases = []
    for name, params in queries.items():
        query = parse_stats_query(params, site, now)
        if "one route" in name:
            sql = (
                "SELECT bucket / 86400, SUM(n) FROM hc_pageview WHERE site = ? AND res = 'h' "
                "AND bucket >= ? AND bucket < ? AND route = ? GROUP BY 1"
            )
        elif "by route" in name:
            sql = (
                "SELECT route, SUM(n) FROM hc_pageview WHERE site = ? AND res = 'h' "
                "AND bucket >= ? AND bucket < ? GROUP BY route"
            )
        else:
            sql = (
                "SELECT bucket / 86400, SUM(n) FROM hc_pageview WHERE site = ? AND res = 'h' "
                "AND bucket >= ? AND bucket < ? GROUP BY 1"
            )
        mine = functools.partial(run_stats_query, store, site, query, now)
        args = [site.id, query.start, query.end] + ([ROUTE] if "one route" in name else [])
        base = raw_sql(store, sql, args)
        cases.append((name, mine, base))
    # One warm-up each: the first run pays for cold pages and plan caches.
    for _, mine, base in cases:
        mine()
        base()
    results: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name, _, _ in cases}
    for round_no in range(repeats):
        for name, mine, base in cases:
            first, second = (mine, base) if round_no % 2 == 0 else (base, mine)
            a, b = timed(first), timed(second)
            mine_ms, base_ms = (a, b) if round_no % 2 == 0 else (b, a)
            results[name][0].append(mine_ms)
            results[name][1].append(base_ms)
    return [(name, *results[name]) for name, _, _ in cases]


def report(label: str, rows: list[tuple[str, list[float], list[float]]]) -> None:
    for name, mine, base in rows:
        p50, p95 = percentile(mine, 50), percentile(mine, 95)
        b50, b95 = percentile(base, 50), percentile(base, 95)
        goal = ""
        if name.startswith("30 days by route (total)"):
            goal = f"p95 < 50 ms: {'MET' if p95 < 50 else 'MISSED'}"
        print(
            f"| {label} | {name} | {p50:.1f} | {p95:.1f} | {b50:.1f} / {b95:.1f} "
            f"| {p50 / b50:.2f}x | {goal} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--density", choices=["zipf", "full"], default="zipf")
    parser.add_argument("--stores", default="sqlite,postgres")
    args = parser.parse_args()
    print_provenance()
    now = int(time.time())
    print(
        f"query latency: {ROUTES} routes, {DAYS} days hourly, density {args.density}, {args.repeats} repeats"
    )
    print()
    print("| store | query | p50 ms | p95 ms | bare SQL p50 / p95 ms | p50 ratio | goal |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory(prefix="hc-bench-query-", dir="/var/tmp") as tmp:
        directory = Path(tmp)
        site = next(iter(load_sites(site_file(directory, hourly_days=DAYS + 35))))
        for kind in args.stores.split(","):
            if kind == "sqlite":
                run_store(kind, f"sqlite:///{directory / 'query.sqlite3'}", site, now, args)
            else:
                run_postgres(site, now, args)


def run_store(label: str, url: str, site: Site, now: int, args: argparse.Namespace) -> None:
    store = open_store(url)
    try:
        store.migrate()
        started = time.perf_counter()
        keys = generate(store, site, now, args.density)
        took = time.perf_counter() - started
        started = time.perf_counter()
        sealed = seal(store, site, now)
        print(
            f"{label}: {sealed} sealing steps in {time.perf_counter() - started:.0f} s", flush=True
        )
        rows = measure(store, site, now, args.repeats)
        report(f"{label} ({keys / 1e6:.2f}M hourly keys, written in {took:.0f} s)", rows)
    finally:
        store.close()


def run_postgres(site: Site, now: int, args: argparse.Namespace) -> None:
    import psycopg

    name = f"headcount_bench_query_{os.getpid()}"
    with psycopg.connect(SERVER, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = SERVER.rsplit("/", 1)[0] + f"/{name}"
        run_store("postgres", url, site, now, args)
    finally:
        with psycopg.connect(SERVER, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
