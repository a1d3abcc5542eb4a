"""One access-log line, parsed: the raw fields an integration would have seen, and times."""

from __future__ import annotations

import calendar
import math
import re
from datetime import datetime
from functools import lru_cache
from typing import Final

__all__ = ["LogLine", "parse_iso_time", "parse_local_time", "parse_seconds", "parse_unix_time"]


class LogLine:
    """What a parser read from one line. Lives only until it is turned into a RequestInfo."""

    __slots__ = (
        "client_addr",
        "content_type",
        "elapsed",
        "forwarded_for",
        "host",
        "method",
        "referer",
        "status",
        "target",
        "time",
        "user_agent",
    )

    def __init__(
        self,
        time: float,
        method: str,
        target: str,
        status: int,
        client_addr: str | None = None,
        forwarded_for: str | None = None,
        referer: str | None = None,
        user_agent: str | None = None,
        content_type: str | None = None,
        elapsed: float | None = None,
        host: str | None = None,
    ) -> None:
        self.time = time  # Unix seconds, UTC
        self.method = method
        self.target = target  # path and query, as in the request line
        self.status = status
        self.client_addr = client_addr
        self.forwarded_for = forwarded_for
        self.referer = referer
        self.user_agent = user_agent
        self.content_type = content_type
        self.elapsed = elapsed  # seconds; None when the log does not say
        self.host = host


_MONTHS: Final = {
    name: index
    for index, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}
_LOCAL: Final = re.compile(
    r"(\d{1,2})/([A-Z][a-z]{2})/(\d{4}):(\d{2}):(\d{2}):(\d{2})(?:\.\d+)? ([+-])(\d{2})(\d{2})"
)


def parse_local_time(text: str) -> float:
    """``10/Oct/2000:13:55:36 -0700`` (nginx ``$time_local``, Apache ``%t``) as Unix seconds."""
    text = text.strip("[]")
    if len(text) == 26 and text[14] == ":" and text[17] == ":":
        # Lines of one hour share everything but minutes and seconds: parse that once.
        minutes, seconds = text[15:17], text[18:20]
        if minutes.isdigit() and seconds.isdigit() and minutes < "60" and seconds < "61":
            return _hour_start(text[:14] + text[20:]) + int(minutes) * 60 + int(seconds)
    return _parse_local_time(text)


@lru_cache(maxsize=1024)
def _hour_start(hour_and_zone: str) -> float:
    return _parse_local_time(hour_and_zone[:14] + ":00:00" + hour_and_zone[14:])


# Times a batch can carry: hours from 1970 (the wire's hours are never negative) to the
# end of 9998, as the collector's queries allow. A line outside is bad, not a crash.
_LAST_SECOND: Final = 253_370_764_799


def checked_time(seconds: float) -> float:
    """``seconds`` if it is a time a batch can carry, else ValueError (NaN included)."""
    if not 0 <= seconds <= _LAST_SECOND:
        raise ValueError("time is before 1970 or after 9998")
    return seconds


def _parse_local_time(text: str) -> float:
    match = _LOCAL.fullmatch(text)
    if match is None:
        raise ValueError("time is not in the dd/Mon/yyyy:hh:mm:ss +zzzz form")
    day, month_name, year, hour, minute, second, sign, off_h, off_m = match.groups()
    month = _MONTHS.get(month_name)
    if month is None:
        raise ValueError("unknown month in time")
    stamp = calendar.timegm(
        (int(year), month, int(day), int(hour), int(minute), int(second), 0, 0, 0)
    )
    offset = (int(off_h) * 3600 + int(off_m) * 60) * (1 if sign == "+" else -1)
    return checked_time(float(stamp - offset))


@lru_cache(maxsize=4096)
def parse_iso_time(text: str) -> float:
    """An ISO 8601 time with its zone (nginx ``$time_iso8601``, Caddy's ``ts`` as text)."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        # Never the text itself: in a misaligned format it may be an address or agent.
        raise ValueError("time is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise ValueError("time has no time zone")
    return checked_time(moment.timestamp())


def _checked_seconds(total: float) -> float:
    if not total >= 0:
        raise ValueError("negative request time")
    if total == math.inf:
        raise ValueError("the request time is not a finite number")
    return total


def parse_seconds(text: str, scale: float = 1.0) -> float | None:
    """A duration field: ``0.123`` (seconds), or ``%D`` microseconds with ``scale``;
    ``-`` (nginx for "not measured") gives None."""
    if not text or text == "-":
        return None
    if "," not in text:
        try:
            total = float(text)
        except ValueError:
            raise ValueError("the request time is not a number") from None
        return _checked_seconds(total) * scale
    # Behind an upstream chain nginx writes "0.010, 0.020": the request took the sum.
    try:
        total = sum(float(part) for part in text.split(","))
    except ValueError:
        raise ValueError("the request time is not a number") from None
    return _checked_seconds(total) * scale


def parse_unix_time(text: str) -> float:
    """nginx ``$msec``: Unix seconds with milliseconds."""
    try:
        seconds = float(text)
    except ValueError:
        raise ValueError("the time is not Unix seconds") from None
    return checked_time(seconds)
