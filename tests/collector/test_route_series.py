"""Several routes' series in one read: the same answers as one question per route."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from headcount_collector.config import Site, load_sites
from headcount_collector.errors import QueryRejected
from headcount_collector.query import parse_stats_query, run_route_series, run_stats_query
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
