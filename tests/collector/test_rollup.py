"""Daily rows rolled up from the hourly rows once a local day has ended (schema version 10).

What a user relies on: a day's row holds exactly its hours' counts, once each, whether a
count arrived before the roll-up, after it (late, or an import), or while a database
written by an older collector changed over; queries over whole days agree with the hours
on either side of the watermark; retention never drops an hour its day does not hold.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from starlette.testclient import TestClient

from headcount_collector.config import Site, load_sites
from headcount_collector.pending import PendingBatch
from headcount_collector.stores import Store, open_store
from headcount_collector.timeutil import local_day_start
from tests.collector.test_query import pv, stats
from tests.conftest import site_file_text

BERLIN = ZoneInfo("Europe/Berlin")
# Sunday 25 October 2026 has 25 hours in Berlin (summer time ends at 03:00).
LONG_DAY = int(datetime(2026, 10, 25, tzinfo=BERLIN).timestamp())


def berlin(d: int, h: int, m: int = 10) -> int:
    return int(datetime(2026, m, d, h, tzinfo=BERLIN).timestamp())


def midnight(d: int, m: int = 10) -> int:
    return berlin(d, 0, m)


@pytest.fixture
def blog(tmp_path: Path) -> Site:
    (tmp_path / "sites.toml").write_text(site_file_text(), encoding="utf-8")
    site = load_sites(tmp_path / "sites.toml").get("blog")
    assert site is not None
    return site


def commit(store: Store, now: int, counts: list[tuple[int, str, int]]) -> None:
    """Pageviews of 'blog': (hour, route, n)."""
    merged: dict[Any, int] = {}
    for hour, route, n in counts:
        key = ("pageview", hour, pv(route))
        merged[key] = merged.get(key, 0) + n
    batch = PendingBatch("blog", secrets.token_hex(16), merged, len(counts), zone=BERLIN)
    assert store.commit([batch], now) == [True]


def sql(store_url: str, query: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
    if store_url.startswith("sqlite:///"):
        with closing(sqlite3.connect(store_url.removeprefix("sqlite:///"))) as conn:
            return conn.execute(query.replace("%s", "?"), params).fetchall()
    with psycopg.connect(store_url) as conn:
        return conn.execute(query, params).fetchall()


def pageview_rows(store_url: str, res: str) -> Counter[tuple[int, str]]:
    return Counter(
        {
            (int(bucket), str(route)): int(n)
            for bucket, route, n in sql(
                store_url,
                "SELECT bucket, route, n FROM hc_pageview WHERE site = 'blog' AND res = %s",
                (res,),
            )
        }
    )


def hours_by_day(store_url: str, before: int) -> Counter[tuple[int, str]]:
    """The hourly rows summed into their local days, for the days before ``before``."""
    days: Counter[tuple[int, str]] = Counter()
    for (hour, route), n in pageview_rows(store_url, "h").items():
        day = local_day_start(hour, BERLIN)
        if day < before:
            days[(day, route)] += n
    return days


def assert_days_hold_their_hours(store: Store, store_url: str) -> int:
    """The roll-up's invariant: the days before the watermark hold exactly their hours'
    counts, the days from it on hold nothing."""
    watermark = store.rolled_until("blog")
    assert watermark is not None
    daily = pageview_rows(store_url, "d")
    assert all(day < watermark for day, _ in daily), (sorted(daily), watermark)
    assert daily == hours_by_day(store_url, watermark)
    return watermark


def test_each_days_hours_are_rolled_up_once(store: Store, store_url: str, blog: Site) -> None:
    now = berlin(24, 12)
    # Written by ingest while the site has no watermark (an older collector did so too).
    commit(
        store, now, [(berlin(23, 9), "/a", 5), (berlin(24, 9), "/a", 3), (berlin(24, 11), "/b", 2)]
    )
    assert store.rolled_until("blog") is None
    assert sum(pageview_rows(store_url, "d").values()) == 10

    # The first roll-up starts at today's midnight and empties today's row: its hours
    # are rolled up once the day has ended, and must not be counted twice then.
    assert store.roll_days(blog, local_day_start(now, BERLIN)) == midnight(24)
    assert assert_days_hold_their_hours(store, store_url) == midnight(24)
    assert pageview_rows(store_url, "d") == Counter({(midnight(23), "/a"): 5})

    later = berlin(26, 12)
    commit(
        store,
        later,
        [
            (berlin(24, 20), "/a", 4),
            (LONG_DAY + 0 * 3600, "/a", 1),
            (LONG_DAY + 2 * 3600, "/a", 1),  # 02:00 summer time
            (LONG_DAY + 3 * 3600, "/a", 1),  # 02:00 winter time
            (LONG_DAY + 24 * 3600, "/c", 6),  # 23:00, still the 25th
            (berlin(26, 10), "/a", 7),
            (berlin(23, 22), "/late", 8),  # a rolled-up day: its row is written at once
        ],
    )
    assert pageview_rows(store_url, "d")[(midnight(23), "/late")] == 8
    assert_days_hold_their_hours(store, store_url)

    assert store.roll_days(blog, local_day_start(later, BERLIN)) == midnight(26)
    daily = pageview_rows(store_url, "d")
    assert daily[(midnight(24), "/a")] == 7
    assert daily[(midnight(24), "/b")] == 2
    assert daily[(LONG_DAY, "/a")] == 3
    assert daily[(LONG_DAY, "/c")] == 6
    assert assert_days_hold_their_hours(store, store_url) == midnight(26)

    # Idempotent; and a count for a rolled-up day arriving afterwards lands in both.
    assert store.roll_days(blog, local_day_start(later, BERLIN)) == midnight(26)
    commit(store, later, [(LONG_DAY + 5 * 3600, "/c", 2)])
    assert pageview_rows(store_url, "d")[(LONG_DAY, "/c")] == 8
    assert_days_hold_their_hours(store, store_url)


def test_ingest_after_the_roll_up_writes_only_the_hourly_row(
    store: Store, store_url: str, blog: Site
) -> None:
    now = berlin(24, 12)
    store.roll_days(blog, local_day_start(now, BERLIN))
    before = Counter(res for (res,) in sql(store_url, "SELECT res FROM hc_pageview"))
    commit(store, now, [(berlin(24, 11), f"/new/{i}", 1) for i in range(50)])
    after = Counter(res for (res,) in sql(store_url, "SELECT res FROM hc_pageview"))
    assert after - before == Counter({"h": 50})


def test_roll_up_waits_for_a_day_to_end(store: Store, store_url: str, blog: Site) -> None:
    now = berlin(24, 12)
    store.roll_days(blog, local_day_start(now, BERLIN))
    commit(store, now, [(berlin(24, 11), "/a", 1)])
    # Until the 24th has ended it is not rolled up, however far into it.
    assert store.roll_days(blog, berlin(24, 23)) == midnight(24)
    assert not pageview_rows(store_url, "d")
    assert store.roll_days(blog, midnight(25)) == midnight(25)
    assert pageview_rows(store_url, "d") == Counter({(midnight(24), "/a"): 1})


def test_queries_over_whole_days_read_both_sides_of_the_watermark(
    store: Store, blog: Site, make_client: Callable[..., TestClient]
) -> None:
    now = berlin(24, 12)
    commit(store, now, [(berlin(22, 10), "/a", 5), (berlin(23, 10), "/a", 4)])
    store.roll_days(blog, local_day_start(now, BERLIN))
    commit(store, now, [(berlin(24, 10), "/a", 3), (berlin(24, 11), "/b", 6)])
    store.roll_days(blog, midnight(24))  # nothing more: the 24th has not ended
    client = make_client(k=1, clock=lambda: berlin(26, 12))
    span = {"from": "2026-10-22", "to": "2026-10-25"}
    days = stats(client, by="route", **span)
    assert days["rows"] == [
        {"time": "2026-10-22T00:00:00+02:00", "route": "/a", "count": 5},
        {"time": "2026-10-23T00:00:00+02:00", "route": "/a", "count": 4},
        {"time": "2026-10-24T00:00:00+02:00", "route": "/b", "count": 6},
        {"time": "2026-10-24T00:00:00+02:00", "route": "/a", "count": 3},
    ]
    # One cell per route over the whole span: the two parts are summed before
    # suppression and limits see them.
    total = stats(client, interval="total", by="route", **span)
    assert total["rows"] == [{"route": "/a", "count": 12}, {"route": "/b", "count": 6}]
    week = stats(client, interval="week", **span)
    assert [row["count"] for row in week["rows"]] == [18]
    # After the roll-up the same questions get the same answers, now from daily rows.
    store.roll_days(blog, midnight(26))
    assert stats(client, by="route", **span) == days
    assert stats(client, interval="total", by="route", **span) == total


def test_retention_rolls_up_before_it_drops_hours(store: Store, store_url: str, blog: Site) -> None:
    now = berlin(1, 12)
    store.roll_days(blog, local_day_start(now, BERLIN))
    commit(store, now, [(berlin(1, 10), "/a", 5), (berlin(2, 10), "/a", 2)])
    # No sealing loop ran for 40 days: retention (30 hourly days) finds the days unrolled.
    result = store.apply_retention(blog, berlin(10, 12, m=11), dedupe_seconds=86400)
    assert result.hourly_rolled_up == 2
    assert not pageview_rows(store_url, "h")
    assert pageview_rows(store_url, "d") == Counter(
        {(midnight(1), "/a"): 5, (midnight(2), "/a"): 2}
    )
    assert store.rolled_until("blog") == local_day_start(berlin(10, 12, m=11) - 30 * 86400, BERLIN)


def test_a_roll_up_waits_for_a_commit_in_flight(postgres_database: str, blog: Site) -> None:
    """PostgreSQL, several collectors: a commit that read the watermark before a roll-up
    moved it must not leave its count out of the day. The roll-up takes the site's
    lock exclusively, which every commit holds shared until it ends."""
    from headcount_collector.stores.postgres import _LOCK_ROLLUP_SHARED, _ROLLUP_LOCK

    store = open_store(postgres_database)
    store.migrate()
    try:
        now = berlin(24, 12)
        store.roll_days(blog, local_day_start(now, BERLIN))
        rolled: list[int] = []
        roller = threading.Thread(target=lambda: rolled.append(store.roll_days(blog, midnight(25))))
        with psycopg.connect(postgres_database) as in_flight:
            in_flight.execute(_LOCK_ROLLUP_SHARED, (_ROLLUP_LOCK, "blog"))
            in_flight.execute(
                "INSERT INTO hc_pageview (site, res, bucket, route, referrer, utm_source, "
                "utm_medium, utm_campaign, entry, n) "
                "VALUES ('blog', 'h', %s, '/in-flight', '(direct)', '', '', '', 1, 4)",
                (berlin(24, 11),),
            )
            roller.start()
            time.sleep(0.5)
            assert roller.is_alive()  # waiting for the commit
        roller.join(timeout=10)
        assert rolled == [midnight(25)]
        assert pageview_rows(postgres_database, "d") == Counter({(midnight(24), "/in-flight"): 4})
    finally:
        store.close()
        from tests.collector.conftest import _wipe_postgres

        _wipe_postgres(postgres_database)
