"""``GET /v1/stats``: parameters in, released rows out.

Parsing is strict: a bad parameter is a 400 naming it, never a guess. A noised site (the
default) is answered only from sealed noisy cells (``release.reader``); a site that opted
out with ``exact_counts`` is answered from true counts with per-response suppression.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Final, Literal, get_args

from headcount import wire
from headcount_collector.config import Site
from headcount_collector.errors import QueryRejected
from headcount_collector.release.catalogue import Marginal
from headcount_collector.release.reader import Answer, Column, choose_marginal, read_released
from headcount_collector.stores.base import (
    CounterQuery,
    OneOf,
    SealParams,
    Store,
    retention_cutoffs,
)
from headcount_collector.suppression import Cell, suppress_group
from headcount_collector.tables import TABLES, Table
from headcount_collector.timeutil import (
    bucket_starts,
    floor_hour,
    is_local_midnight,
    local_midnight,
    to_local_iso,
)

__all__ = [
    "METRICS",
    "StatsQuery",
    "parse_stats_query",
    "render_csv",
    "run_route_series",
    "run_stats_query",
]

Interval = Literal["hour", "day", "week", "month", "total"]
Format = Literal["json", "csv"]

Metric = tuple[Table, tuple[tuple[str, int], ...], tuple[str, ...]]
Filter = tuple[Column, str | int]


def _metrics() -> dict[str, Metric]:
    """metric -> (table, implicit filters, dimensions a user may group or filter by):
    one metric per record kind in ``wire.KINDS``, and entries: the pageviews that began a
    visit (or came from outside, where visits are off)."""
    metrics: dict[str, Metric] = {}
    for name, kind in wire.KINDS.items():
        dimensions = tuple(d.query for d in kind.dimensions)
        metrics[kind.metric] = (TABLES[name], (), dimensions)
        if name == "pageview":
            others = tuple(d for d in dimensions if d != "entry")
            metrics["entries"] = (TABLES[name], (("entry", 1),), others)
    return metrics


METRICS: Final = _metrics()
# Query-facing dimension names that differ from the column they read.
_COLUMN: Final = {
    d.query: d.name for kind in wire.KINDS.values() for d in kind.dimensions if d.query_name
}
MAX_BUCKETS: Final = 10_000
MAX_LIMIT: Final = 1000
# Each filter narrows one dimension; more than every dimension a metric has is a mistake
# (or an attempt to make the store do unbounded work).
MAX_FILTERS: Final = 8
_WHEN = re.compile(r"^(\d{4}-\d{2}-\d{2})(?:[T ](\d{2})(?::00(?::00)?)?)?$")
NONE_LABEL: Final = "(none)"


@dataclass(frozen=True, slots=True)
class StatsQuery:
    metric: str
    start: int
    end: int
    interval: Interval
    by: tuple[str, ...]
    filters: tuple[tuple[str, str], ...]
    limit: int | None
    format: Format


def _parse_when(name: str, text: str, site: Site) -> int:
    match = _WHEN.match(text)
    if not match:
        raise QueryRejected(
            name, "expected an ISO date (2026-11-30) or date and hour (2026-11-30T14)"
        )
    try:
        day = datetime.strptime(match.group(1), "%Y-%m-%d").date()
    except ValueError:
        raise QueryRejected(name, "not a valid calendar date") from None
    if not 1970 <= day.year <= 9998:
        raise QueryRejected(name, "the year must be between 1970 and 9998")
    hour = int(match.group(2) or 0)
    if hour > 23:
        raise QueryRejected(name, "hour must be 00-23")
    local = datetime(day.year, day.month, day.day, hour, tzinfo=site.timezone)
    return int(local.timestamp())


def _dimension(name: str, allowed: Sequence[str], parameter: str) -> str:
    if name.startswith("prop:") and "prop" in allowed:
        prop = name[5:]
        if not re.match(wire.NAME_PATTERN, prop):
            raise QueryRejected(parameter, "prop:NAME needs a valid property name")
        return name
    if name not in allowed or name == "prop":
        choices = ", ".join("prop:NAME" if a == "prop" else a for a in allowed) or "none"
        raise QueryRejected(parameter, f"unknown dimension for this metric; choose from {choices}")
    return name


def parse_stats_query(params: Sequence[tuple[str, str]], site: Site, now: float) -> StatsQuery:
    known = {"metric", "from", "to", "interval", "by", "filter", "limit", "format"}
    single: dict[str, str] = {}
    by: list[str] = []
    raw_filters: list[str] = []
    for key, value in params:
        if key not in known:
            raise QueryRejected(key, "unknown parameter")
        if key == "by":
            by.extend(part for part in value.split(",") if part)
        elif key == "filter":
            raw_filters.append(value)
            if len(raw_filters) > MAX_FILTERS:
                raise QueryRejected("filter", f"at most {MAX_FILTERS} filters")
        elif key in single:
            raise QueryRejected(key, "given more than once")
        else:
            single[key] = value
    metric = single.get("metric", "pageviews")
    if metric not in METRICS:
        raise QueryRejected("metric", f"choose from {', '.join(METRICS)}")
    _, _, allowed = METRICS[metric]
    interval = single.get("interval", "day")
    if interval not in get_args(Interval):
        raise QueryRejected("interval", "choose from hour, day, week, month, total")
    today = datetime.fromtimestamp(now, site.timezone).date()
    end = (
        _parse_when("to", single["to"], site)
        if "to" in single
        else local_midnight(today + timedelta(days=1), site.timezone)
    )
    start = (
        _parse_when("from", single["from"], site)
        if "from" in single
        else local_midnight(today - timedelta(days=6), site.timezone)
    )
    if start >= end:
        raise QueryRejected("from", "must be before 'to' (the range is half-open)")
    # Bounded before any bucket list is built: a range of millennia must cost nothing.
    shortest_bucket = {"hour": 3600, "day": 82800, "week": 601200, "month": 28 * 86400 - 3600}
    if interval in shortest_bucket and (end - start) // shortest_bucket[interval] > MAX_BUCKETS:
        raise QueryRejected("interval", f"more than {MAX_BUCKETS} {interval} buckets in the range")
    # Released cells are read day by day, whatever the interval: the same bound in days,
    # so one query cannot hold a worker for seconds (8,000 years of days took 20 s as a
    # total, and 770 years of months 3 s).
    if (end - start) // 86400 > MAX_BUCKETS:
        raise QueryRejected("from", f"a query covers at most {MAX_BUCKETS} days")
    dims = tuple(_dimension(name, allowed, "by") for name in by)
    if len(set(dims)) != len(dims):
        raise QueryRejected("by", "a dimension is repeated")
    filters: list[tuple[str, str]] = []
    for raw in raw_filters:
        if raw.startswith("prop:"):
            name, sep, value = raw[5:].partition(":")
            dim = "prop:" + name
        else:
            dim, sep, value = raw.partition(":")
        if not sep:
            raise QueryRejected("filter", "expected dimension:value")
        filters.append((_dimension(dim, allowed, "filter"), value))
    limit: int | None = None
    if "limit" in single:
        try:
            limit = int(single["limit"])
        except ValueError:
            raise QueryRejected("limit", "must be an integer") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise QueryRejected("limit", f"must be between 1 and {MAX_LIMIT}")
    fmt = single.get("format", "json")
    if fmt not in ("json", "csv"):
        raise QueryRejected("format", "choose json or csv")
    return StatsQuery(metric, start, end, interval, dims, tuple(filters), limit, fmt)  # type: ignore[arg-type]


def _column(dim: str) -> str | tuple[str, str]:
    if dim.startswith("prop:"):
        return ("prop", dim[5:])
    return _COLUMN.get(dim, dim)


def _filter_value(dim: str, value: str) -> str | int:
    if dim == "entry":
        return 1 if value.lower() in ("1", "true", "yes") else 0
    if value == NONE_LABEL and dim.startswith("utm_"):
        return ""
    return value


@dataclass(frozen=True, slots=True)
class _Released:
    rows: list[dict[str, object]]
    totals: list[dict[str, object]]
    withheld: int


def _release(
    store: Store,
    site: Site,
    table: Table,
    filters: list[Filter],
    by: tuple[str, ...],
    interval: Interval,
    span: tuple[int, int],
    limit: int | None,
) -> _Released:
    """Query the store, then suppress each time bucket: only these numbers leave."""
    buckets: tuple[tuple[int, int], ...] = ()
    if interval in ("day", "week", "month"):
        buckets = tuple(bucket_starts(span[0], span[1], interval, site.timezone))
        if len(buckets) > MAX_BUCKETS:
            raise QueryRejected("interval", f"more than {MAX_BUCKETS} buckets")
    counter_query = CounterQuery(
        table=table,
        site=site.id,
        start=span[0],
        end=span[1],
        group_by=tuple(_column(d) for d in by),
        filters=tuple(filters),
        interval=interval,
        zone_name=site.timezone.key,
        buckets=buckets,
        resolution=_resolution(site, interval, span),
    )
    groups: dict[int | None, list[Cell]] = {}
    # Only utm_* columns store absent values (as ''); other rows skip the relabelling.
    relabel = any(d.startswith("utm_") for d in by)
    for row in store.query(counter_query):
        bucket = row[0]
        values = row[1:-1]
        if relabel:
            values = tuple(NONE_LABEL if v in ("", None) else v for v in values)
        count = row[-1]
        if isinstance(count, int) and count > 0:
            key = bucket if isinstance(bucket, int) else None
            group = groups.get(key)
            if group is None:
                group = groups[key] = []
            group.append(Cell(values, count))
    rows: list[dict[str, object]] = []
    totals: list[dict[str, object]] = []
    withheld = 0
    for bucket in sorted(groups, key=lambda b: -1 if b is None else b):
        result = suppress_group(groups[bucket], site.k, limit if by else None)
        withheld += result.withheld
        time_fields: dict[str, object] = (
            {} if bucket is None else {"time": to_local_iso(bucket, site.timezone)}
        )
        group_rows = [_row(time_fields, by, cell.key, cell.count) for cell in result.released]
        if result.other is not None and by:
            group_rows.append({**time_fields, **{d: wire.OTHER for d in by}, "count": result.other})
        # Stable: among equal counts the folded (other) row stays last.
        group_rows.sort(key=lambda row: -int(row["count"]))  # type: ignore[call-overload]
        rows.extend(group_rows)
        if result.total is not None:
            totals.append({**time_fields, "count": result.total})
    return _Released(rows, totals, withheld)


def _resolution(site: Site, interval: Interval, span: tuple[int, int]) -> Literal["h", "d"]:
    """Whole local days are read from the daily rows: the same counts, 24x fewer rows."""
    whole_days = is_local_midnight(span[0], site.timezone) and is_local_midnight(
        span[1], site.timezone
    )
    return "d" if interval != "hour" and whole_days else "h"


_CHANGED_NOTE: Final = (
    "the site's parameters changed: cells in this range may have been sealed under those "
    "in sealed_under, so the guarantee stated is the weakest of them and today's; "
    "noise_sd and threshold are today's, and each number's error is that of its own cells"
)
_UNRECORDED_NOTE: Final = (
    "some cells in this range were sealed before the collector recorded the parameters "
    "it sealed under (schema version 9; epsilon and delta null in sealed_under): they "
    "carry the guarantee of the parameters in force then, which may differ from those "
    "stated here if the site's epsilon or delta was changed before the upgrade"
)


def stated_guarantee(
    site: Site, sealed_under: Sequence[SealParams], span: tuple[int, int]
) -> dict[str, object]:
    """The privacy block of a noised answer over ``span``: the site's parameters, or,
    when time in the span may have been sealed under others (a changed epsilon or delta,
    or before they were recorded), the weakest of them, with each set of parameters and
    the time sealed under it."""
    policy = site.policy
    # Every cell an answer reads has its bucket start inside the span, and the time
    # sealed under some parameters holds the bucket starts of the cells sealed under them.
    start, end = span
    spans: dict[tuple[float, float], tuple[int, int]] = {}
    for params in sealed_under:
        if params.sealed_from < end and params.sealed_until > start:
            key = (params.epsilon, params.delta)
            lo, hi = spans.get(key, (params.sealed_from, params.sealed_until))
            spans[key] = (min(lo, params.sealed_from), max(hi, params.sealed_until))
    described = policy.describe()
    if all(key == (policy.epsilon, policy.delta) for key in spans):
        return described
    recorded = [key for key in spans if key[0] >= 0]
    listed = [
        {
            "epsilon": e if e >= 0 else None,
            "delta": d if e >= 0 else None,
            "sealed_from": to_local_iso(lo, site.timezone),
            "sealed_until": to_local_iso(hi, site.timezone),
        }
        for (e, d), (lo, hi) in sorted(spans.items())
    ]
    notes = []
    if any(key != (policy.epsilon, policy.delta) for key in recorded):
        notes.append(_CHANGED_NOTE)
    if len(recorded) < len(spans):
        notes.append(_UNRECORDED_NOTE)
    return {
        **described,
        "epsilon": max([policy.epsilon, *(e for e, _ in recorded)]),
        "delta": max([policy.delta, *(d for _, d in recorded)]),
        "sealed_under": listed,
        "parameters_note": "; ".join(notes),
    }


def weakest_statement(blocks: Sequence[dict[str, object]]) -> dict[str, object]:
    """One statement for several answers shown together (a dashboard page): the weakest
    epsilon and delta among them, every set of parameters any of them lists, and their
    notes."""
    first = blocks[0]
    if all(block == first for block in blocks) or first.get("mode") == "exact":
        return first

    def number(block: dict[str, object], name: str) -> float:
        value = block.get(name)
        return float(value) if isinstance(value, int | float) else 0.0

    weakest: dict[str, object] = max(blocks, key=lambda block: number(block, "epsilon"))
    merged = dict(weakest)
    merged["delta"] = max(number(block, "delta") for block in blocks)
    listed: list[object] = []
    notes: set[str] = set()
    for block in blocks:
        entries = block.get("sealed_under")
        if isinstance(entries, list):
            listed += [entry for entry in entries if entry not in listed]
        if "parameters_note" in block:
            notes.add(str(block["parameters_note"]))
    if listed:
        merged["sealed_under"] = listed
        merged["parameters_note"] = "; ".join(sorted(notes))
    return merged


def run_stats_query(store: Store, site: Site, query: StatsQuery, now: float) -> dict[str, object]:
    if site.policy.noise:
        return _run_noised(store, site, query, now)
    return _run_exact(store, site, query, now)


def run_route_series(
    store: Store, site: Site, query: StatsQuery, routes: Sequence[str], now: float
) -> dict[str, dict[str, object]]:
    """For each route R of ``routes``: what ``run_stats_query`` answers to ``query`` with
    ``filter=route:R`` added, the same numbers and the same privacy block.

    A dashboard draws a small chart for each of its top routes. Released cells are keyed
    by time before route, so every one-route question scans every route's cells of its
    period: on a noised site all the routes are read at once, in one scan of the route
    marginal (the one each of them alone is answered from). A site with exact counts is
    asked route by route, since what its suppression withholds depends on the question.
    """
    if query.by or any(dim == "route" for dim, _ in query.filters):
        raise ValueError("run_route_series takes a query with no breakdown and no route filter")
    if len(routes) > MAX_LIMIT:
        # Bound like a breakdown's rows, and far inside every database's parameter limit.
        raise ValueError(f"at most {MAX_LIMIT} routes at once")
    _dimension("route", METRICS[query.metric][2], "filter")
    unique = list(dict.fromkeys(routes))
    if not site.policy.noise or not unique:
        return {
            route: run_stats_query(
                store, site, replace(query, filters=(*query.filters, ("route", route))), now
            )
            for route in unique
        }
    reading = _NoisedReading(store, site, query, now)
    # The marginal a one-route question is answered from; grouped by route, its cells
    # for each route are that question's cells.
    marginal = choose_marginal(reading.kind, (), [*reading.filters, ("route", unique[0])])
    grouped = reading.read(("route",), marginal, ("route", tuple(unique)))
    answers: dict[str, dict[str, object]] = {}
    for route in unique:
        own = Answer(marginal=marginal, hourly_before_retention=grouped.hourly_before_retention)
        for bucket, cells in grouped.cells.items():
            cell = cells.get((route,))
            if cell is not None:
                own.cells[bucket] = {(): cell}
        answers[route] = reading.answer([own], [], [*reading.filters, ("route", route)])
    return answers


class _NoisedReading:
    """One question to a noised site: its filters, span and seal state, read once."""

    def __init__(self, store: Store, site: Site, query: StatsQuery, now: float) -> None:
        table, implicit, _ = METRICS[query.metric]
        self.store, self.site, self.query = store, site, query
        self.kind = table.kind
        self.filters: list[Filter] = list(implicit)
        self.filters += [(_column(d), _filter_value(d, v)) for d, v in query.filters]
        self.span = (query.start, query.end)
        self.sealed = store.seal_state(site.id)
        self.hourly_from = retention_cutoffs(site, int(now))[0]

    def read(
        self,
        columns: tuple[Column, ...],
        marginal: Marginal | None = None,
        one_of: OneOf | None = None,
    ) -> Answer:
        return read_released(
            self.store,
            self.site.id,
            self.site.timezone,
            self.site.policy,
            self.kind,
            columns,
            self.filters,
            self.query.interval,
            self.span,
            self.sealed,
            self.hourly_from,
            marginal,
            one_of,
        )

    def answer(
        self, sources: list[Answer], rows: list[dict[str, object]], visit_filters: list[Filter]
    ) -> dict[str, object]:
        """The response: totals from ``sources[0]``, ``rows`` as they are, a visits
        question's derived figures read with ``visit_filters``, and the privacy block."""
        site, query = self.site, self.query
        budget = site.policy.budget_for(self.kind)
        totals_cells = sources[0].cells
        totals = [
            {
                **_time_fields(bucket, site),
                "count": cell.count,
                "error": round(budget.error95_of(cell.variance), 1),
            }
            for bucket in sorted(totals_cells, key=lambda b: -1 if b is None else b)
            for cell in totals_cells[bucket].values()
        ]
        notes = [
            "every number is a sum of noisy cells; 'error' is the half-width of its 95 % "
            "interval. Cells whose noisy value is below the threshold are left out, so small "
            "groups are missing and sums can be lower than the whole"
        ]
        if any(answer.hourly_before_retention for answer in sources):
            notes.append(
                "hourly numbers before "
                f"{to_local_iso(self.hourly_from, site.timezone)} are no longer kept; that "
                "part of the range is answered only where whole days cover it"
            )
        response: dict[str, object] = {
            **_query_echo(site, query),
            "privacy": {},  # below: read last, so it covers whatever sealed meanwhile
            "sealed_until": {
                "hour": _iso_or_none(self.sealed.get("h"), site),
                "day": _iso_or_none(self.sealed.get("d"), site),
            },
            "rows": rows,
            "totals": totals,
            "notes": notes,
        }
        if query.metric == "visits":
            response["derived"] = _noised_visit_figures(
                self.store, site, visit_filters, self.span, self.sealed, self.hourly_from
            )
        response["privacy"] = stated_guarantee(site, self.store.seal_params(site.id), self.span)
        return response


def _run_noised(store: Store, site: Site, query: StatsQuery, now: float) -> dict[str, object]:
    reading = _NoisedReading(store, site, query, now)
    budget = site.policy.budget_for(reading.kind)
    totals_answer = reading.read(())
    rows: list[dict[str, object]] = []
    sources = [totals_answer]
    if query.by:
        rows_answer = reading.read(tuple(_column(d) for d in query.by))
        sources.append(rows_answer)
        relabel = any(d.startswith("utm_") for d in query.by)
        for bucket in sorted(rows_answer.cells, key=lambda b: -1 if b is None else b):
            time_fields = _time_fields(bucket, site)
            # Largest first; with a limit only the rows that are kept are built.
            ranked = sorted(rows_answer.cells[bucket].items(), key=lambda item: -item[1].count)
            for values, cell in ranked if query.limit is None else ranked[: query.limit]:
                if relabel:
                    values = tuple(NONE_LABEL if v in ("", None) else v for v in values)
                row = _row(time_fields, query.by, values, cell.count)
                row["error"] = round(budget.error95_of(cell.variance), 1)
                rows.append(row)
    return reading.answer(sources, rows, reading.filters)


def _query_echo(site: Site, query: StatsQuery) -> dict[str, object]:
    """The query as it was understood, in local time: every response starts with it."""
    return {
        "site": site.id,
        "metric": query.metric,
        "from": to_local_iso(query.start, site.timezone),
        "to": to_local_iso(query.end, site.timezone),
        "interval": query.interval,
        "by": list(query.by),
    }


def _time_fields(bucket: int | None, site: Site) -> dict[str, object]:
    return {} if bucket is None else {"time": to_local_iso(bucket, site.timezone)}


def _iso_or_none(ts: int | None, site: Site) -> str | None:
    return None if ts is None else to_local_iso(ts, site.timezone)


def _pages_weight(label: str) -> float:
    """A typical page count for a pages range: its middle, or its floor when open-ended."""
    lo, hi = wire.PAGES_RANGES[wire.PAGES_LABELS.index(label)]
    return float(lo) if hi is None else (lo + hi) / 2


def _noised_visit_figures(
    store: Store,
    site: Site,
    filters: list[Filter],
    span: tuple[int, int],
    sealed: dict[str, int],
    hourly_from: int,
) -> dict[str, float | None]:
    """Bounce rate and views per visit from the visits' own released pages ranges."""
    answer = read_released(
        store,
        site.id,
        site.timezone,
        site.policy,
        "visit",
        ("pages",),
        filters,
        "total",
        span,
        sealed,
        hourly_from,
    )
    by_pages = {str(values[0]): cell.count for values, cell in answer.cells.get(None, {}).items()}
    total = sum(by_pages.values())
    if total <= 0:
        return {"bounce_rate": None, "views_per_visit": None}
    bounce = by_pages.get(wire.PAGES_LABELS[0], 0) / total
    views = sum(_pages_weight(label) * n for label, n in by_pages.items()) / total
    return {"bounce_rate": round(bounce, 4), "views_per_visit": round(views, 2)}


def _run_exact(store: Store, site: Site, query: StatsQuery, now: float) -> dict[str, object]:
    table, implicit, _ = METRICS[query.metric]
    filters: list[Filter] = list(implicit)
    filters += [(_column(d), _filter_value(d, v)) for d, v in query.filters]
    span = (query.start, query.end)
    released = _release(store, site, table, filters, query.by, query.interval, span, query.limit)
    notes: list[str] = []
    hourly_from = floor_hour(now - site.hourly_seconds)
    if _resolution(site, query.interval, span) == "h" and query.start < hourly_from:
        notes.append(
            "hourly counts before "
            f"{to_local_iso(hourly_from, site.timezone)} have been rolled up into days; "
            "use whole days (from/to without an hour) and interval=day or coarser "
            "for that part of the range"
        )
    response: dict[str, object] = {
        **_query_echo(site, query),
        "privacy": site.policy.describe(),
        "k": site.k,
        "withheld": released.withheld,
        "rows": released.rows,
        "totals": released.totals,
    }
    if query.metric == "visits":
        response["derived"] = _visit_figures(store, site, filters, span)
    if notes:
        response["notes"] = notes
    return response


def _visit_figures(
    store: Store,
    site: Site,
    filters: list[Filter],
    span: tuple[int, int],
) -> dict[str, float | None]:
    """Bounce rate and views per visit over the whole range, from released numbers only.

    Each figure is None when a number it needs was withheld, so a ratio can never carry
    a count that suppression hid.
    """
    by_pages = _release(store, site, TABLES["visit"], filters, ("pages",), "total", span, None)
    total = by_pages.totals[0]["count"] if by_pages.totals else None
    single = next((r["count"] for r in by_pages.rows if r["pages"] == wire.PAGES_LABELS[0]), None)
    bounce = (
        round(int(single) / int(total), 4)
        if isinstance(total, int) and total and isinstance(single, int)
        else None
    )
    # From the visits' own pages ranges: pageviews of visits still open (or of requests
    # that were never linked) must not inflate it.
    views: float | None = None
    labelled = [r for r in by_pages.rows if r["pages"] in wire.PAGES_LABELS]
    if isinstance(total, int) and total and len(labelled) == len(by_pages.rows):
        weighted = sum(_pages_weight(str(r["pages"])) * int(r["count"]) for r in labelled)  # type: ignore[call-overload]
        views = round(weighted / total, 2)
    return {"bounce_rate": bounce, "views_per_visit": views}


def _row(
    time_fields: dict[str, object], by: Sequence[str], values: Sequence[object], count: int
) -> dict[str, object]:
    row = dict(time_fields)
    for dim, value in zip(by, values, strict=True):
        row[dim] = bool(value) if dim == "entry" else value
    row["count"] = count
    return row


def render_csv(response: dict[str, object]) -> str:
    by = list(response["by"])  # type: ignore[call-overload]
    columns = ([] if response["interval"] == "total" else ["time"]) + by + ["count"]
    if response["privacy"]["mode"] != "exact":  # type: ignore[index]
        columns.append("error")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    # Without a breakdown the answer is its totals (a noised answer has no rows then).
    for row in response["rows"] if by else response["totals"]:  # type: ignore[attr-defined]
        writer.writerow(row)
    return buffer.getvalue()
