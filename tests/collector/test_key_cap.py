"""One write token cannot fill the database: distinct keys per site, table and hour are capped."""

from __future__ import annotations

import secrets
import sqlite3
import time
from itertools import product
from pathlib import Path

import httpx
import pytest

from headcount_collector.pending import CounterKey, PendingBatch
from headcount_collector.stores import open_store
from headcount_collector.stores.base import CounterQuery
from headcount_collector.tables import TABLES
from tests._servers import start_collector
from tests.collector.conftest import auth, batch_body, current_hour, pageview, read_auth

pytestmark = pytest.mark.slow

WORDS = ("apple", "river", "stone", "cloud", "green", "light", "table", "house", "paper", "music")
SECTIONS = ("guide", "notes", "about")
# 1,500 distinct templates.
ROUTES = [f"/{s}/{a}/{b}/{c}" for s, a, b, c in product(SECTIONS, WORDS, WORDS, WORDS)][:1500]
CAP = 1000


def _hourly_rows(db: Path, hour: int) -> list[tuple[str, int]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(
            "SELECT route, n FROM hc_pageview WHERE site = 'blog' AND res = 'h' AND bucket = ?",
            (hour,),
        ).fetchall()
    finally:
        conn.close()


def test_new_keys_past_the_cap_fold_into_other_and_no_count_is_lost(
    tmp_path: Path, site_file: Path
) -> None:
    server = start_collector(tmp_path, site_file, extra=("--max-keys-per-hour", str(CAP)))
    try:
        hour = current_hour()
        # Three batches, each with new routes: the cap holds across batches too.
        for chunk in (ROUTES[:400], ROUTES[400:900], ROUTES[900:]):
            response = httpx.post(
                f"{server.url}/v1/ingest",
                content=batch_body([pageview(route=r, hour=hour, n=2) for r in chunk]),
                headers=auth(),
            )
            assert response.status_code == 202, response.text
        # A route seen before the cap was reached still counts under its own name.
        response = httpx.post(
            f"{server.url}/v1/ingest",
            content=batch_body([pageview(route=ROUTES[0], hour=hour, n=5)]),
            headers=auth(),
        )
        assert response.status_code == 202
        rows = dict(_hourly_rows(server.db_path, hour))
        # The fold starts somewhere between half the cap and the cap, at a point kept
        # secret per site, table and hour.
        assert CAP // 2 <= len(rows) <= CAP
        assert sum(rows.values()) == 2 * len(ROUTES) + 5
        assert rows["(other)"] >= 2 * (len(ROUTES) - CAP)
        assert rows[ROUTES[0]] == 7
        stats = httpx.get(
            f"{server.url}/v1/stats",
            params={"by": "route", "interval": "total"},
            headers=read_auth(),
        ).json()
        assert "(other)" in {row["route"] for row in stats["rows"]}
        assert "reached max_keys_per_hour" in server.log_text()
    finally:
        server.stop()


def test_a_cap_below_a_thousand_is_refused_at_start(tmp_path: Path, site_file: Path) -> None:
    with pytest.raises(RuntimeError, match="max_keys_per_hour"):
        start_collector(tmp_path, site_file, extra=("--max-keys-per-hour", "30"))


def test_the_fold_point_is_secret_and_spread_over_half_the_cap() -> None:
    from headcount_collector.stores.base import KeyCounts

    counts = KeyCounts()
    counts.secret = bytes(range(32))
    points = [counts.cap_for(CAP, ("blog", "pageview", 3600 * h)) for h in range(2000)]
    assert min(points) >= CAP // 2
    assert max(points) <= CAP
    # Spread evenly: no value is much likelier than another, so one more key (one more
    # visitor) moves an observer's guess of whether folding began by about 2/CAP.
    assert len(set(points)) > 400
    assert max(points.count(p) for p in set(points)) < 15
    other = KeyCounts()
    other.secret = bytes(range(1, 33))
    assert other.cap_for(CAP, ("blog", "pageview", 0)) != counts.cap_for(
        CAP, ("blog", "pageview", 0)
    ) or other.cap_for(CAP, ("blog", "pageview", 3600)) != counts.cap_for(
        CAP, ("blog", "pageview", 3600)
    )


def test_two_writers_on_one_database_keep_a_bucket_within_its_cap(store_url: str) -> None:
    """Workers of one collector (SQLite) or several collectors (PostgreSQL) share the
    database; each one's own bound on a bucket's keys misses the others' keys. A review
    filled one hour with 1,376 keys under a cap of 1,000 this way, alternating batches of
    new routes between two collectors."""
    hour = current_hour()
    first, second = open_store(store_url), open_store(store_url)
    try:
        first.migrate()
        for store in (first, second):
            store.key_cap = CAP
        # PostgreSQL cannot tell that another collector wrote: there a bound is trusted
        # for a second, so there the batches come more than a second apart.
        pause = 0.0 if store_url.startswith("sqlite") else 1.1
        size = 150 if not pause else 250
        for index, start in enumerate(range(0, len(ROUTES), size)):
            chunk = ROUTES[start : start + size]
            counts: dict[CounterKey, int] = {
                ("pageview", hour, (r, "(direct)", "", "", "", 1)): 2 for r in chunk
            }
            batch = PendingBatch("blog", secrets.token_hex(16), counts, len(counts))
            writer = (first, second)[index % 2]
            assert writer.commit([batch], hour + 60) == [True]
            time.sleep(pause)
        keys = first.raw_rows("blog", "h", hour, hour + 3600)["pageview"]
        table = TABLES["pageview"]
        total = first.query(CounterQuery(table, "blog", hour, hour + 3600, interval="total"))
    finally:
        first.close()
        second.close()
    assert CAP // 2 <= keys <= CAP, keys
    assert total == [(None, 2 * len(ROUTES))]  # every count kept, past the cap in (other)
