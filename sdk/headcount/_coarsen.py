"""Field coarsening that is not about routes, referrers or bots: each a cheap lookup."""

from __future__ import annotations

import re
from bisect import bisect_right
from typing import Final
from urllib.parse import unquote_plus

from headcount.wire import (
    LATENCY_EDGES_MS,
    LATENCY_LABELS,
    MAX_SLUG_LENGTH,
    METHODS,
    SLUG_PATTERN,
    looks_like_identifier,
)

__all__ = [
    "UTM_NONE",
    "is_html",
    "is_prefetch",
    "latency_of",
    "method_of",
    "parse_utm",
    "slug",
    "status_class_of",
]

_METHODS: Final = {m: m for m in METHODS if m != "OTHER"}
_STATUS_CLASSES: Final = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}
_LATENCY_EDGES_S: Final = tuple(edge / 1000 for edge in LATENCY_EDGES_MS)
_SLUG: Final = re.compile(SLUG_PATTERN)
_HTML_TYPES: Final = ("text/html", "application/xhtml+xml")
_UTM_FIELDS: Final = ("utm_source", "utm_medium", "utm_campaign")
# Enough for any real campaign link; the rest of a huge query string is never looked at.
_MAX_QUERY_SCAN: Final = 4096

UtmValues = tuple[str | None, str | None, str | None]
UTM_NONE: Final[UtmValues] = (None, None, None)


def method_of(method: str) -> str:
    """The wire method: a standard method in uppercase, anything else "OTHER"."""
    known = _METHODS.get(method)
    if known is not None:
        return known
    if not isinstance(method, str) or len(method) > 16:
        return "OTHER"
    return _METHODS.get(method.upper(), "OTHER")


def status_class_of(status: int) -> str:
    """``2xx`` etc.; a status outside 100-599 is the server misbehaving, so ``5xx``."""
    return _STATUS_CLASSES.get(status // 100, "5xx") if 100 <= status <= 599 else "5xx"


def latency_of(elapsed_seconds: float) -> str:
    """The wire latency label; same ranges as ``wire.latency_label`` without the loop."""
    if not elapsed_seconds >= 0:  # negative or NaN: a broken clock, not a fast request
        return LATENCY_LABELS[0]
    return LATENCY_LABELS[bisect_right(_LATENCY_EDGES_S, elapsed_seconds)]


def is_html(content_type: str | None) -> bool:
    return content_type is not None and content_type[:32].lstrip().lower().startswith(_HTML_TYPES)


def is_prefetch(purpose: str | None, sec_fetch_dest: str | None) -> bool:
    """A speculative load or a subresource/frame fetch: not a navigation to count."""
    if purpose is not None and "prefetch" in purpose[:64].lower():
        return True
    return sec_fetch_dest is not None and sec_fetch_dest.strip().lower() != "document"


def slug(value: str) -> str | None:
    """``value`` lowercased if it is a short slug that does not look like an identifier."""
    value = value.strip().lower()
    if len(value) > MAX_SLUG_LENGTH or not _SLUG.match(value) or looks_like_identifier(value):
        return None
    return value


def parse_utm(query_string: str | None) -> UtmValues:
    """utm_source / utm_medium / utm_campaign as slugs; no other parameter is ever read."""
    if not query_string or "utm_" not in query_string:
        return UTM_NONE
    found: dict[str, str | None] = {}
    for part in query_string[:_MAX_QUERY_SCAN].split("&"):
        name, _, raw = part.partition("=")
        if name in _UTM_FIELDS and name not in found:
            try:
                found[name] = slug(unquote_plus(raw, errors="strict"))
            except UnicodeDecodeError:
                found[name] = None
    if not found:
        return UTM_NONE
    return (found.get("utm_source"), found.get("utm_medium"), found.get("utm_campaign"))
