"""How accurate sealed-noise numbers are at the default settings, for a realistic site.

Run: .venv/bin/python bench/noise_accuracy.py [--replicates 3] [--epsilon 6] [--per-day 10000]

A site with 10,000 pageviews a day over 30 days: 300 routes with Zipf-like popularity,
referrers from a realistic mix ((internal) most, (direct), a few search engines and a
long tail of small sites), utm campaigns on a tenth of outside visits, and a day-shaped
hourly curve. The counts are written through the store's own ``commit``, sealed through
the collector's own sealing (the exact sampler, fresh noise per replicate) and read back
through ``run_stats_query``, the path ``GET /v1/stats`` takes. The baseline is the true
count of the same cell, from the same run.

Goals (issue "Sealed noise"): daily totals within +-2 % at 95 %; the top-20 routes over
30 days within +-5 %; at least 99 % of true cells >= 50 shown. Hourly totals are reported.
"""

from __future__ import annotations

import argparse
import math
import random
import secrets
import statistics
import tempfile
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from _load import site_file
from _provenance import print_provenance
from headcount_collector.config import Site, load_sites
from headcount_collector.pending import CounterKey, PendingBatch
from headcount_collector.query import parse_stats_query, run_stats_query
from headcount_collector.release.catalogue import MARGINALS, RESOLUTIONS
from headcount_collector.release.sealing import NoisePool, seal_due
from headcount_collector.stores.base import release_table
from headcount_collector.stores.sqlite import SQLiteStore
from headcount_collector.tables import TABLES

DAYS = 30
FIRST = date(2026, 9, 1)
ROUTES = [f"/docs/page-{i}" if i % 3 else f"/blog/post-{i}" for i in range(300)]
ROUTE_WEIGHTS = [1 / (i + 1) ** 1.1 for i in range(len(ROUTES))]
TAIL = [f"blog{i}.com" for i in range(100)]
REFERRERS = [
    "(internal)",
    "(direct)",
    "google.com",
    "news.ycombinator.com",
    "bing.com",
    "duckduckgo.com",
    "github.com",
    "t.co",
    *TAIL,
]
REFERRER_WEIGHTS = [55, 20, 12, 3, 2, 2, 2, 1, *([3 / len(TAIL)] * len(TAIL))]
CAMPAIGNS = [("newsletter", "email", "autumn-launch"), ("twitter", "social", "v2-release")]
# A day-shaped curve: quiet at night, busiest mid-afternoon (UTC site).
HOUR_WEIGHTS = [0.25 + math.sin(math.pi * max(0, h - 5) / 19) ** 2 for h in range(24)]


def generate(per_day: int, seed: int) -> dict[CounterKey, int]:
    rng = random.Random(seed)
    counts: Counter[CounterKey] = Counter()
    scale = per_day / sum(HOUR_WEIGHTS)
    for day in range(DAYS):
        midnight = int(datetime(FIRST.year, FIRST.month, FIRST.day, tzinfo=UTC).timestamp())
        midnight += day * 86400
        for hour in range(24):
            n = round(HOUR_WEIGHTS[hour] * scale * rng.uniform(0.9, 1.1))
            routes = rng.choices(ROUTES, ROUTE_WEIGHTS, k=n)
            referrers = rng.choices(REFERRERS, REFERRER_WEIGHTS, k=n)
            for route, referrer in zip(routes, referrers, strict=True):
                utm = ("", "", "")
                if referrer not in ("(internal)", "(direct)") and rng.random() < 0.1:
                    utm = rng.choice(CAMPAIGNS)
                entry = int(referrer != "(internal)")
                counts[("pageview", midnight + hour * 3600, (route, referrer, *utm, entry))] += 1
    return dict(counts)


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def stats(store: SQLiteStore, site: Site, now: int, **params: str) -> dict[str, Any]:
    query = parse_stats_query(list(params.items()), site, now)
    return run_stats_query(store, site, query, now)


def shown_share(store: SQLiteStore, site: Site) -> tuple[int, int]:
    """(true cells >= 50, of which shown) over every marginal and resolution."""
    conn = store._connection()
    total = shown = 0
    for kind, marginals in MARGINALS.items():
        table = TABLES[kind]
        for marginal in marginals:
            dims = ", ".join(marginal.dims)
            where = "".join(f" AND {c} = {v}" for c, v in marginal.where)
            for resolution in RESOLUTIONS:
                true_cells = conn.execute(
                    f"SELECT bucket{', ' + dims if dims else ''}, SUM(n) FROM {table.name} "
                    f"WHERE site = ? AND res = ?{where} GROUP BY bucket{', ' + dims if dims else ''} "
                    "HAVING SUM(n) >= 50",
                    (site.id, resolution),
                ).fetchall()
                released = {
                    tuple(row)
                    for row in conn.execute(
                        f"SELECT bucket{', ' + dims if dims else ''} FROM {release_table(kind)} "
                        "WHERE site = ? AND res = ? AND marginal = ?",
                        (site.id, resolution, marginal.code),
                    ).fetchall()
                }
                total += len(true_cells)
                shown += sum(tuple(row[:-1]) in released for row in true_cells)
    return total, shown


def run(
    replicate: int, directory: Path, counts: dict[CounterKey, int], epsilon: float
) -> dict[str, Any]:
    path = site_file(directory, hourly_days=DAYS + 400)
    text = path.read_text(encoding="utf-8").replace("k = 1\n", f"k = 1\nepsilon = {epsilon}\n")
    path.write_text(text, encoding="utf-8")
    site = next(iter(load_sites(path)))
    store = SQLiteStore(directory / f"noise-{replicate}.sqlite3")
    store.migrate()
    start = int(datetime(FIRST.year, FIRST.month, FIRST.day, tzinfo=UTC).timestamp())
    now = start + (DAYS + 1) * 86400
    # The initial watermark goes to the first stored hour, so write before sealing.
    items = list(counts.items())
    for i in range(0, len(items), 20_000):
        batch = PendingBatch(site.id, secrets.token_hex(16), dict(items[i : i + 20_000]), 1)
        store.commit([batch], start + DAYS * 86400)
    pool = NoisePool()
    started = time.perf_counter()
    while seal_due(store, site, now, pool).behind:
        pass
    sealing_s = time.perf_counter() - started

    truth_day: Counter[int] = Counter()
    truth_hour: Counter[int] = Counter()
    truth_route: Counter[str] = Counter()
    for (_, hour, dims), n in counts.items():
        truth_day[hour - hour % 86400] += n
        truth_hour[hour] += n
        truth_route[str(dims[0])] += n
    span = {"from": FIRST.isoformat(), "to": (FIRST + timedelta(days=DAYS)).isoformat()}

    def epoch(iso: str) -> int:
        return int(datetime.fromisoformat(iso).timestamp())

    daily = stats(store, site, now, interval="day", **span)["totals"]
    day_errors = [
        abs(r["count"] - truth_day[epoch(r["time"])]) / truth_day[epoch(r["time"])] for r in daily
    ]
    hourly = {
        epoch(r["time"]): r["count"]
        for r in stats(store, site, now, interval="hour", **span)["totals"]
    }
    hour_abs = [abs(hourly.get(h, 0) - n) for h, n in truth_hour.items()]
    hour_rel = [abs(hourly.get(h, 0) - n) / n for h, n in truth_hour.items()]
    routes = {
        r["route"]: r["count"]
        for r in stats(store, site, now, interval="total", by="route", **span)["rows"]
    }
    top = [route for route, _ in truth_route.most_common(20)]
    route_errors = [abs(routes.get(r, 0) - truth_route[r]) / truth_route[r] for r in top]
    cells, shown = shown_share(store, site)
    store.close()
    return {
        "sealing_s": sealing_s,
        "day_errors": day_errors,
        "hour_abs": hour_abs,
        "hour_rel": hour_rel,
        "route_errors": route_errors,
        "top20_smallest": truth_route[top[-1]],
        "cells": cells,
        "shown": shown,
        "policy": site.policy,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicates", type=int, default=3)
    parser.add_argument("--epsilon", type=float, default=7.0)
    parser.add_argument("--per-day", type=int, default=10_000)
    args = parser.parse_args()
    print_provenance()
    counts = generate(args.per_day, seed=11)
    results = []
    with tempfile.TemporaryDirectory(prefix="hc-bench-noise-") as tmp:
        for replicate in range(args.replicates):
            results.append(run(replicate, Path(tmp), counts, args.epsilon))
    policy = results[0]["policy"]
    budget = policy.budgets["request"]
    print(
        f"noise accuracy: {args.per_day:,} pageviews/day x {DAYS} days, epsilon={policy.epsilon:g}, "
        f"delta={policy.delta:g}, noise sd {math.sqrt(float(budget.variance)):.2f} per cell, "
        f"threshold {budget.threshold}, {args.replicates} replicates "
        f"(sealing took {statistics.mean(r['sealing_s'] for r in results):.0f} s each)"
    )
    day = [e for r in results for e in r["day_errors"]]
    route = [e for r in results for e in r["route_errors"]]
    hour_abs = [e for r in results for e in r["hour_abs"]]
    hour_rel = [e for r in results for e in r["hour_rel"]]
    cells = sum(r["cells"] for r in results)
    shown = sum(r["shown"] for r in results)
    share = shown / cells
    print()
    print("| figure | measured | goal | met? |")
    print("| --- | --- | --- | --- |")
    d95 = percentile(day, 95)
    print(
        f"| daily totals, 95th percentile of relative error | {d95:.3%} | <= 2 % | {'met' if d95 <= 0.02 else 'MISSED'} |"
    )
    r95 = percentile(route, 95)
    print(
        f"| top-20 routes over 30 days, 95th percentile of relative error (smallest true: {results[0]['top20_smallest']:,}) "
        f"| {r95:.3%} | <= 5 % | {'met' if r95 <= 0.05 else 'MISSED'} |"
    )
    print(
        f"| hourly totals, absolute error median / 95th | {statistics.median(hour_abs):.1f} / {percentile(hour_abs, 95):.1f} "
        f"(relative 95th {percentile(hour_rel, 95):.2%}) | reported | — |"
    )
    print(
        f"| true cells >= 50 shown | {share:.3%} ({shown:,} of {cells:,}) | >= 99 % | {'met' if share >= 0.99 else 'MISSED'} |"
    )


if __name__ == "__main__":
    main()
