"""Dashboard render time and page weight over a year of hourly data for 1,000 routes.

Run: .venv/bin/python bench/dashboard.py [--repeats 30] [--density zipf|full]

The data and sealing are those of ``bench/query_latency.py`` (a noised site, SQLite,
written through the store's own ``commit`` and sealed through the collector's sealing).
Each figure is one full ``GET /dashboard/<site>?period=...`` through the real app (session
check, every widget's query, templates, SVG), in-process over ASGI. Baseline, interleaved:
one ``GET /v1/stats`` of the same period's time series on the same app (the single query a
hand-rolled dashboard would start with; on a route's own page, that route's series). Goal:
p95 under 100 ms for 30 days; every page under 200 KB uncompressed.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

from starlette.testclient import TestClient

from _load import READ_TOKEN, site_file
from _provenance import print_provenance
from headcount_collector.app import create_app
from headcount_collector.config import Settings, load_sites
from headcount_collector.stores import open_store
from query_latency import DAYS, ROUTE, ROUTES, generate, percentile, seal, timed

PERIODS = {"30 days": "30d", "7 days (hourly)": "7d", "12 months": "12m"}
# A route's own page (a top page clicked), over the same periods.
ROUTE_PAGES = {"one route, 30 days": "30d", "one route, 12 months": "12m"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--density", choices=["zipf", "full"], default="zipf")
    args = parser.parse_args()
    print_provenance()
    now = int(time.time())
    with tempfile.TemporaryDirectory(prefix="hc-bench-dashboard-", dir="/var/tmp") as tmp:
        directory = Path(tmp)
        sites_path = site_file(directory, hourly_days=DAYS + 35)
        site = next(iter(load_sites(sites_path)))
        url = f"sqlite:///{directory / 'dashboard.sqlite3'}"
        store = open_store(url)
        store.migrate()
        started = time.perf_counter()
        keys = generate(store, site, now, args.density)
        sealed = seal(store, site, now)
        print(
            f"dashboard: {ROUTES} routes, {DAYS} days hourly, density {args.density}: "
            f"{keys / 1e6:.2f}M hourly keys, {sealed} buckets sealed in "
            f"{time.perf_counter() - started:.0f} s; {args.repeats} repeats",
            flush=True,
        )
        settings = Settings(config_path=str(sites_path), db_url=url, seal_interval=1e6)
        app = create_app(settings, store, load_sites(sites_path), clock=lambda: now + 4 * 3600)
        print()
        print(
            "| page | p50 ms | p95 ms | /v1/stats series p50 / p95 ms | p95 ratio | weight KB | goal |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- |")
        with TestClient(app) as client:
            signed = client.post("/dashboard/sign-in", data={"token": READ_TOKEN})
            assert signed.status_code == 200, signed.text
            headers = {"Authorization": f"Bearer {READ_TOKEN}"}
            pages = [(name, preset, "") for name, preset in PERIODS.items()]
            pages += [(name, preset, ROUTE) for name, preset in ROUTE_PAGES.items()]
            for name, preset, route in pages:
                page = f"/dashboard/{site.id}?period={preset}"
                if route:
                    page = f"/dashboard/{site.id}/route?route={quote(route)}&period={preset}"
                body = client.get(page)
                assert body.status_code == 200, body.text[:500]
                interval = "hour" if preset == "7d" else "day"
                days = {"30d": 29, "7d": 6, "12m": 364}[preset]
                series = f"/v1/stats?metric=pageviews&interval={interval}&from=" + time.strftime(
                    "%Y-%m-%d", time.gmtime(now - days * 86400)
                )
                if route:
                    series += f"&filter={quote('route:' + route)}"
                assert client.get(series, headers=headers).status_code == 200
                mine: list[float] = []
                base: list[float] = []
                for round_no in range(args.repeats):
                    run_page = lambda page=page: client.get(page)  # noqa: E731
                    run_base = lambda series=series: client.get(series, headers=headers)  # noqa: E731
                    if round_no % 2:
                        base.append(timed(run_base))
                        mine.append(timed(run_page))
                    else:
                        mine.append(timed(run_page))
                        base.append(timed(run_base))
                p50, p95 = percentile(mine, 50), percentile(mine, 95)
                b50, b95 = percentile(base, 50), percentile(base, 95)
                weight = len(body.content) / 1024
                goal = f"weight < 200 KB: {'MET' if weight < 200 else 'MISSED'}"
                if preset == "30d":
                    goal = f"p95 < 100 ms: {'MET' if p95 < 100 else 'MISSED'}; " + goal
                print(
                    f"| {name} | {p50:.1f} | {p95:.1f} | {b50:.1f} / {b95:.1f} "
                    f"| {p95 / b95:.1f}x | {weight:.0f} | {goal} |",
                    flush=True,
                )
        store.close()


if __name__ == "__main__":
    main()
