"""Daily rows rolled up from the hourly rows once a local day has ended (schema version 10).

What a user relies on: a day's row holds exactly its hours' counts, once each, whether a
count arrived before the roll-up, after it (late, or an import), or while a database
written by an older collector changed over; queries over whole days agree with the hours
on either side of the watermark; retention never drops an hour its day does not hold.
"""

from __future__ import annotations

import math
import secrets
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from starlette.testclient import TestClient

from headcount_collector.config import Site, load_sites
from headcount_collector.pending import PendingBatch
from headcount_collector.release.policy import release_policy
from headcount_collector.stores import Store, open_store
from headcount_collector.stores.base import CounterQuery
from headcount_collector.tables import TABLES
from headcount_collector.timeutil import local_day_start
from tests.collector.conftest import pageview
from tests.collector.noise_harness import FIRST_DAY, local_ts, noised_collector
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
    """Raw SQL on the store's database, committed."""
    if store_url.startswith("sqlite:///"):
        with closing(sqlite3.connect(store_url.removeprefix("sqlite:///"))) as lite, lite:
            return lite.execute(query.replace("%s", "?"), params).fetchall()
    with psycopg.connect(store_url) as pg:
        cursor = pg.execute(query, params)
        return cursor.fetchall() if cursor.description else []


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
    assert store.roll_days(blog, now) == midnight(24)
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

    assert store.roll_days(blog, later) == midnight(26)
    daily = pageview_rows(store_url, "d")
    assert daily[(midnight(24), "/a")] == 7
    assert daily[(midnight(24), "/b")] == 2
    assert daily[(LONG_DAY, "/a")] == 3
    assert daily[(LONG_DAY, "/c")] == 6
    assert assert_days_hold_their_hours(store, store_url) == midnight(26)

    # Idempotent; and a count for a rolled-up day arriving afterwards lands in both.
    assert store.roll_days(blog, later) == midnight(26)
    commit(store, later, [(LONG_DAY + 5 * 3600, "/c", 2)])
    assert pageview_rows(store_url, "d")[(LONG_DAY, "/c")] == 8
    assert_days_hold_their_hours(store, store_url)


def test_ingest_after_the_roll_up_writes_only_the_hourly_row(
    store: Store, store_url: str, blog: Site
) -> None:
    now = berlin(24, 12)
    store.roll_days(blog, now)
    before = Counter(res for (res,) in sql(store_url, "SELECT res FROM hc_pageview"))
    commit(store, now, [(berlin(24, 11), f"/new/{i}", 1) for i in range(50)])
    after = Counter(res for (res,) in sql(store_url, "SELECT res FROM hc_pageview"))
    assert after - before == Counter({"h": 50})


def test_roll_up_waits_for_a_day_to_end(store: Store, store_url: str, blog: Site) -> None:
    now = berlin(24, 12)
    store.roll_days(blog, now)
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
    store.roll_days(blog, now)
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
    store.roll_days(blog, now)
    commit(store, now, [(berlin(1, 10), "/a", 5), (berlin(2, 10), "/a", 2)])
    # No sealing loop ran for 40 days: retention (30 hourly days) rolls the days up first.
    result = store.apply_retention(blog, berlin(10, 12, m=11), dedupe_seconds=86400)
    assert result.hourly_rolled_up == 2
    assert not pageview_rows(store_url, "h")
    assert pageview_rows(store_url, "d") == Counter(
        {(midnight(1), "/a"): 5, (midnight(2), "/a"): 2}
    )
    assert store.rolled_until("blog") == midnight(10, m=11)


@pytest.fixture
def pg_store(postgres_database: str) -> Iterator[Store]:
    """A PostgreSQL store of its own, for the tests of the lock between collectors."""
    from tests.collector.conftest import _wipe_postgres

    store = open_store(postgres_database)
    store.migrate()
    yield store
    store.close()
    _wipe_postgres(postgres_database)


def test_a_roll_up_waits_for_a_commit_in_flight(
    pg_store: Store, postgres_database: str, blog: Site
) -> None:
    """PostgreSQL, several collectors: a commit that read the watermark before a roll-up
    moved it must not leave its count out of the day. The roll-up takes the site's
    lock exclusively, which every commit holds shared until it ends."""
    from headcount_collector.stores.postgres import _LOCK_ROLLUPS_SHARED, _ROLLUP_LOCK

    now = berlin(24, 12)
    pg_store.roll_days(blog, now)
    rolled: list[int] = []
    roller = threading.Thread(target=lambda: rolled.append(pg_store.roll_days(blog, midnight(25))))
    with psycopg.connect(postgres_database) as in_flight:
        in_flight.execute(_LOCK_ROLLUPS_SHARED, (_ROLLUP_LOCK, ["blog"]))
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


def test_a_commit_waits_for_a_roll_up_in_progress(
    pg_store: Store, postgres_database: str, blog: Site
) -> None:
    """The other side of the lock: a commit arriving while a roll-up holds the site
    reads the watermark that roll-up leaves, so its count lands in the day once."""
    from headcount_collector.stores.postgres import _LOCK_ROLLUP, _ROLLUP_LOCK

    pg_store.roll_days(blog, berlin(24, 12))
    committed = threading.Event()

    def late_count() -> None:
        commit(pg_store, berlin(25, 12), [(berlin(24, 11), "/late", 2)])
        committed.set()

    writer = threading.Thread(target=late_count)
    with psycopg.connect(postgres_database) as roller:
        roller.execute(_LOCK_ROLLUP, (_ROLLUP_LOCK, "blog"))
        writer.start()
        assert not committed.wait(0.5)  # waiting for the roll-up
        # The roll-up (done by hand here) moves the watermark past the 24th.
        roller.execute(
            "UPDATE hc_rollup SET rolled_until = %s WHERE site = 'blog'", (midnight(25),)
        )
    writer.join(timeout=10)
    assert committed.is_set()
    # Written to both rows, as for any day already rolled up.
    assert pageview_rows(postgres_database, "d") == Counter({(midnight(24), "/late"): 2})
    assert pageview_rows(postgres_database, "h") == Counter({(berlin(24, 11), "/late"): 2})


def test_a_changed_time_zone_rolls_every_hour_up_once(
    store: Store, store_url: str, tmp_path: Path
) -> None:
    """The watermark is a midnight of the zone the site had; after a change, hours are
    still split at the watermark itself, so none reaches two days."""
    in_utc = site_file_text().replace("Europe/Berlin", "UTC", 1)
    (tmp_path / "utc.toml").write_text(in_utc, encoding="utf-8")
    utc_blog = load_sites(tmp_path / "utc.toml").get("blog")
    assert utc_blog is not None
    utc = ZoneInfo("UTC")
    ten = int(datetime(2026, 11, 10, tzinfo=utc).timestamp())
    store.roll_days(utc_blog, ten + 12 * 3600)
    assert store.rolled_until("blog") == ten
    # Now in Berlin: 10 November 10:00 UTC is in the Berlin day that began at 23:00 UTC
    # on the 9th, before the watermark.
    commit(store, ten + 12 * 3600, [(ten + 10 * 3600, "/a", 5), (ten - 2 * 3600, "/b", 1)])
    (tmp_path / "berlin.toml").write_text(site_file_text(), encoding="utf-8")
    berlin_blog = load_sites(tmp_path / "berlin.toml").get("blog")
    assert berlin_blog is not None
    store.roll_days(berlin_blog, ten + 3 * 86400)
    hourly = sum(pageview_rows(store_url, "h").values())
    daily = sum(pageview_rows(store_url, "d").values())
    assert (hourly, daily) == (6, 6)


def test_the_first_roll_up_keeps_days_whose_hours_have_expired(
    store: Store, store_url: str, tmp_path: Path
) -> None:
    """A database from before the roll-up, whose hourly rows were kept 7 days: raising
    hourly_days to 30 at the upgrade must not empty the daily rows that alone still hold
    the older days (the first watermark is today's midnight, whoever sets it)."""
    (tmp_path / "short.toml").write_text(site_file_text(hourly_days=7), encoding="utf-8")
    short = load_sites(tmp_path / "short.toml").get("blog")
    (tmp_path / "long.toml").write_text(site_file_text(hourly_days=30), encoding="utf-8")
    long = load_sites(tmp_path / "long.toml").get("blog")
    assert short is not None
    assert long is not None
    now = berlin(30, 12, m=11)
    commit(store, now, [(berlin(10, 9, m=11), "/a", 4), (berlin(29, 9, m=11), "/a", 5)])
    # The older collector's retention: the 10th's hours are gone, its daily row stays.
    sql(
        store_url,
        "DELETE FROM hc_pageview WHERE site = 'blog' AND res = 'h' AND bucket < %s",
        (midnight(23, m=11),),
    )
    store.apply_retention(long, now, dedupe_seconds=86400)
    assert pageview_rows(store_url, "d") == Counter(
        {(midnight(10, m=11), "/a"): 4, (midnight(29, m=11), "/a"): 5}
    )
    assert store.rolled_until("blog") == midnight(30, m=11)


def test_days_are_sealed_from_their_rolled_up_rows(tmp_path: Path, store_url: str) -> None:
    with noised_collector(tmp_path, store_url=store_url) as noised:
        # The first sealing pass, as the app started, set the watermark before any data.
        assert noised.store.rolled_until("blog") == local_ts(FIRST_DAY)
        for offset in range(3):
            day = FIRST_DAY + timedelta(days=offset)
            noised.send([pageview(route="/", n=300, hour=local_ts(day, 10))], local_ts(day, 23))
        noised.seal_everything(local_ts(FIRST_DAY + timedelta(days=5)))
        assert noised.store.rolled_until("blog") == local_ts(FIRST_DAY + timedelta(days=5))
        variance = float(release_policy().budgets["request"].variance)
        span = {"from": FIRST_DAY.isoformat(), "to": (FIRST_DAY + timedelta(days=3)).isoformat()}
        total = noised.stats(interval="total", **span)["totals"][0]
        # Three daily cells, each sealed from its day's rolled-up rows.
        assert total["error"] == pytest.approx(1.96 * math.sqrt(3 * variance), abs=0.1)
        assert abs(total["count"] - 900) < 5 * math.sqrt(3 * variance)


def test_a_group_holding_one_site_under_two_time_zones_counts_each_hour_once(
    store: Store, store_url: str
) -> None:
    """A site's time zone changed (a reload) while batches waited: one group commit then
    holds batches of that site under both zones. Each count reaches its hourly row once,
    and each local-day row of the zone its batch was validated under."""
    hour = berlin(10, 12, 11)
    key = ("pageview", hour, pv("/a"))
    utc_batch = PendingBatch("blog", secrets.token_hex(16), {key: 2}, 2, zone=ZoneInfo("UTC"))
    berlin_batch = PendingBatch("blog", secrets.token_hex(16), {key: 3}, 3, zone=BERLIN)
    # Before the site's first roll-up, so both batches write daily rows too.
    assert store.commit([utc_batch, berlin_batch], hour + 3600) == [True, True]
    assert pageview_rows(store_url, "h") == Counter({(hour, "/a"): 5})
    utc_day = int(datetime(2026, 11, 10, tzinfo=ZoneInfo("UTC")).timestamp())
    assert pageview_rows(store_url, "d") == Counter(
        {(utc_day, "/a"): 2, (midnight(10, 11), "/a"): 3}
    )


def test_a_whole_day_query_never_sees_a_day_dropped_while_the_first_roll_up_runs(
    store: Store, store_url: str, blog: Site
) -> None:
    """The first roll-up of a site empties today's daily rows as it sets the watermark.
    A whole-day query reads the watermark and the rows on both sides of it in one
    snapshot, so a query running beside it sees the day before or after, never a day
    missing (as it did, now and then, when the watermark was read on its own)."""
    now = berlin(25, 12, 11)
    month = CounterQuery(
        table=TABLES["pageview"], site="blog", start=midnight(1, 11), end=midnight(30, 11),
        interval="total", resolution="d", zone_name="Europe/Berlin",
    )  # fmt: skip
    seen: Counter[int] = Counter()
    for _ in range(30):
        sql(store_url, "DELETE FROM hc_rollup")
        sql(store_url, "DELETE FROM hc_pageview")
        commit(store, now, [(berlin(24, 10, 11), "/a", 192), (berlin(25, 0, 11), "/b", 7)])
        roller = threading.Thread(target=store.roll_days, args=(blog, now))
        roller.start()
        while roller.is_alive():
            seen[sum(int(row[-1] or 0) for row in store.query(month))] += 1
        roller.join()
        seen[sum(int(row[-1] or 0) for row in store.query(month))] += 1
    assert set(seen) == {199}, seen
