"""``GET /v1/stats`` over every store: parameters, intervals in the site's time zone, CSV."""

from __future__ import annotations

import csv
import io
import secrets
import time
from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from starlette.testclient import TestClient

from headcount import wire
from headcount_collector.pending import PendingBatch
from headcount_collector.stores import Store
from tests.collector.conftest import StatsBody, read_auth
from tests.conftest import SHOP_READ_TOKEN, WRITE_TOKEN

BERLIN = ZoneInfo("Europe/Berlin")
# Wednesday 2026-11-25 12:00 Berlin (11:00 UTC); Berlin is UTC+1 in winter.
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=BERLIN).timestamp()


def utc_hour(y: int, m: int, d: int, h: int) -> int:
    return int(datetime(y, m, d, h, tzinfo=ZoneInfo("UTC")).timestamp())


def seed(store: Store, site: str, rows: list[tuple[str, int, tuple[str | int, ...], int]]) -> None:
    counts = {(kind, hour, dims): n for kind, hour, dims, n in rows}
    zone = BERLIN if site == "blog" else ZoneInfo("UTC")  # as in tests.conftest.site_file_text
    batch = PendingBatch(site, secrets.token_hex(16), counts, len(rows), zone=zone)
    applied = store.commit([batch], int(NOW))
    assert applied == [True]


def pv(
    route: str, referrer: str = "(direct)", entry: int = 1, utm: str = ""
) -> tuple[str | int, ...]:
    return (route, referrer, utm, "", "", entry)


@pytest.fixture
def seeded(store: Store, make_client: Callable[..., TestClient]) -> TestClient:
    h = utc_hour(2026, 11, 24, 9)  # 10:00 Berlin on Tuesday the 24th
    seed(
        store,
        "blog",
        [
            ("pageview", h, pv("/"), 100),
            ("pageview", h, pv("/", "news.example.org", utm="newsletter"), 40),
            ("pageview", h, pv("/about", "(internal)", entry=0), 30),
            ("pageview", h + 3600, pv("/"), 20),
            ("pageview", h + 3600, pv("/secret"), 2),
            # 23:30 UTC on the 24th is the 25th in Berlin.
            ("pageview", utc_hour(2026, 11, 24, 23), pv("/"), 7),
            ("request", h, ("/", "GET", "2xx", wire.LATENCY_LABELS[0]), 50),
            ("request", h, ("/", "GET", "5xx", wire.LATENCY_LABELS[5]), 9),
            ("request", h, ("/form", "POST", "3xx", wire.LATENCY_LABELS[2]), 12),
            ("event", h, ("signup", "/signup", '{"plan":"pro"}'), 8),
            ("event", h, ("signup", "/signup", '{"plan":"free"}'), 25),
            ("bot", h, ("search",), 35),
            ("bot", h, ("ai",), 20),
            ("bot", h, ("other",), 5),
            ("visit", h, ("/", "0s", "1"), 30),
            ("visit", h, ("/", "1m-2m", "3-4"), 10),
        ],
    )
    seed(store, "shop", [("pageview", h, pv("/cart"), 1)])
    return make_client(clock=lambda: NOW)


def stats(client: TestClient, token: str = "", **params: str | int | list[str]) -> StatsBody:
    from tests.conftest import READ_TOKEN

    response = client.get("/v1/stats", params=params, headers=read_auth(token or READ_TOKEN))
    assert response.status_code == 200, response.text
    body: StatsBody = response.json()
    return body


def test_day_buckets_follow_site_time_zone(seeded: TestClient) -> None:
    body = stats(
        seeded, metric="pageviews", interval="day", **{"from": "2026-11-24", "to": "2026-11-26"}
    )
    assert set(body) >= {"site", "metric", "from", "to", "interval", "by", "k", "withheld", "rows"}
    assert body["from"] == "2026-11-24T00:00:00+01:00"
    assert body["rows"] == [
        {"time": "2026-11-24T00:00:00+01:00", "count": 192},
        {"time": "2026-11-25T00:00:00+01:00", "count": 7},
    ]
    assert body["k"] == 5


def test_hour_interval_and_default_range(seeded: TestClient) -> None:
    body = stats(seeded, interval="hour")
    assert body["from"] == "2026-11-19T00:00:00+01:00"
    assert body["to"] == "2026-11-26T00:00:00+01:00"
    assert [r["time"] for r in body["rows"]] == [
        "2026-11-24T10:00:00+01:00",
        "2026-11-24T11:00:00+01:00",
        "2026-11-25T00:00:00+01:00",
    ]


def test_week_month_total(seeded: TestClient) -> None:
    week = stats(seeded, interval="week", **{"from": "2026-11-01", "to": "2026-12-01"})
    assert week["rows"] == [{"time": "2026-11-23T00:00:00+01:00", "count": 199}]
    month = stats(seeded, interval="month", **{"from": "2026-11-01", "to": "2026-12-01"})
    assert month["rows"] == [{"time": "2026-11-01T00:00:00+01:00", "count": 199}]
    total = stats(seeded, interval="total", **{"from": "2026-11-01", "to": "2026-12-01"})
    assert total["rows"] == [{"count": 199}]


def test_from_to_with_hours_is_half_open(seeded: TestClient) -> None:
    body = stats(seeded, interval="total", **{"from": "2026-11-24T10", "to": "2026-11-24T11"})
    assert body["rows"] == [{"count": 170}]


def test_by_route_with_suppression_and_ordering(seeded: TestClient) -> None:
    body = stats(seeded, interval="total", by="route", **{"from": "2026-11-24", "to": "2026-11-26"})
    # /secret (2) is below k=5: withheld, folded with the smallest released row so the
    # (other) remainder is not 2.
    rows = body["rows"]
    assert rows == [
        {"route": "/", "count": 167},
        {"route": "(other)", "count": 32},
    ]
    assert body["withheld"] == 2


def test_by_referrer_utm_and_filters(seeded: TestClient) -> None:
    window = {"from": "2026-11-24", "to": "2026-11-25", "interval": "total"}
    body = stats(seeded, by="referrer", **window)
    assert {r["referrer"]: r["count"] for r in body["rows"]} == {
        "(direct)": 122,
        "news.example.org": 40,
        "(internal)": 30,
    }
    utm = stats(seeded, by="utm_source", filter="route:/", **window)
    assert {r["utm_source"]: r["count"] for r in utm["rows"]} == {
        "(none)": 120,
        "newsletter": 40,
    }
    entries = stats(seeded, metric="entries", **window)
    assert entries["rows"] == [{"count": 162}]


def test_requests_events_bots_visits(seeded: TestClient) -> None:
    window = {"from": "2026-11-24", "to": "2026-11-25", "interval": "total"}
    by_status = stats(seeded, metric="requests", by="status", **window)
    assert {r["status"]: r["count"] for r in by_status["rows"]} == {
        "2xx": 50,
        "3xx": 12,
        "5xx": 9,
    }
    by_method_latency = stats(
        seeded, metric="requests", by="method,latency", filter="method:POST", **window
    )
    assert by_method_latency["rows"] == [
        {"method": "POST", "latency": wire.LATENCY_LABELS[2], "count": 12}
    ]
    events = stats(seeded, metric="events", by=["event", "prop:plan"], **window)
    assert events["rows"] == [
        {"event": "signup", "prop:plan": "free", "count": 25},
        {"event": "signup", "prop:plan": "pro", "count": 8},
    ]
    filtered = stats(seeded, metric="events", filter="prop:plan:pro", **window)
    assert filtered["rows"] == [{"count": 8}]
    assert stats(seeded, metric="bots", **window)["rows"] == [{"count": 60}]
    by_category = stats(seeded, metric="bots", by="category", **window)
    assert by_category["rows"] == [
        {"category": "search", "count": 35},
        {"category": "ai", "count": 20},
        {"category": "other", "count": 5},
    ]
    ai_only = stats(seeded, metric="bots", filter="category:ai", **window)
    assert ai_only["rows"] == [{"count": 20}]
    visits = stats(seeded, metric="visits", by="pages", **window)
    assert {r["pages"]: r["count"] for r in visits["rows"]} == {"1": 30, "3-4": 10}


def test_limit_folds_the_rest_into_other(seeded: TestClient) -> None:
    body = stats(
        seeded,
        by="referrer",
        limit=1,
        interval="total",
        **{"from": "2026-11-24", "to": "2026-11-25"},
    )
    assert body["rows"] == [
        {"referrer": "(direct)", "count": 122},
        {"referrer": "(other)", "count": 70},
    ]


def test_csv_has_the_same_columns_and_rules(seeded: TestClient) -> None:
    from tests.conftest import READ_TOKEN

    response = seeded.get(
        "/v1/stats",
        params={"by": "route", "format": "csv", "from": "2026-11-24", "to": "2026-11-26"},
        headers=read_auth(READ_TOKEN),
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["x-headcount-k"] == "5"
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert list(rows[0]) == ["time", "route", "count"]
    assert {(r["time"][:10], r["route"], r["count"]) for r in rows} == {
        ("2026-11-24", "/", "160"),
        ("2026-11-24", "(other)", "32"),
        ("2026-11-25", "/", "7"),
    }
    assert "/secret" not in response.text


def test_read_token_reads_only_its_own_site(seeded: TestClient) -> None:
    shop = stats(
        seeded,
        token=SHOP_READ_TOKEN,
        interval="total",
        by="route",
        **{"from": "2026-11-24", "to": "2026-11-25"},
    )
    assert shop["site"] == "shop"
    assert shop["rows"] == [{"route": "/cart", "count": 1}]  # shop has k = 1
    assert shop["k"] == 1
    for token in (WRITE_TOKEN, "hcr_guess", ""):
        response = seeded.get("/v1/stats", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"metric": "sessions"}, "metric"),
        ({"interval": "minute"}, "interval"),
        ({"by": "ip"}, "by"),
        ({"by": "route,route"}, "by"),
        ({"by": "status"}, "by"),  # not a pageview dimension
        ({"by": "prop:Bad Name", "metric": "events"}, "by"),
        ({"filter": "route"}, "filter"),
        ({"filter": "user_agent:x"}, "filter"),
        ({"from": "yesterday"}, "from"),
        ({"from": "2026-02-30"}, "from"),
        ({"from": "2026-11-24T25"}, "from"),
        ({"to": "2026-11-24T10:30"}, "to"),
        ({"from": "2026-11-25", "to": "2026-11-24"}, "from"),
        ({"limit": "0"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"format": "xml"}, "format"),
        ({"metric": "pageviews", "sort": "asc"}, "sort"),
        ({"interval": "hour", "from": "2000-01-01", "to": "2026-01-01"}, "interval"),
    ],
)
def test_bad_parameters_get_400_naming_them(
    seeded: TestClient, params: dict[str, str], parameter: str
) -> None:
    from tests.conftest import READ_TOKEN

    response = seeded.get("/v1/stats", params=params, headers=read_auth(READ_TOKEN))
    assert response.status_code == 400, response.text
    assert response.json()["parameter"] == parameter


def test_rolled_up_hours_are_announced(
    store: Store, make_client: Callable[..., TestClient]
) -> None:
    client = make_client(clock=lambda: NOW)
    body = stats(client, interval="hour", **{"from": "2026-10-01", "to": "2026-10-02"})
    assert body["rows"] == []
    assert "rolled up" in body["notes"][0]


def test_visits_derived_figures_use_released_numbers_only(seeded: TestClient) -> None:
    window = {"from": "2026-11-24", "to": "2026-11-25", "interval": "total"}
    body = stats(seeded, metric="visits", by="duration", **window)
    assert {r["duration"]: r["count"] for r in body["rows"]} == {"0s": 30, "1m-2m": 10}
    # 30 of 40 visits had one page, 10 had 3-4 (counted as 3.5): the visits' own pages
    # ranges, not the day's 192 pageviews, some of which belong to visits still open.
    assert body["derived"] == {"bounce_rate": 0.75, "views_per_visit": round(65 / 40, 2)}


def test_visit_figures_are_withheld_with_their_inputs(
    store: Store, make_client: Callable[..., TestClient]
) -> None:
    h = utc_hour(2026, 11, 24, 9)
    seed(
        store, "blog", [("visit", h, ("/", "0s", "1"), 3), ("visit", h, ("/", "1m-2m", "3-4"), 40)]
    )
    client = make_client(clock=lambda: NOW)
    body = stats(
        client,
        metric="visits",
        by="route",
        interval="total",
        **{"from": "2026-11-24", "to": "2026-11-25"},
    )
    # The 3 single-page visits are below k: a bounce rate would reveal them.
    assert body["derived"]["bounce_rate"] is None


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"from": "9999-12-30", "to": "9999-12-31"}, "to"),
        ({"from": "0001-01-01", "interval": "total"}, "from"),
        ({"from": "1970-01-02", "to": "2026-01-01", "interval": "day"}, "interval"),
        ({"from": "1970-01-02", "to": "9998-01-01", "interval": "month"}, "interval"),
        # A total is read day by day: 8,000 years of days held a worker for 20-50 s.
        ({"from": "1970-01-01", "to": "9998-12-31", "interval": "total"}, "from"),
        (
            {"from": "1970-01-01", "to": "9998-12-31", "interval": "total", "metric": "visits"},
            "from",
        ),
        ({"from": "1999-01-01", "to": "2030-01-01", "interval": "total"}, "from"),
        # Fewer than 10,000 months or weeks, but far more than 10,000 days to read.
        ({"from": "1970-01-01", "to": "2735-01-01", "interval": "month"}, "from"),
        (
            {"from": "1970-01-01", "to": "2735-01-01", "interval": "month", "metric": "visits"},
            "from",
        ),
        ({"from": "1970-01-01", "to": "2150-01-01", "interval": "week"}, "from"),
    ],
)
def test_extreme_ranges_are_refused_quickly(
    seeded: TestClient, params: dict[str, str], parameter: str
) -> None:
    from tests.conftest import READ_TOKEN

    response = seeded.get("/v1/stats", params=params, headers=read_auth(READ_TOKEN))
    assert response.status_code == 400, response.text
    assert response.json()["parameter"] == parameter


def test_a_total_over_decades_still_answers(seeded: TestClient) -> None:
    """The bound is 10,000 days: a total over the last 25 years is a question people ask."""
    from tests.conftest import READ_TOKEN

    params = {"from": "2002-01-01", "to": "2026-12-01", "interval": "total"}
    response = seeded.get("/v1/stats", params=params, headers=read_auth(READ_TOKEN))
    assert response.status_code == 200, response.text


def test_property_names_with_dots(store: Store, make_client: Callable[..., TestClient]) -> None:
    h = utc_hour(2026, 11, 24, 9)
    seed(store, "shop", [("event", h, ("signup", "/join", '{"plan.tier":"gold"}'), 7)])
    client = make_client(clock=lambda: NOW)
    window = {"from": "2026-11-24", "to": "2026-11-25", "interval": "total"}
    body = stats(client, token=SHOP_READ_TOKEN, metric="events", by="prop:plan.tier", **window)
    assert body["rows"] == [{"prop:plan.tier": "gold", "count": 7}]
    filtered = stats(
        client, token=SHOP_READ_TOKEN, metric="events", filter="prop:plan.tier:gold", **window
    )
    assert filtered["rows"] == [{"count": 7}]


def test_a_long_range_in_weeks_reads_each_cell_once(
    store: Store, make_client: Callable[..., TestClient]
) -> None:
    """27 years of weeks over a year of data: each week reads its own days, never the
    whole range once per week (which took 19 s on a year of a few hundred routes)."""
    first = utc_hour(2025, 11, 25, 0)
    rows: list[tuple[str, int, tuple[str | int, ...], int]] = [
        ("request", first + day * 86400, (f"/r{route}", "GET", "2xx", wire.LATENCY_LABELS[0]), 1)
        for day in range(300)
        for route in range(60)
    ]
    seed(store, "blog", rows)
    client = make_client(clock=lambda: NOW)
    params = {"metric": "requests", "interval": "week", "by": "route", "limit": "1"}
    started = time.perf_counter()
    body = stats(client, **params, **{"from": "1999-08-01", "to": "2026-11-26"})
    # Wall time: PostgreSQL's work is in its own process. 2.7-4.7 s before, 0.07-0.3 after.
    took = time.perf_counter() - started
    assert sum(int(row["count"]) for row in body["totals"]) == len(rows)
    assert took < 2.0, took
