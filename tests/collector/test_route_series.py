"""Several routes' series in one read: the same answers as one question per route."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from headcount_collector.config import Site, load_sites
from headcount_collector.errors import QueryRejected
from headcount_collector.query import parse_stats_query, run_route_series, run_stats_query
from headcount_collector.release.catalogue import MARGINALS
from headcount_collector.release.reader import read_released
from headcount_collector.stores.base import Dialect, ReleasedQuery, release_table
from headcount_collector.stores.postgres import DIALECT as POSTGRES_DIALECT
from headcount_collector.stores.sqlite import DIALECT as SQLITE_DIALECT
from tests.collector.conftest import pageview, request_record
from tests.collector.noise_harness import FIRST_DAY, NoisedCollector, local_ts, noised_collector

ROUTES = ["/", "/docs", "/blog/{slug}", "/lonely"]
DAYS = 3
# Sealed up to the third day's 14:00 (hour end plus the grace), so that questions cross
# sealed days, sealed hours of a partial day and hours not sealed yet.
SEALED_AT = local_ts(FIRST_DAY + timedelta(days=DAYS - 1), 16)


def _load(collector: NoisedCollector) -> None:
    records = []
    for day in range(DAYS):
        when = FIRST_DAY + timedelta(days=day)
        for hour, scale in ((3, 1), (9, 4), (14, 3), (21, 2)):
            at = local_ts(when, hour)
            records += [
                pageview(route="/", n=60 * scale + day, hour=at),
                pageview(route="/docs", n=25 * scale, hour=at, referrer="github.com"),
                pageview(route="/blog/{slug}", n=9 * scale + hour, hour=at, entry=True),
                request_record(route="/docs", n=40 * scale, hour=at, status="2xx"),
            ]
        records.append(pageview(route="/lonely", n=1, hour=local_ts(when, 14)))
    last = local_ts(FIRST_DAY + timedelta(days=DAYS), 0)
    assert collector.send(records, last - 3600) == {"accepted": len(records)}
    collector.seal_everything(SEALED_AT)


@pytest.fixture(params=["noised", "exact"])
def loaded(
    request: pytest.FixtureRequest, tmp_path: Path, store_url: str
) -> Iterator[tuple[NoisedCollector, Site]]:
    noise = request.param == "noised"
    with noised_collector(tmp_path, noise=noise, store_url=store_url) as collector:
        _load(collector)
        site = next(iter(load_sites(collector.settings.config_path)))
        yield collector, site


@pytest.fixture
def noised_loaded(tmp_path: Path, store_url: str) -> Iterator[NoisedCollector]:
    with noised_collector(tmp_path, store_url=store_url) as collector:
        _load(collector)
        yield collector


QUESTIONS = [
    # whole days, day by day
    {"from": FIRST_DAY.isoformat(), "to": (FIRST_DAY + timedelta(days=DAYS)).isoformat(),
     "interval": "day"},
    # partial days at both edges, the end not sealed yet
    {"from": f"{FIRST_DAY.isoformat()}T08", "to": f"{(FIRST_DAY + timedelta(days=2)).isoformat()}T22",
     "interval": "day"},
    {"from": FIRST_DAY.isoformat(), "to": (FIRST_DAY + timedelta(days=DAYS)).isoformat(),
     "interval": "hour"},
    {"from": f"{FIRST_DAY.isoformat()}T05", "to": (FIRST_DAY + timedelta(days=DAYS)).isoformat(),
     "interval": "total"},
    {"from": FIRST_DAY.isoformat(), "to": (FIRST_DAY + timedelta(days=14)).isoformat(),
     "interval": "week"},
]  # fmt: skip


@pytest.mark.parametrize("metric", ["pageviews", "entries", "requests"])
@pytest.mark.parametrize("question", QUESTIONS, ids=lambda q: f"{q['interval']}:{q['from']}")
def test_each_route_gets_exactly_its_own_questions_answer(
    loaded: tuple[NoisedCollector, Site], metric: str, question: dict[str, str]
) -> None:
    collector, site = loaded
    now = collector.clock()
    params = [("metric", metric), *question.items()]
    asked = [*ROUTES, "/nowhere", "/docs"]  # one never seen, one asked twice
    together = run_route_series(
        collector.store, site, parse_stats_query(params, site, now), asked, now
    )
    assert list(together) == [*ROUTES, "/nowhere"]
    for route in [*ROUTES, "/nowhere"]:
        alone = parse_stats_query([*params, ("filter", f"route:{route}")], site, now)
        assert together[route] == run_stats_query(collector.store, site, alone, now), route
        # and the same as a reader gets over HTTP
        over_http = collector.stats(**question, metric=metric, filter=f"route:{route}")
        assert together[route] == over_http
    answered = [r for r in ROUTES if together[r]["totals"]]
    assert len(answered) >= (1 if metric == "requests" else 3)  # not a vacuous comparison
    assert not together["/nowhere"]["totals"]


def test_a_question_that_already_breaks_down_or_names_a_route_is_refused(
    loaded: tuple[NoisedCollector, Site],
) -> None:
    collector, site = loaded
    now = collector.clock()
    span = [("from", FIRST_DAY.isoformat()), ("to", (FIRST_DAY + timedelta(days=1)).isoformat())]
    for extra in [("by", "referrer"), ("filter", "route:/docs")]:
        query = parse_stats_query([("metric", "pageviews"), *span, extra], site, now)
        with pytest.raises(ValueError, match="no breakdown and no route filter"):
            run_route_series(collector.store, site, query, ["/"], now)
    bots = parse_stats_query([("metric", "bots"), *span], site, now)
    with pytest.raises(QueryRejected) as refused:
        run_route_series(collector.store, site, bots, ["/"], now)
    assert refused.value.parameter == "filter"
    pageviews = parse_stats_query([("metric", "pageviews"), *span], site, now)
    assert run_route_series(collector.store, site, pageviews, [], now) == {}


FILTERED = [
    [("metric", "events"), ("filter", "event:signup")],
    [("metric", "events"), ("filter", "event:signup"), ("filter", "prop:plan:pro")],
    [("metric", "visits")],
    [("metric", "pageviews"), ("filter", "referrer:github.com")],
    [("metric", "pageviews"), ("filter", "utm_source:(none)")],
    [("metric", "pageviews"), ("filter", "utm_source:news")],
    [("metric", "pageviews"), ("filter", "entry:no")],
    [("metric", "requests"), ("filter", "status:2xx")],
]


def _varied_records(days: int) -> list[list[dict[str, object]]]:
    """Per day: every kind with a route, each route's visits in its own pages range (so a
    visits figure computed over the wrong routes shows), some with a utm source."""
    per_day = []
    for day in range(days):
        when = FIRST_DAY + timedelta(days=day)
        records: list[dict[str, object]] = []
        for hour, scale in ((3, 1), (9, 4), (14, 3), (21, 2)):
            at = local_ts(when, hour)
            for index, route in enumerate(ROUTES[:3]):
                utm = {"utm_source": "news"} if hour == 9 else {}
                records += [
                    pageview(route=route, n=30 * scale, hour=at, referrer="github.com", **utm),
                    pageview(route=route, n=20 * scale, hour=at, referrer="(internal)"),
                    {"kind": "event", "hour": at, "name": "signup", "route": route,
                     "props": {"plan": "pro"}, "n": 30 * scale},
                    {"kind": "visit", "hour": at, "route": route, "duration": "1m-2m",
                     "pages": ["1", "3-4", "10+"][index], "n": 30 * scale},
                    request_record(route=route, n=20 * scale, hour=at),
                ]  # fmt: skip
        per_day.append(records)
    return per_day


@pytest.mark.parametrize("noise", [True, False], ids=["noised", "exact"])
@pytest.mark.parametrize("interval", ["day", "hour", "total", "week"])
def test_filters_visits_events_and_the_retention_note_are_each_routes_own(
    tmp_path: Path, store_url: str, noise: bool, interval: str
) -> None:
    # One day of hourly rows: questions reach back past the hours still kept, so their
    # answers carry the retention note.
    with noised_collector(tmp_path, noise=noise, store_url=store_url, hourly_days=1) as collector:
        for day, records in enumerate(_varied_records(DAYS)):
            at = local_ts(FIRST_DAY + timedelta(days=day), 23)
            assert collector.send(records, at) == {"accepted": len(records)}
        collector.seal_everything(SEALED_AT)
        collector.run_retention()
        site = next(iter(load_sites(collector.settings.config_path)))
        now = collector.clock()
        span = [
            ("from", f"{FIRST_DAY.isoformat()}T05"),
            ("to", (FIRST_DAY + timedelta(days=DAYS)).isoformat()),
            ("interval", interval),
        ]
        answered = 0
        for question in FILTERED:
            params = [*question, *span]
            query = parse_stats_query(params, site, now)
            together = run_route_series(collector.store, site, query, ROUTES[:3], now)
            for route in ROUTES[:3]:
                alone = parse_stats_query([*params, ("filter", f"route:{route}")], site, now)
                assert together[route] == run_stats_query(collector.store, site, alone, now), (
                    question,
                    route,
                )
                answered += bool(together[route]["totals"])
        assert answered >= 3 * (len(FILTERED) - 2)  # utm_source:news is one hour a day
        if noise and interval == "hour":
            assert any("no longer kept" in note for note in together["/"]["notes"])  # type: ignore[attr-defined]


def test_too_many_routes_or_a_column_the_cells_lack_are_refused(
    loaded: tuple[NoisedCollector, Site],
) -> None:
    collector, site = loaded
    now = collector.clock()
    span = [("from", FIRST_DAY.isoformat()), ("to", (FIRST_DAY + timedelta(days=1)).isoformat())]
    query = parse_stats_query([("metric", "pageviews"), *span], site, now)
    routes = [f"/r{i}" for i in range(1001)]
    with pytest.raises(ValueError, match="at most 1000 routes"):
        run_route_series(collector.store, site, query, routes, now)
    assert len(run_route_series(collector.store, site, query, routes[:1000], now)) == 1000
    if not site.policy.noise:
        return
    sealed = collector.store.seal_state(site.id)
    for one_of in [("status", ("2xx",)), ("route", ())]:
        with pytest.raises(ValueError, match="one_of needs a column"):
            read_released(
                collector.store, site.id, site.timezone, site.policy, "pageview", ("route",),
                [], "total", (query.start, query.end), sealed, 0, None, one_of,
            )  # fmt: skip


@pytest.mark.parametrize("metric", ["pageviews", "entries", "requests"])
@pytest.mark.parametrize("question", QUESTIONS, ids=lambda q: f"{q['interval']}:{q['from']}")
def test_a_route_filter_answers_that_routes_rows_of_the_breakdown_by_route(
    noised_loaded: NoisedCollector, metric: str, question: dict[str, str]
) -> None:
    """A route filter finds each released bucket's cells by key; the breakdown reads every
    route's cells of the range. Both must add up the same cells. (An exact site's
    suppression depends on the question, so only a noised site promises this.)"""
    collector = noised_loaded
    breakdown = collector.stats(**question, metric=metric, by="route", limit="1000")
    compared = 0
    for route in ROUTES:
        filtered = collector.stats(**question, metric=metric, filter=f"route:{route}")
        own = [
            {k: v for k, v in row.items() if k != "route"}
            for row in breakdown["rows"]
            if row["route"] == route
        ]
        assert [row for row in filtered["totals"] if row["count"]] == own, route
        compared += len(own)
    assert compared >= (1 if metric == "requests" else 3)  # requests: /docs only


@pytest.mark.parametrize("dialect", [SQLITE_DIALECT, POSTGRES_DIALECT], ids=["sqlite", "postgres"])
def test_a_released_read_touches_released_cells_and_nothing_else(dialect: Dialect) -> None:
    """How long a read takes must not depend on anything unreleased. A route-filtered read
    that looked up each bucket hc_sealed_data lists (every bucket that held counts, live)
    took longer for an hour someone visited, released or not: a reader timing it learned
    whether anyone had come (91.5 % right over 200 trials, in a review). So every read of
    released numbers names its marginal's released table and no other."""
    for kind, marginals in MARGINALS.items():
        for marginal in marginals:
            for dims in [(), *((d,) for d in marginal.dims)]:
                filters = tuple((d, "/docs") for d in dims)
                one_of = (marginal.dims[0], ("/a", "/b")) if marginal.dims else None
                for segments, per_bucket in (
                    (((0, 86400, 0),), False),
                    (((0, 3600, 0), (3600, 7200, 3600)), False),
                    (((0, 86400, 0),), True),
                ):
                    query = ReleasedQuery(
                        marginal, "site", "h", segments, filters=filters,
                        per_bucket=per_bucket, one_of=one_of,
                    )  # fmt: skip
                    sql, _ = dialect.released_sql(query)
                    # hc_rel_buckets: the buckets that hold released cells, no more.
                    assert set(re.findall(r"\bhc_\w+", sql)) <= {
                        release_table(kind),
                        "hc_rel_buckets",
                    }, sql
                    assert release_table(kind) in sql


def test_the_released_buckets_are_exactly_those_of_the_released_cells(
    tmp_path: Path, store_url: str
) -> None:
    """Route-filtered reads on SQLite find cells through hc_rel_buckets. A released cell
    in a bucket missing there would be silently left out of them; a bucket listed there
    without a released cell (one that held only counts below the threshold) would make
    its reads take longer, telling a reader that someone came. So the list is exactly
    the released cells' buckets, after sealing and after retention."""
    with noised_collector(tmp_path, store_url=store_url, hourly_days=1) as collector:
        for day, records in enumerate(_varied_records(DAYS)):
            at = local_ts(FIRST_DAY + timedelta(days=day), 23)
            assert collector.send(records, at) == {"accepted": len(records)}
        # One request alone in an hour: sealed, never released, never listed.
        lone = local_ts(FIRST_DAY + timedelta(days=DAYS - 1), 5)
        assert collector.send([request_record("/lonely", hour=lone)], lone) == {"accepted": 1}
        with collector.store_connection() as execute:
            listed_before = execute("SELECT COUNT(*) FROM hc_rel_buckets").fetchone()[0]  # type: ignore[attr-defined]
        assert listed_before == 0
        for retention in (False, True):
            collector.seal_everything(SEALED_AT)
            if retention:
                collector.run_retention()
            with collector.store_connection() as execute:
                released = set(
                    execute(  # type: ignore[attr-defined]
                        " UNION ".join(
                            f"SELECT site, res, bucket FROM hc_rel_{kind}"
                            for kind in ("pageview", "request", "event", "bot", "visit")
                        )
                    ).fetchall()
                )
                listed = set(execute("SELECT site, res, bucket FROM hc_rel_buckets").fetchall())  # type: ignore[attr-defined]
                sealed = set(execute("SELECT site, res, bucket FROM hc_sealed_data").fetchall())  # type: ignore[attr-defined]
            assert released
            assert listed == released
            if not retention:
                # The lone request's hour was sealed and is in hc_sealed_data, not here.
                assert sealed - listed
