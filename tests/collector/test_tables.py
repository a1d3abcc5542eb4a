"""The fast per-kind key functions used at ingest agree with the declared table columns."""

from __future__ import annotations

from headcount import wire
from headcount_collector.tables import RECORD_KEYS, TABLES, table_for

SAMPLES: list[wire.Record] = [
    wire.Pageview(hour=3600, route="/a", referrer="(direct)", entry=True, n=2),
    wire.Pageview(
        hour=3600,
        route="/b/{id}",
        referrer="news.example",
        entry=False,
        n=1,
        utm_source="mail",
        utm_medium="email",
        utm_campaign="launch",
    ),
    wire.Request(
        hour=7200,
        route="(unmatched)",
        method="POST",
        status="4xx",
        latency=wire.LATENCY_LABELS[3],
        n=5,
    ),
    wire.Event(hour=7200, name="signup", route="/join", props={"plan": "pro", "b": "x"}, n=1),
    wire.Bot(hour=0, n=9),
    wire.Visit(
        hour=0, route="/", duration=wire.DURATION_LABELS[2], pages=wire.PAGES_LABELS[3], n=4
    ),
]


def test_every_record_type_has_a_key_function() -> None:
    assert set(RECORD_KEYS) == set(wire.RECORD_TYPES)
    assert {kind for kind, _ in RECORD_KEYS.values()} == set(TABLES)


def test_key_functions_match_the_reference_column_order() -> None:
    for record in SAMPLES:
        kind, key_of = RECORD_KEYS[type(record)]
        table = table_for(record)
        assert kind == table.kind
        assert key_of(record) == table.key_of(record)
        assert len(key_of(record)) == len(table.dimensions)
