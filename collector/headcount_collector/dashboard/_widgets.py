"""What each dashboard view shows, read only through the query layer behind /v1/stats.

Every widget is the answer to one ``/v1/stats`` query (its ``params``); the page shows
that answer's rows as a plain table and links to the same query as CSV, so the dashboard
can never show a number the API would not release.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlencode

from markupsafe import Markup

from headcount import wire
from headcount_collector.config import Site
from headcount_collector.query import (
    parse_stats_query,
    run_route_series,
    run_stats_query,
    weakest_statement,
)
from headcount_collector.stores.base import Store
from headcount_collector.timeutil import bucket_starts, to_local_iso

from ._charts import Point, bar_chart, line_chart, sparkline
from ._periods import Period

__all__ = ["Overview", "Pivot", "RouteDetail", "Total", "Widget", "overview", "route_detail"]

Params = list[tuple[str, str]]
TOP_ROWS = 10
MORE_ROWS = 100
SPARKLINES = 10


@dataclass(slots=True)
class Widget:
    key: str
    title: str
    params: Params
    result: dict[str, object]
    visual: Markup | None = None
    more: str | None = None  # the "show more" parameter, when there may be more rows
    extra: list[dict[str, object]] = field(default_factory=list)
    pivot: Pivot | None = None

    @property
    def query(self) -> str:
        return urlencode(self.params)

    @property
    def columns(self) -> list[str]:
        by = [str(d) for d in self.result["by"]]  # type: ignore[attr-defined]
        time = [] if self.result["interval"] == "total" else ["time"]
        noised = self.result["privacy"]["mode"] != "exact"  # type: ignore[index]
        return [*time, *by, "count", *(["error"] if noised else [])]

    @property
    def rows(self) -> list[dict[str, object]]:
        rows: list[dict[str, object]] = (
            self.result["rows"] if self.result["by"] else self.result["totals"]  # type: ignore[assignment]
        )
        return rows


@dataclass(frozen=True, slots=True)
class Pivot:
    """Rows by one dimension and columns by another, e.g. routes by status class."""

    row_title: str
    columns: list[str]
    rows: list[tuple[str, list[int | None]]]


def _pivot(rows: list[dict[str, object]], down: str, across: str, order: Sequence[str]) -> Pivot:
    cells: dict[str, dict[str, int]] = {}
    for row in rows:
        cells.setdefault(str(row[down]), {})[str(row[across])] = int(row["count"])  # type: ignore[call-overload]
    seen = {column for counts in cells.values() for column in counts}
    columns = [c for c in order if c in seen] + sorted(seen - set(order))
    ranked = sorted(cells.items(), key=lambda item: -sum(item[1].values()))[:TOP_ROWS]
    return Pivot(down, columns, [(name, [c.get(col) for col in columns]) for name, c in ranked])


@dataclass(frozen=True, slots=True)
class Total:
    key: str
    title: str
    params: Params
    value: float | None
    error: float | None
    previous: float | None
    percent: bool = False

    @property
    def query(self) -> str:
        return urlencode(self.params)

    @property
    def change(self) -> float | None:
        return _change(self.value, self.previous)


@dataclass(slots=True)
class Overview:
    site: Site
    period: Period
    compare: bool
    privacy: dict[str, object]
    sealed_hour: str | None
    traffic: Widget
    totals: list[Total]
    widgets: list[Widget]


@dataclass(slots=True)
class RouteDetail(Overview):
    """One route's page: the overview's parts, narrowed to ``route``."""

    route: str = ""


def _change(value: float | None, previous: float | None) -> float | None:
    if value is None or not previous:
        return None
    return round((value - previous) / previous * 100, 1)


class _Asker:
    """Runs /v1/stats queries for one site and one moment, exactly as the API would."""

    def __init__(self, store: Store, site: Site, now: float) -> None:
        self.store, self.site, self.now = store, site, now
        # Buckets from here on have nothing released yet (unsealed, or in the future):
        # a chart leaves them out rather than drawing them as zero.
        if site.policy.noise:
            self.released_until = store.seal_state(site.id).get("h", 0)
        else:
            self.released_until = int(now) // 3600 * 3600 + 3600

        # Every answer's privacy block: a page states the weakest of them (periods
        # compared may have been sealed under other parameters).
        self.stated: list[dict[str, object]] = []

    def __call__(self, params: Params) -> dict[str, object]:
        query = parse_stats_query(params, self.site, self.now)
        answer = run_stats_query(self.store, self.site, query, self.now)
        self._state(answer)
        return answer

    def per_route(self, params: Params, routes: Sequence[str]) -> dict[str, dict[str, object]]:
        """What ``params`` with ``filter=route:R`` answers, for each of ``routes``."""
        query = parse_stats_query(params, self.site, self.now)
        answers = run_route_series(self.store, self.site, query, routes, self.now)
        for answer in answers.values():
            self._state(answer)
        return answers

    def _state(self, answer: dict[str, object]) -> None:
        privacy = answer.get("privacy")
        if isinstance(privacy, dict):
            self.stated.append(privacy)


def _total(result: dict[str, object]) -> tuple[int | None, float | None]:
    totals = result["totals"]
    if not totals:
        return None, None
    first = totals[0]  # type: ignore[index]
    return int(first["count"]), first.get("error")


def _by_time(result: dict[str, object]) -> dict[str, tuple[int, float | None]]:
    return {
        str(row["time"]): (int(row["count"]), row.get("error"))
        for row in result["totals"]  # type: ignore[attr-defined]
    }


def _bucket_times(period: Period, site: Site) -> list[tuple[str, str, int]]:
    """(the API's time label, a short label) for every bucket of the period, empty or not."""
    start, end = int(period.start.timestamp()), int(period.end.timestamp())
    if period.hourly:
        buckets, short = list(range(start, end, 3600)), "%d %H:00"
    else:
        buckets, short = [lo for lo, _ in bucket_starts(start, end, "day", site.timezone)], "%m-%d"
    labels = []
    for ts in buckets:
        iso = to_local_iso(ts, site.timezone)
        labels.append((iso, datetime.fromisoformat(iso).strftime(short), ts))
    return labels


def _series(
    ask: _Asker, site: Site, period: Period, compare: bool, metric: str, filters: Params
) -> tuple[Params, dict[str, object], list[Point]]:
    params: Params = [("metric", metric), *period.params(), ("interval", period.interval), *filters]
    result = ask(params)
    before: dict[str, tuple[int, float | None]] | None = None
    previous_labels: list[tuple[str, str, int]] = []
    if compare:
        prior = period.previous()
        before = _by_time(
            ask([("metric", metric), *prior.params(), ("interval", period.interval), *filters])
        )
        previous_labels = _bucket_times(prior, site)
    points = _points(ask, result, _bucket_times(period, site), before, previous_labels)
    return params, result, points


def _points(
    ask: _Asker,
    result: dict[str, object],
    labels: list[tuple[str, str, int]],
    before: dict[str, tuple[int, float | None]] | None = None,
    previous_labels: Sequence[tuple[str, str, int]] = (),
) -> list[Point]:
    """One point per bucket of the period: a released bucket with no count is zero, a
    bucket not released yet has no value (a chart leaves it out)."""
    current = _by_time(result)
    points = []
    for index, (iso, label, start) in enumerate(labels):
        empty = (0, None) if start < ask.released_until else (None, None)
        count, error = current.get(iso, empty)
        previous = None
        if before is not None and index < len(previous_labels):
            previous = before.get(previous_labels[index][0], (0, None))[0]
        points.append(Point(label, count, error, previous))
    return points


def _totals(
    ask: _Asker, period: Period, compare: bool, filters: Params, with_visits: bool
) -> list[Total]:
    def pair(metric: str, span: Period) -> tuple[Params, dict[str, object]]:
        params: Params = [("metric", metric), *span.params(), ("interval", "total"), *filters]
        return params, ask(params)

    prior = period.previous()
    totals: list[Total] = []
    metrics = [("pageviews", "Pageviews"), ("entries", "Entries")]
    if with_visits:
        metrics.append(("visits", "Visits"))
    visit_results: tuple[dict[str, object], dict[str, object] | None] | None = None
    for metric, title in metrics:
        params, result = pair(metric, period)
        value, error = _total(result)
        previous_result = pair(metric, prior)[1] if compare else None
        previous = _total(previous_result)[0] if previous_result is not None else None
        totals.append(Total(metric, title, params, value, error, previous))
        if metric == "visits":
            visit_results = (result, previous_result)
    if visit_results is not None:
        visits_params = totals[-1].params
        for key, title, percent in (
            ("bounce_rate", "Bounce rate", True),
            ("views_per_visit", "Views per visit", False),
        ):
            now_value = visit_results[0]["derived"][key]  # type: ignore[index]
            before = visit_results[1]["derived"][key] if visit_results[1] else None  # type: ignore[index]
            scale = 100 if percent else 1
            totals.append(
                Total(
                    key,
                    title,
                    visits_params,
                    None if now_value is None else round(now_value * scale, 2),
                    None,
                    None if before is None else round(before * scale, 2),
                    percent,
                )
            )
    return totals


def _ranked(
    ask: _Asker,
    key: str,
    title: str,
    metric: str,
    dim: str,
    period: Period,
    filters: Params,
    limit: int,
) -> Widget:
    params: Params = [
        ("metric", metric),
        *period.params(),
        ("interval", "total"),
        ("by", dim),
        ("limit", str(limit)),
        *filters,
    ]
    result = ask(params)
    bars = [(str(row[dim]), float(row["count"])) for row in result["rows"]]  # type: ignore[attr-defined]
    widget = Widget(key, title, params, result, bar_chart(bars, title) if bars else None)
    if len(bars) >= limit and limit < MORE_ROWS:
        widget.more = key
    return widget


def _distribution(
    ask: _Asker, key: str, title: str, dim: str, labels: Sequence[str], period: Period
) -> Widget:
    params: Params = [("metric", "visits"), *period.params(), ("interval", "total"), ("by", dim)]
    result = ask(params)
    counts = {str(row[dim]): float(row["count"]) for row in result["rows"]}  # type: ignore[attr-defined]
    bars = [(label, counts[label]) for label in labels if label in counts]
    bars += [(label, n) for label, n in counts.items() if label not in labels]
    return Widget(key, title, params, result, bar_chart(bars, title) if bars else None)


def _pages(
    ask: _Asker, site: Site, period: Period, compare: bool, more: bool, pageviews: float | None
) -> Widget:
    limit = MORE_ROWS if more else TOP_ROWS
    params: Params = [
        ("metric", "pageviews"),
        *period.params(),
        ("interval", "total"),
        ("by", "route"),
        ("limit", str(limit)),
    ]
    result = ask(params)
    previous: dict[str, int] = {}
    if compare:
        prior = period.previous()
        before = ask(
            [
                ("metric", "pageviews"),
                *prior.params(),
                ("interval", "total"),
                ("by", "route"),
                ("limit", "1000"),
            ]
        )
        previous = {str(r["route"]): int(r["count"]) for r in before["rows"]}  # type: ignore[attr-defined]
    extra: list[dict[str, object]] = []
    rows: list[dict[str, object]] = result["rows"]  # type: ignore[assignment]
    charted = [str(row["route"]) for row in rows[:SPARKLINES] if row["route"] != wire.OTHER]
    series = ask.per_route(
        [("metric", "pageviews"), *period.params(), ("interval", period.interval)], charted
    )
    labels = _bucket_times(period, site)
    for row in rows:
        route, count = str(row["route"]), int(row["count"])  # type: ignore[call-overload]
        spark: Markup | None = None
        if route in series:
            values = _points(ask, series[route], labels)
            spark = sparkline([p.value or 0 for p in values], f"{route} over the period")
        extra.append(
            {
                "route": route,
                "count": count,
                "error": row.get("error"),
                "share": round(count / pageviews * 100, 1) if pageviews else None,
                "change": _change(count, previous.get(route)) if compare else None,
                "spark": spark,
            }
        )
    widget = Widget("pages", "Pages", params, result, None, extra=extra)
    if len(extra) >= limit and not more:
        widget.more = "pages"
    return widget


def _health(ask: _Asker, period: Period, filters: Params, limit: int) -> list[Widget]:
    span: Params = [("metric", "requests"), *period.params(), ("interval", "total")]
    widgets = []
    for key, title, across, order in (
        ("status", "Requests by route and status class", "status", wire.STATUS_CLASSES),
        ("latency", "Latency ranges by route", "latency", wire.LATENCY_LABELS),
    ):
        params = [*span, ("by", f"route,{across}"), ("limit", str(limit)), *filters]
        result = ask(params)
        rows: list[dict[str, object]] = result["rows"]  # type: ignore[assignment]
        widget = Widget(key, title, params, result, pivot=_pivot(rows, "route", across, order))
        widgets.append(widget)
    for status in ("4xx", "5xx"):
        widgets.append(
            _ranked(
                ask,
                f"top{status}",
                f"Routes with the most {status}",
                "requests",
                "route",
                period,
                [("filter", f"status:{status}"), *filters],
                5,
            )
        )
    return widgets


def _sealed(result: dict[str, object]) -> str | None:
    sealed = result.get("sealed_until")
    if not isinstance(sealed, dict) or not sealed.get("hour"):
        return None
    return str(sealed["hour"])[:13].replace("T", " ") + ":00"


def _traffic(
    ask: _Asker, site: Site, period: Period, compare: bool, filters: Params, title: str
) -> tuple[Widget, dict[str, object]]:
    """The pageviews line chart heading a page, and its answer (which says how released)."""
    params, result, points = _series(ask, site, period, compare, "pageviews", filters)
    chart = line_chart(points, f"{title} per {period.interval}", compare=compare)
    return Widget("traffic", title, params, result, chart), result


def _released(ask: _Asker, result: dict[str, object]) -> tuple[dict[str, object], str | None]:
    """A page's privacy statement (the weakest of all its answers') and sealed hour (from
    its traffic answer)."""
    return weakest_statement(ask.stated), _sealed(result)


def overview(
    store: Store, site: Site, period: Period, compare: bool, more: str, now: float
) -> Overview:
    ask = _Asker(store, site, now)
    traffic, result = _traffic(ask, site, period, compare, [], "Pageviews")
    totals = _totals(ask, period, compare, [], with_visits=True)

    def limit(key: str) -> int:
        return MORE_ROWS if more == key else TOP_ROWS

    widgets = [_pages(ask, site, period, compare, more == "pages", totals[0].value)]
    for dim, title in (
        ("referrer", "Referrers"),
        ("utm_source", "UTM source"),
        ("utm_medium", "UTM medium"),
        ("utm_campaign", "UTM campaign"),
    ):
        widgets.append(_ranked(ask, dim, title, "pageviews", dim, period, [], limit(dim)))
    widgets.append(
        _distribution(ask, "duration", "Visit duration", "duration", wire.DURATION_LABELS, period)
    )
    widgets.append(
        _distribution(ask, "pages_per_visit", "Pages per visit", "pages", wire.PAGES_LABELS, period)
    )
    widgets.extend(_health(ask, period, [], MORE_ROWS))
    widgets.append(
        _ranked(ask, "bots", "Bots by category", "bots", "category", period, [], TOP_ROWS)
    )
    widgets.append(
        _ranked(ask, "events", "Custom events", "events", "event", period, [], limit("events"))
    )
    for event in site.events.values():
        for prop in event.props:
            widgets.append(
                _ranked(
                    ask,
                    f"event-{event.name}-{prop}",
                    f"Event {event.name}: {prop}",
                    "events",
                    f"prop:{prop}",
                    period,
                    [("filter", f"event:{event.name}")],
                    TOP_ROWS,
                )
            )
    return Overview(site, period, compare, *_released(ask, result), traffic, totals, widgets)


def route_detail(
    store: Store, site: Site, route: str, period: Period, compare: bool, now: float
) -> RouteDetail:
    ask = _Asker(store, site, now)
    only: Params = [("filter", f"route:{route}")]
    traffic, result = _traffic(ask, site, period, compare, only, f"Pageviews of {route}")
    totals = _totals(ask, period, compare, only, with_visits=False)
    widgets = [
        _ranked(ask, "referrer", "Referrers", "pageviews", "referrer", period, only, TOP_ROWS),
        _ranked(
            ask, "entries", "Entries by referrer", "entries", "referrer", period, only, TOP_ROWS
        ),
        *_health(ask, period, only, TOP_ROWS),
    ]
    return RouteDetail(
        site, period, compare, *_released(ask, result), traffic, totals, widgets, route=route
    )
