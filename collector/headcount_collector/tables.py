"""How each record kind is stored: one counter table per kind, columns derived from the wire.

Every table leads with ``site`` (so it partitions or distributes by site), then the
resolution (``h`` hourly, ``d`` daily roll-up), then the bucket start in UTC seconds,
then the kind's dimensions. Absent optional values are stored as '' so they take part in
the primary key.
"""

from __future__ import annotations

from dataclasses import dataclass

from headcount import wire

__all__ = ["TABLES", "Table", "table_for"]


@dataclass(frozen=True, slots=True)
class Table:
    kind: str
    name: str
    dimensions: tuple[str, ...]

    def key_of(self, record: wire.Record) -> tuple[str | int, ...]:
        """The dimension values of ``record`` in column order, ready for storage."""
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
    "bot": Table("bot", "hc_bot", ()),
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
