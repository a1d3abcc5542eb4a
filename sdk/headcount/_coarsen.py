"""Field coarsening that is not about routes, referrers or bots: each a cheap lookup."""

from __future__ import annotations

import re
from bisect import bisect_right
from typing import Final
from urllib.parse import unquote, unquote_plus

from headcount._caches import CleanOnlyCache
from headcount._shapes import campaign_slug
from headcount.wire import (
    LATENCY_EDGES_MS,
    LATENCY_LABELS,
    LATENCY_UNKNOWN,
    MAX_SLUG_LENGTH,
    METHODS,
    SLUG_PATTERN,
    looks_like_identifier,
)

__all__ = [
    "HTML_BY_CONTENT_TYPE",
    "LATENCY_EDGES_S",
    "METHOD_BY_NAME",
    "STATUS_CLASS_BY_CODE",
    "UTM_NONE",
    "is_html",
    "is_prefetch",
    "latency_of",
    "method_of",
    "parse_utm",
    "slug",
]

# Lookup tables for the hot path, which inlines the lookups and falls back to the
# functions below only for unusual input.
METHOD_BY_NAME: Final = {m: m for m in METHODS if m != "OTHER"}
# A status outside 100-599 is the server misbehaving: the hot path counts it as 5xx.
STATUS_CLASS_BY_CODE: Final = {code: f"{code // 100}xx" for code in range(100, 600)}
LATENCY_EDGES_S: Final = tuple(edge / 1000 for edge in LATENCY_EDGES_MS)
_SLUG: Final = re.compile(SLUG_PATTERN)
_HTML_TYPES: Final = ("text/html", "application/xhtml+xml")
# Enough for any real campaign link; the rest of a huge query string is never looked at.
_MAX_QUERY_SCAN: Final = 4096
# A percent-encoded campaign name (each character up to 9 bytes as %XX%XX%XX) with a
# Mailchimp id in front; anything longer cannot clean down to a 64-character slug.
_MAX_RAW_UTM: Final = 768

# A parameter counts only at the start of a query string or after an '&': never inside
# another parameter's value (ref=utm_source=x) or name (xutm_source=x).
_UTM_PARAMETER: Final = re.compile(r"(?:^|&)utm_(source|medium|campaign)=([^&]*)")

UtmValues = tuple[str | None, str | None, str | None]
UTM_NONE: Final[UtmValues] = (None, None, None)


def method_of(method: str) -> str:
    """The wire method: a standard method in uppercase, anything else "OTHER"."""
    known = METHOD_BY_NAME.get(method)
    if known is not None:
        return known
    if not isinstance(method, str) or len(method) > 16:
        return "OTHER"
    return METHOD_BY_NAME.get(method.upper(), "OTHER")


def latency_of(elapsed_seconds: float) -> str:
    """The wire latency label of a request that took ``elapsed_seconds``: each range
    includes its lower edge; the hot path inlines the bisection for ordinary values."""
    if elapsed_seconds != elapsed_seconds:  # NaN: not measured (an access log without it)
        return LATENCY_UNKNOWN
    if not elapsed_seconds >= 0:  # negative: a broken clock, not a fast request
        return LATENCY_LABELS[0]
    return LATENCY_LABELS[bisect_right(LATENCY_EDGES_S, elapsed_seconds)]


# Content type -> whether it is HTML. The app chooses its content types, so there are
# few; a full cache starts over (random multipart boundaries must not keep the common
# types out for good). The hot path reads it inline and calls is_html on a miss.
HTML_BY_CONTENT_TYPE: Final[dict[str | None, bool]] = {None: False}
_MAX_CONTENT_TYPES: Final = 256


def is_html(content_type: str | None) -> bool:
    """True for an HTML document response (``text/html``, ``application/xhtml+xml``)."""
    if content_type is None:
        return False
    html = content_type[:64].lstrip().lower().startswith(_HTML_TYPES)
    # Cached: an app answers with a handful of distinct content types.
    if len(HTML_BY_CONTENT_TYPE) >= _MAX_CONTENT_TYPES:
        HTML_BY_CONTENT_TYPE.clear()
        HTML_BY_CONTENT_TYPE[None] = False
    HTML_BY_CONTENT_TYPE[content_type] = html
    return html


def is_prefetch(purpose: str | None, sec_fetch_dest: str | None) -> bool:
    """A speculative load or a subresource/frame fetch: not a navigation to count."""
    if purpose is not None and "prefetch" in purpose[:64].lower():
        return True
    return sec_fetch_dest is not None and sec_fetch_dest.strip().lower() != "document"


def slug(value: str) -> str | None:
    """An event property value lowercased, if it is a short slug and no identifier.

    Property values are matched against the site's declared values, so they are not
    cleaned the way campaign names are (see ``_utm_value``).
    """
    value = value.strip().lower()
    if len(value) > MAX_SLUG_LENGTH or not _SLUG.fullmatch(value) or looks_like_identifier(value):
        return None
    return value


_PERCENT_ESCAPE: Final = re.compile(r"%[0-9A-Fa-f]{2}")


def _utm_value(raw: str) -> str | None:
    # A raw '+' is a space (form encoding, as Mailchimp writes "My+Q3+Newsletter"); only
    # a '%2B' is a plus sign, which a campaign slug never holds (name+tag is a recipient).
    try:
        value = unquote_plus(raw, errors="strict")
        if _PERCENT_ESCAPE.search(value):
            # Encoded twice (jdoe%2540example.com), as some mail tools do: decoded once
            # more, or the escape's '%' would be dropped as decoration and the e-mail
            # address would read as a domain (jdoe40example.com). Thrice is refused.
            value = unquote(value, errors="strict")
            if _PERCENT_ESCAPE.search(value):
                return None
        return campaign_slug(value)
    except UnicodeDecodeError:
        return None


# Per raw value: campaign links repeat the same few values all day. Only values that are
# campaign names are kept; one that names a recipient is worked out again each time.
_UTM_VALUES: Final = CleanOnlyCache[str, "str | None"](
    _utm_value, lambda _, value: value is not None, maxsize=1024
)
_known_utm_value: Final = _UTM_VALUES.get


def parse_utm(query_string: str | None) -> UtmValues:
    """utm_source / utm_medium / utm_campaign as slugs; no other parameter is ever read.

    Values are cleaned into campaign slugs (case-folded, decoded, spaces as '-');
    a value that names a recipient, or is longer than 64 characters once cleaned, is
    dropped. The first occurrence of a parameter wins, even when its value is dropped.
    """
    if not query_string or "utm_" not in query_string:
        return UTM_NONE
    if len(query_string) > _MAX_QUERY_SCAN:
        query_string = query_string[:_MAX_QUERY_SCAN]
    # One regex scan finds all three: 0.8-0.9x the time of a str.find and slices per name
    # (docs/benchmarks.md), on every pageview that comes from a campaign link.
    found = _UTM_PARAMETER.findall(query_string)
    if not found:
        return UTM_NONE
    # None until a parameter is seen; an empty value is a value, and the first one wins.
    source: str | None = None
    medium: str | None = None
    campaign: str | None = None
    for name, raw in found:
        if name == "source":
            if source is None:
                source = raw
        elif name == "medium":
            if medium is None:
                medium = raw
        elif campaign is None:
            campaign = raw
    return (_utm_slug(source), _utm_slug(medium), _utm_slug(campaign))


def _utm_slug(raw: str | None) -> str | None:
    if raw is None or len(raw) > _MAX_RAW_UTM:
        return None
    return _known_utm_value(raw) or _UTM_VALUES(raw)
