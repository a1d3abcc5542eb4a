"""How each record kind is stored: one counter table per kind, columns derived from the wire.

Every table leads with ``site`` (so it partitions or distributes by site), then the
resolution (``h`` hourly, ``d`` daily roll-up), then the bucket start in UTC seconds,
then the kind's dimensions. Absent optional values are stored as '' so they take part in
the primary key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from headcount import wire

__all__ = ["RECORD_KEYS", "TABLES", "Table", "encode_props", "table_for"]


@dataclass(frozen=True, slots=True)
class Table:
    kind: str
    name: str
    dimensions: tuple[str, ...]

    def key_of(self, record: wire.Record) -> tuple[str | int, ...]:
        """The dimension values of ``record`` in column order, ready for storage.

        The reference definition; ingest uses the equivalent ``RECORD_KEYS`` functions,
        which a test holds equal to this."""
        values: list[str | int] = []
        for column in self.dimensions:
            value = getattr(record, column)
            if value is None:
                values.append("")
            elif isinstance(value, bool):
                values.append(int(value))
            elif isinstance(value, dict):
                values.append(encode_props(value))
            else:
                values.append(value)
        return tuple(values)


def encode_props(props: dict[str, str]) -> str:
    # Canonical (sorted, compact) so equal property sets always share one counter row.
    return "{" + ",".join(f'"{k}":"{props[k]}"' for k in sorted(props)) + "}"


TABLES: dict[str, Table] = {
    "pageview": Table(
        "pageview",
        "hc_pageview",
        ("route", "referrer", "utm_source", "utm_medium", "utm_campaign", "entry"),
    ),
    "request": Table("request", "hc_request", ("route", "method", "status", "latency")),
    "event": Table("event", "hc_event", ("name", "route", "props")),
    "bot": Table("bot", "hc_bot", ("category",)),
    "visit": Table("visit", "hc_visit", ("route", "duration", "pages")),
}

_TABLE_BY_TYPE = {
    wire.Pageview: TABLES["pageview"],
    wire.Request: TABLES["request"],
    wire.Event: TABLES["event"],
    wire.Bot: TABLES["bot"],
    wire.Visit: TABLES["visit"],
}


def table_for(record: wire.Record) -> Table:
    return _TABLE_BY_TYPE[type(record)]


KeyFunction = Callable[[wire.Record], tuple[str | int, ...]]


def _pageview_key(r: wire.Pageview) -> tuple[str | int, ...]:
    return (
        r.route,
        r.referrer,
        r.utm_source or "",
        r.utm_medium or "",
        r.utm_campaign or "",
        1 if r.entry else 0,
    )


def _request_key(r: wire.Request) -> tuple[str | int, ...]:
    return (r.route, r.method, r.status, r.latency)


def _event_key(r: wire.Event) -> tuple[str | int, ...]:
    return (r.name, r.route, encode_props(r.props))


def _bot_key(r: wire.Bot) -> tuple[str | int, ...]:
    return (r.category,)


def _visit_key(r: wire.Visit) -> tuple[str | int, ...]:
    return (r.route, r.duration, r.pages)


# The hot loop of ingest: per record type, its table's kind and a direct key function
# (a per-column getattr loop costs more than decoding the record did).
RECORD_KEYS: dict[type, tuple[str, KeyFunction]] = {
    wire.Pageview: ("pageview", _pageview_key),  # type: ignore[dict-item]
    wire.Request: ("request", _request_key),  # type: ignore[dict-item]
    wire.Event: ("event", _event_key),  # type: ignore[dict-item]
    wire.Bot: ("bot", _bot_key),  # type: ignore[dict-item]
    wire.Visit: ("visit", _visit_key),  # type: ignore[dict-item]
}
