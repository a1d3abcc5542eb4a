"""Period presets and the comparison period, all from GET parameters.

A period becomes the ``from``/``to``/``interval`` parameters of ``/v1/stats``, so every
number on a page is the answer to a query a token holder could send to the API.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from headcount_collector.errors import QueryRejected

__all__ = ["PRESETS", "Period", "choose_period"]

PRESETS: Final = {
    "24h": "Last 24 sealed hours",
    "7d": "7 days",
    "30d": "30 days",
    "month": "This month",
    "lastmonth": "Last month",
    "12m": "12 months",
}
# Custom ranges longer than this are refused: the hourly/daily chart must stay bounded.
MAX_CUSTOM_DAYS: Final = 800


@dataclass(frozen=True, slots=True)
class Period:
    preset: str
    start: datetime  # local, inclusive
    end: datetime  # local, exclusive
    hourly: bool

    @property
    def interval(self) -> str:
        return "hour" if self.hourly else "day"

    def params(self) -> list[tuple[str, str]]:
        return [("from", _when(self.start, self.hourly)), ("to", _when(self.end, self.hourly))]

    def previous(self) -> Period:
        """The period just before, moved back by whole weeks so weekdays line up."""
        days = (self.end - self.start).total_seconds() / 86400
        shift = timedelta(days=7 * max(1, math.ceil(days / 7)))
        return Period(self.preset, self.start - shift, self.end - shift, self.hourly)

    @property
    def label(self) -> str:
        last = self.end - (timedelta(hours=1) if self.hourly else timedelta(days=1))
        fmt = "%Y-%m-%d %H:00" if self.hourly else "%Y-%m-%d"
        return f"{self.start.strftime(fmt)} to {last.strftime(fmt)}"


def _when(moment: datetime, hourly: bool) -> str:
    return moment.strftime("%Y-%m-%dT%H" if hourly else "%Y-%m-%d")


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=zone)


def _month_start(day: date, back: int = 0) -> date:
    index = day.year * 12 + day.month - 1 - back
    return date(index // 12, index % 12 + 1, 1)


def _parse_day(name: str, text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise QueryRejected(name, "expected a date as YYYY-MM-DD") from None


def choose_period(
    params: dict[str, str], zone: ZoneInfo, now: float, sealed_hour: int | None
) -> Period:
    """The period the page asks for; ``sealed_hour`` ends "last 24 sealed hours"."""
    preset = params.get("period", "7d")
    today = datetime.fromtimestamp(now, zone).date()
    if preset == "24h":
        last = sealed_hour if sealed_hour is not None else int(now) // 3600 * 3600
        end = datetime.fromtimestamp(last, UTC).astimezone(zone)
        return Period(preset, end - timedelta(hours=24), end, hourly=True)
    if preset == "7d":
        start = today - timedelta(days=6)
        return Period(preset, _midnight(start, zone), _midnight(today + timedelta(1), zone), True)
    if preset == "30d":
        start = today - timedelta(days=29)
        return Period(preset, _midnight(start, zone), _midnight(today + timedelta(1), zone), False)
    if preset == "month":
        first = _month_start(today)
        return Period(
            preset, _midnight(first, zone), _midnight(_month_start(today, -1), zone), False
        )
    if preset == "lastmonth":
        first = _month_start(today, 1)
        return Period(preset, _midnight(first, zone), _midnight(_month_start(today), zone), False)
    if preset == "12m":
        first = _month_start(today, 11)
        return Period(
            preset, _midnight(first, zone), _midnight(_month_start(today, -1), zone), False
        )
    if preset == "custom":
        first_day = _parse_day("from", params.get("from", ""))
        last_day = _parse_day("to", params.get("to", ""))
        if last_day < first_day:
            raise QueryRejected("to", "must not be before 'from'")
        if (last_day - first_day).days >= MAX_CUSTOM_DAYS:
            raise QueryRejected("to", f"a custom range is at most {MAX_CUSTOM_DAYS} days")
        if first_day.year < 1970 or last_day.year > 9997:
            raise QueryRejected("from", "the year must be between 1970 and 9998")
        hourly = (last_day - first_day).days < 7
        return Period(
            preset,
            _midnight(first_day, zone),
            _midnight(last_day + timedelta(days=1), zone),
            hourly,
        )
    raise QueryRejected("period", f"choose from {', '.join([*PRESETS, 'custom'])}")
