"""The stored form of each record kind follows the registry in ``wire.KINDS``."""

from __future__ import annotations

import pytest

from headcount import wire
from headcount_collector.release.catalogue import Marginal
from headcount_collector.tables import RECORD_KEYS, TABLES, spilled_key

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
    wire.Bot(hour=0, category="search", n=2),
    wire.Visit(
        hour=0, route="/", duration=wire.DURATION_LABELS[2], pages=wire.PAGES_LABELS[3], n=4
    ),
]


def test_every_record_type_has_a_table_and_a_key_function() -> None:
    assert set(RECORD_KEYS) == set(wire.RECORD_TYPES)
    assert {kind for kind, _ in RECORD_KEYS.values()} == set(TABLES) == set(wire.KINDS)


def test_every_struct_field_but_hour_and_count_is_a_dimension() -> None:
    for kind in wire.KINDS.values():
        fields = set(kind.struct.__struct_fields__) - {"hour", "n"}
        assert fields == set(kind.dimension_names), kind.name


@pytest.mark.parametrize("record", SAMPLES, ids=lambda r: type(r).__name__)
def test_stored_key_is_each_dimension_in_column_order(record: wire.Record) -> None:
    kind, key_of = RECORD_KEYS[type(record)]
    key = key_of(record)
    assert len(key) == len(TABLES[kind].dimensions)
    stored = dict(zip(TABLES[kind].dimensions, key, strict=True))
    for column, value in stored.items():
        original = getattr(record, column)
        if original is None:
            assert value == ""  # absent: '' so it takes part in the primary key
        elif isinstance(original, bool):
            assert value == int(original)
            assert column in TABLES[kind].integer
        elif isinstance(original, dict):
            assert value == '{"b":"x","plan":"pro"}'  # sorted, compact: one row per set
        else:
            assert value == original


def test_a_spilled_pageview_keeps_what_is_not_open_ended() -> None:
    _, key_of = RECORD_KEYS[wire.Pageview]
    direct, from_news = key_of(SAMPLES[0]), key_of(SAMPLES[1])
    assert spilled_key("pageview", direct) == ("(other)", "(direct)", "", "", "", 1)
    assert spilled_key("pageview", from_news) == ("(other)", "(other)", "", "", "", 0)


def test_a_spilled_event_keeps_its_name() -> None:
    _, key_of = RECORD_KEYS[wire.Event]
    assert spilled_key("event", key_of(SAMPLES[3])) == ("signup", "(other)", "{}")


def test_bots_have_nothing_to_spill() -> None:
    _, key_of = RECORD_KEYS[wire.Bot]
    assert spilled_key("bot", key_of(SAMPLES[4])) is None


def test_a_released_marginal_names_only_declared_dimensions() -> None:
    with pytest.raises(ValueError, match="no dimension referer"):
        Marginal("pageview", ("referer",))
