"""Period presets: their edges in the site's zone, and the weekday-aligned comparison."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from headcount_collector.dashboard._periods import PRESETS, choose_period
from headcount_collector.errors import QueryRejected

BERLIN = ZoneInfo("Europe/Berlin")
# Wednesday 2026-03-18 15:20 in Berlin.
NOW = datetime(2026, 3, 18, 15, 20, tzinfo=BERLIN).timestamp()


def test_presets_cover_whole_local_days_and_months() -> None:
    expected = {
        "7d": ("2026-03-12T00", "2026-03-19T00", "hour"),
        "30d": ("2026-02-17", "2026-03-19", "day"),
        "month": ("2026-03-01", "2026-04-01", "day"),
        "lastmonth": ("2026-02-01", "2026-03-01", "day"),
        "12m": ("2025-04-01", "2026-04-01", "day"),
    }
    for preset, (start, end, interval) in expected.items():
        period = choose_period({"period": preset}, BERLIN, NOW, None)
        assert period.params() == [("from", start), ("to", end)], preset
        assert period.interval == interval


def test_last_24_sealed_hours_end_where_sealing_has_reached() -> None:
    sealed = int(datetime(2026, 3, 18, 11, tzinfo=BERLIN).timestamp())
    period = choose_period({"period": "24h"}, BERLIN, NOW, sealed)
    assert period.params() == [("from", "2026-03-17T11"), ("to", "2026-03-18T11")]
    assert period.hourly


@pytest.mark.parametrize("preset", [*PRESETS, "custom"])
def test_the_comparison_period_starts_on_the_same_weekday_and_does_not_overlap(
    preset: str,
) -> None:
    params = {"period": preset, "from": "2026-03-03", "to": "2026-03-12"}
    period = choose_period(params, BERLIN, NOW, None)
    before = period.previous()
    assert before.start.weekday() == period.start.weekday()
    assert before.end <= period.start + timedelta(hours=1)  # DST may shift by an hour
    assert before.end - before.start == period.end - period.start


def test_a_custom_range_includes_its_last_day_and_is_hourly_up_to_a_week() -> None:
    short = choose_period(
        {"period": "custom", "from": "2026-03-01", "to": "2026-03-07"}, BERLIN, NOW, None
    )
    assert short.params() == [("from", "2026-03-01T00"), ("to", "2026-03-08T00")]
    longer = choose_period(
        {"period": "custom", "from": "2026-03-01", "to": "2026-03-08"}, BERLIN, NOW, None
    )
    assert longer.params() == [("from", "2026-03-01"), ("to", "2026-03-09")]


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"period": "week"}, "period"),
        ({"period": "custom", "from": "2026-03-01"}, "to"),
        ({"period": "custom", "from": "03/01/2026", "to": "2026-03-02"}, "from"),
        ({"period": "custom", "from": "2026-03-02", "to": "2026-03-01"}, "to"),
        ({"period": "custom", "from": "9999-12-01", "to": "9999-12-31"}, "from"),
        ({"period": "custom", "from": "2000-01-01", "to": "2026-01-01"}, "to"),
    ],
)
def test_bad_periods_name_the_parameter(params: dict[str, str], parameter: str) -> None:
    with pytest.raises(QueryRejected) as caught:
        choose_period(params, BERLIN, NOW, None)
    assert caught.value.parameter == parameter
