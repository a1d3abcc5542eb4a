"""The wire schema: the only shape of data that ever leaves an instrumented app.

Declared once, here. The SDK encodes with it and the collector decodes with it, so the
two cannot drift apart; ``/v1/schema``, ``/openapi.json`` and the privacy page are
generated from these same declarations. ``KINDS`` registers each record kind with its
dimensions in order, how they fold into (other) and how they are stored: the SDK's count
keys and records, and the collector's tables, key functions and metrics derive from it.

Every field is already coarse: an hour rather than a timestamp, a range label rather
than a duration, a route template rather than a path, a domain rather than a URL.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Final, Literal, cast

import msgspec

from headcount import _caches, _shapes

__all__ = [
    "BOT_CATEGORIES",
    "DURATION_LABELS",
    "FORBIDDEN_ROUTE_CHARS",
    "INGEST_PATH",
    "KINDS",
    "KIND_OF_TYPE",
    "LATENCY_EDGES_MS",
    "LATENCY_LABELS",
    "LATENCY_UNKNOWN",
    "MAX_BODY_BYTES",
    "MAX_COUNT",
    "MAX_RECORDS",
    "MAX_ROUTE_LENGTH",
    "METHODS",
    "NAME_PATTERN",
    "OTHER",
    "PAGES_LABELS",
    "RECORD_TYPES",
    "REFERRER_SPECIAL",
    "ROUTE_SPECIAL",
    "SCHEMA_VERSION",
    "SLUG_PATTERN",
    "STATUS_CLASSES",
    "UNMATCHED",
    "VISIT_DURATION_EDGES_S",
    "Batch",
    "Bot",
    "Dimension",
    "Event",
    "Pageview",
    "Record",
    "RecordKind",
    "Request",
    "Visit",
    "duration_label",
    "encode_props",
    "looks_like_identifier",
    "pages_label",
    "record_problem",
    "referrer_problem",
    "route_problem",
    "schema_document",
    "slug_problem",
]

SCHEMA_VERSION: Final = 1
INGEST_PATH: Final = "/v1/ingest"

MAX_RECORDS: Final = 10_000
MAX_BODY_BYTES: Final = 1024 * 1024
MAX_ROUTE_LENGTH: Final = _shapes.MAX_ROUTE_LENGTH
MAX_SLUG_LENGTH: Final = _shapes.MAX_SLUG_LENGTH
# The most one record may count: a single key in one send window (at most an hour) of
# one sender process. 10 million is ~2,800 requests a second to one route for a whole
# hour from one process, beyond what a Python worker serves.
MAX_COUNT: Final = 10_000_000
MAX_NAME_LENGTH: Final = 64
MAX_PROPS: Final = 16

UNMATCHED: Final = "(unmatched)"
OTHER: Final = "(other)"
DIRECT: Final = "(direct)"
INTERNAL: Final = "(internal)"
ROUTE_SPECIAL: Final = (UNMATCHED, OTHER)
REFERRER_SPECIAL: Final = (DIRECT, INTERNAL, OTHER)

METHODS: Final = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "OTHER")
STATUS_CLASSES: Final = ("1xx", "2xx", "3xx", "4xx", "5xx")
# Coarse kinds of bot: search engines, AI crawlers and agents, social link previews,
# monitors and uptime checks, and everything else (scrapers, SEO tools, HTTP libraries).
BOT_CATEGORIES: Final = ("search", "ai", "social", "monitor", "other")

# Request latency ranges. The label of a range names its lower and upper edge, so a
# reader never has to know the edge list to interpret one.
LATENCY_EDGES_MS: Final = (10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
# Visit duration ranges (seconds). A visit of one pageview has no duration at all and
# gets its own label, "0s", so bounce visits never blur into short multi-page ones.
VISIT_DURATION_EDGES_S: Final = (10, 30, 60, 120, 300, 600, 1800)
# Pages per visit: (lowest, highest) inclusive; None means unbounded.
PAGES_RANGES: Final = ((1, 1), (2, 2), (3, 4), (5, 9), (10, None))


def _format_ms(ms: int) -> str:
    if ms < 1000:
        return f"{ms}ms"
    seconds = ms / 1000
    return f"{seconds:g}s"


def _format_s(s: int) -> str:
    if s < 60:
        return f"{s}s"
    return f"{s // 60}m"


def _range_labels(edges: Sequence[int], fmt: Callable[[int], str]) -> tuple[str, ...]:
    labels = [f"<{fmt(edges[0])}"]
    labels += [f"{fmt(lo)}-{fmt(hi)}" for lo, hi in itertools.pairwise(edges)]
    labels.append(f">={fmt(edges[-1])}")
    return tuple(labels)


# "unknown": a request whose time nobody measured (an imported access log without a
# request time). Last, so a range's index is still its position among the edges.
LATENCY_UNKNOWN: Final = "unknown"
LATENCY_LABELS: Final = (*_range_labels(LATENCY_EDGES_MS, _format_ms), LATENCY_UNKNOWN)
DURATION_LABELS: Final = ("0s", *_range_labels(VISIT_DURATION_EDGES_S, _format_s))
PAGES_LABELS: Final = tuple(
    str(lo) if hi == lo else (f"{lo}+" if hi is None else f"{lo}-{hi}") for lo, hi in PAGES_RANGES
)


def duration_label(seconds: float, pages: int) -> str:
    """The visit-duration range of a visit that lasted ``seconds`` over ``pages`` pages."""
    if pages <= 1:
        return DURATION_LABELS[0]
    for edge, label in zip(VISIT_DURATION_EDGES_S, DURATION_LABELS[1:], strict=False):
        if seconds < edge:
            return label
    return DURATION_LABELS[-1]


def pages_label(pages: int) -> str:
    for (lo, hi), label in zip(PAGES_RANGES, PAGES_LABELS, strict=True):
        if pages >= lo and (hi is None or pages <= hi):
            return label
    return PAGES_LABELS[0]


if TYPE_CHECKING:
    LatencyLabel = str
    DurationLabel = str
    PagesLabel = str
    Method = str
    StatusClass = str
    BotCategory = str
else:
    LatencyLabel = Literal[LATENCY_LABELS]
    DurationLabel = Literal[DURATION_LABELS]
    PagesLabel = Literal[PAGES_LABELS]
    Method = Literal[METHODS]
    StatusClass = Literal[STATUS_CLASSES]
    BotCategory = Literal[BOT_CATEGORIES]

Hour = Annotated[
    int,
    msgspec.Meta(ge=0, multiple_of=3600, description="Start of a UTC hour, in Unix seconds."),
]
Count = Annotated[int, msgspec.Meta(ge=1, le=MAX_COUNT)]
Route = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=MAX_ROUTE_LENGTH,
        description="A route template such as /users/{id}, or (unmatched) / (other).",
    ),
]
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_TLD = r"[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?"
REFERRER_PATTERN: Final = rf"^(?:\(direct\)|\(internal\)|\(other\)|(?:{_LABEL}\.)*{_TLD})$"
Referrer = Annotated[
    str,
    msgspec.Meta(
        max_length=253,
        pattern=REFERRER_PATTERN,
        description=(
            "The registrable domain of a public host (Public Suffix List), or (direct),"
            " (internal) or (other)."
        ),
    ),
]
# Declared event property values.
SLUG_PATTERN: Final = r"^[a-z0-9][a-z0-9._+-]{0,63}$"
# utm_* values: the character classes of a campaign slug; the rest of the rule (no
# identifiers, canonical form) is slug_problem, applied by the collector to every value.
CAMPAIGN_PATTERN: Final = r"^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$"
Slug = Annotated[
    str,
    msgspec.Meta(
        max_length=MAX_SLUG_LENGTH,
        pattern=CAMPAIGN_PATTERN,
        description="utm_* value as a campaign slug: words, years, dates, quarter names",
    ),
]
NAME_PATTERN: Final = r"^[a-z][a-z0-9_.-]{0,63}$"
Name = Annotated[str, msgspec.Meta(max_length=MAX_NAME_LENGTH, pattern=NAME_PATTERN)]
PropValue = Annotated[str, msgspec.Meta(max_length=MAX_SLUG_LENGTH, pattern=SLUG_PATTERN)]


class _Record(msgspec.Struct, forbid_unknown_fields=True, frozen=True, tag_field="kind"):
    pass


class Pageview(_Record, tag="pageview", frozen=True):
    """A GET navigation answered with 2xx HTML."""

    hour: Hour
    route: Route
    referrer: Referrer
    entry: bool
    n: Count
    utm_source: Slug | None = None
    utm_medium: Slug | None = None
    utm_campaign: Slug | None = None


class Request(_Record, tag="request", frozen=True):
    """Any request: the app's load, latency and error rate."""

    hour: Hour
    route: Route
    method: Method
    status: StatusClass
    latency: LatencyLabel
    n: Count


class Event(_Record, tag="event", frozen=True):
    """A custom event the site declared, with declared property values only."""

    hour: Hour
    name: Name
    route: Route
    props: Annotated[dict[Name, PropValue], msgspec.Meta(max_length=MAX_PROPS)]
    n: Count


class Bot(_Record, tag="bot", frozen=True):
    """Bot traffic is counted, never described beyond a coarse category."""

    hour: Hour
    n: Count
    # Absent from senders older than the category: those count as "other".
    category: BotCategory = "other"


class Visit(_Record, tag="visit", frozen=True):
    """A finished visit: when it began, where it entered, how long and how deep."""

    hour: Hour
    route: Route
    duration: DurationLabel
    pages: PagesLabel
    n: Count


Record = Pageview | Request | Event | Bot | Visit


# --- the record-kind registry ------------------------------------------------------------
# Each kind's dimensions, their order, how a key folds into (other) and how a value is
# stored, declared once. The SDK's count-table keys are ``(kind, hour, *values)`` in this
# order; the collector's tables, key functions, metrics, ``by`` dimensions and OpenAPI
# enums are derived from it.


def _fold_to_other(value: object) -> str:
    return OTHER


def _fold_referrer(value: object) -> object:
    # The markers say something true about every pageview folded under them; a domain
    # is one of many that no longer fit.
    return value if value in REFERRER_SPECIAL else OTHER


def _fold_to_absent(value: object) -> None:
    # A campaign slug cannot be "(other)" on the wire: a folded key has no campaign.
    return None


def _fold_to_no_props(value: object) -> tuple[tuple[str, str], ...]:
    return ()


def _store_absent_as_empty(value: object) -> object:
    # '' rather than NULL, so that an absent value takes part in the primary key.
    return "" if value is None else value


def _store_flag(value: object) -> int:
    return 1 if value else 0


def encode_props(props: object) -> str:
    """Event properties as stored: canonical (sorted, compact) JSON, so that equal
    property sets always share one counter row. ``props`` is a mapping or the SDK's
    tuple of (name, value) pairs."""
    pairs: dict[str, str] = dict(cast("Iterable[tuple[str, str]]", props))
    return "{" + ",".join(f'"{k}":"{pairs[k]}"' for k in sorted(pairs)) + "}"


def _props_on_the_wire(value: object) -> dict[str, str]:
    return dict(cast("Iterable[tuple[str, str]]", value))


@dataclass(frozen=True, slots=True)
class Dimension:
    """One field a record kind's counts are kept apart by (besides the hour)."""

    name: str  # the wire field, and the storage column
    # The name ``/v1/stats`` groups and filters by, when it is not ``name``.
    query_name: str | None = None
    # The value this dimension takes when a key folds into (other): the SDK's table is
    # full, or the collector's per-hour key cap is reached. None: declared or a fixed set
    # of labels, never folded.
    fold: Callable[[object], object] | None = None
    # The storage value of a wire value (and of an already stored one); None: as is.
    store: Callable[[object], object] | None = None
    # The SDK's key holds a hashable stand-in; this makes the wire value of it.
    to_wire: Callable[[object], object] | None = None
    integer: bool = False  # stored in an integer column rather than a text one

    @property
    def query(self) -> str:
        return self.query_name or self.name


@dataclass(frozen=True, slots=True)
class RecordKind:
    """One kind of record: its struct, the metric it answers and its dimensions in order."""

    name: str  # the record's "kind" tag, and the table's suffix
    struct: type[_Record]
    metric: str  # the ``/v1/stats`` metric counting it
    dimensions: tuple[Dimension, ...]

    @property
    def dimension_names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.dimensions)

    @property
    def folds(self) -> bool:
        """Whether any dimension is open-ended, so that a flood of keys can fold."""
        return any(d.fold is not None for d in self.dimensions)


_ROUTE = Dimension("route", fold=_fold_to_other)

KINDS: Final[dict[str, RecordKind]] = {
    kind.name: kind
    for kind in (
        RecordKind(
            "pageview",
            Pageview,
            "pageviews",
            (
                _ROUTE,
                Dimension("referrer", fold=_fold_referrer),
                Dimension("utm_source", fold=_fold_to_absent, store=_store_absent_as_empty),
                Dimension("utm_medium", fold=_fold_to_absent, store=_store_absent_as_empty),
                Dimension("utm_campaign", fold=_fold_to_absent, store=_store_absent_as_empty),
                Dimension("entry", store=_store_flag, integer=True),
            ),
        ),
        RecordKind(
            "request",
            Request,
            "requests",
            (_ROUTE, Dimension("method"), Dimension("status"), Dimension("latency")),
        ),
        RecordKind(
            "event",
            Event,
            "events",
            (
                Dimension("name", query_name="event"),
                _ROUTE,
                Dimension(
                    "props",
                    query_name="prop",
                    fold=_fold_to_no_props,
                    store=encode_props,
                    to_wire=_props_on_the_wire,
                ),
            ),
        ),
        RecordKind("bot", Bot, "bots", (Dimension("category"),)),
        RecordKind("visit", Visit, "visits", (_ROUTE, Dimension("duration"), Dimension("pages"))),
    )
}
RECORD_TYPES: Final[tuple[type[_Record], ...]] = tuple(kind.struct for kind in KINDS.values())
KIND_OF_TYPE: Final[dict[type[_Record], RecordKind]] = {k.struct: k for k in KINDS.values()}

VisitsMode = Literal["off", "memory", "redis"]


class Batch(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """One POST to the collector. ``batch_id`` makes a retry of the same bytes idempotent.

    Any 32 hex digits will do. The SDK writes 6 that name the sending process, 8 of its
    count of batches and 18 random ones: the collector remembers ids of one sender with
    the same first 6 digits and nearby counts side by side, so storing them is cheaper.
    """

    batch_id: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{32}$")]
    sender: Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[\w.-]+$")]
    sender_version: Annotated[str, msgspec.Meta(min_length=1, max_length=32, pattern=r"^[\w.+-]+$")]
    records: Annotated[list[Record], msgspec.Meta(max_length=MAX_RECORDS)]
    visits: VisitsMode | None = None


# --- what a route template, a referrer and a campaign slug are ---------------------------
# Defined once in headcount._shapes; the SDK rewrites into these shapes and the collector
# refuses anything not already in them.

# What a route template never holds: a query string, a fragment, whitespace, a control
# character or a backslash. The SDK replaces a segment holding one; ingest refuses it.
FORBIDDEN_ROUTE_CHARS: Final = re.compile(r"[?#\s\x00-\x1f\x7f\\]")


def looks_like_identifier(segment: str) -> bool:
    """True when one path segment is not template text (names a person, object or secret)."""
    text = _shapes.normalize_text(segment)
    return text is None or _shapes.segment_problem(text) is not None


def _route_problem(route: str) -> str | None:
    """Why ``route`` is not an acceptable route template, or None when it is.

    Remembered for accepted routes only (a site has few templates and every batch
    repeats them; a refused route, which may hold what a visitor typed, is not kept).
    """
    if route in ROUTE_SPECIAL:
        return None
    if len(route) > MAX_ROUTE_LENGTH:
        return f"longer than {MAX_ROUTE_LENGTH} characters"
    if not route.startswith("/"):
        return "must start with '/' or be (unmatched) or (other)"
    if _shapes.normalize_text(route) != route:
        return "is not NFKC-normalised text, or holds an invisible or bidi control character"
    if FORBIDDEN_ROUTE_CHARS.search(route):
        return "contains a query string, fragment, whitespace or control character"
    bad = _shapes.bad_route_segments(route.split("/"))
    if bad:
        return min(bad.items())[1] + "; use a {placeholder}"
    return None


_route_problems: Final = _caches.CleanOnlyCache[str, "str | None"](
    _route_problem, lambda _, problem: problem is None, maxsize=4096
)


def route_problem(route: str) -> str | None:
    """Why ``route`` is not an acceptable route template, or None when it is."""
    return _route_problems(route)


def referrer_problem(referrer: str) -> str | None:
    """Why ``referrer`` is not a referrer value the SDK would send, or None when it is."""
    if referrer in REFERRER_SPECIAL:
        return None
    if _shapes.referrer_domain(referrer) != referrer:
        return (
            "is not the registrable domain of a public host "
            "(or is a local name, an address, or token-like)"
        )
    return None


def slug_problem(value: str) -> str | None:
    """Why a utm value is not a campaign slug exactly as the SDK sends it, or None."""
    return _shapes.slug_problem(value)


def record_problem(record: Record) -> tuple[str, str] | None:
    """The first field of a schema-valid ``record`` holding a value the SDK never sends
    (a route that is no template, a referrer or utm value it would have rewritten or
    dropped), with why; None when there is none. Event names and properties are each
    site's declarations, judged by its collector."""
    route = getattr(record, "route", None)
    if route is not None and (problem := route_problem(route)):
        return "route", f"{route!r} is not a template: {problem}"
    if isinstance(record, Pageview):
        if problem := referrer_problem(record.referrer):
            return "referrer", f"{record.referrer!r} {problem}"
        for name in ("utm_source", "utm_medium", "utm_campaign"):
            value = getattr(record, name)
            if value is not None and (problem := slug_problem(value)):
                return name, f"{value!r} {problem}"
    return None


def schema_document() -> dict[str, object]:
    """A machine-readable description of every record kind, field and range label."""
    kinds: dict[str, object] = {}
    for name, kind in KINDS.items():
        info = msgspec.inspect.type_info(kind.struct)
        assert isinstance(info, msgspec.inspect.StructType)
        kinds[name] = {
            "description": (kind.struct.__doc__ or "").strip(),
            "fields": [
                {"name": f.encode_name, "required": f.required, "type": _describe(f.type)}
                for f in info.fields
            ],
            # What the counts are kept apart by (besides the hour), in key order, and the
            # ``/v1/stats`` metric that answers them.
            "dimensions": [d.name for d in kind.dimensions],
            "metric": kind.metric,
        }
    return {
        "version": SCHEMA_VERSION,
        "record_kinds": kinds,
        "labels": {
            "latency": list(LATENCY_LABELS),
            "duration": list(DURATION_LABELS),
            "pages": list(PAGES_LABELS),
            "status": list(STATUS_CLASSES),
            "method": list(METHODS),
        },
        "edges": {
            "latency_ms": list(LATENCY_EDGES_MS),
            "visit_duration_s": list(VISIT_DURATION_EDGES_S),
        },
        "limits": {
            "max_records": MAX_RECORDS,
            "max_body_bytes": MAX_BODY_BYTES,
            "max_route_length": MAX_ROUTE_LENGTH,
            "max_slug_length": MAX_SLUG_LENGTH,
            "max_count": MAX_COUNT,
        },
        "special_values": {"route": list(ROUTE_SPECIAL), "referrer": list(REFERRER_SPECIAL)},
        "hour": "start of a UTC hour in Unix seconds; nothing finer is ever accepted",
    }


def _describe(t: msgspec.inspect.Type) -> str:
    if isinstance(t, msgspec.inspect.Metadata):
        # Annotated[..., Meta(...)]: the constraint is on the wrapped type.
        return _describe(t.type)
    if isinstance(t, msgspec.inspect.LiteralType):
        return "one of " + ", ".join(map(str, t.values))
    if isinstance(t, msgspec.inspect.UnionType):
        return " or ".join(_describe(x) for x in t.types)
    if isinstance(t, msgspec.inspect.DictType):
        return f"object of {_describe(t.key_type)} to {_describe(t.value_type)}"
    if isinstance(t, msgspec.inspect.IntType):
        if t.multiple_of == 3600:
            return "UTC hour (Unix seconds, multiple of 3600)"
        bounds = [f">= {t.ge}"] if t.ge is not None else []
        bounds += [f"<= {t.le}"] if t.le is not None else []
        return " ".join(["integer", *bounds])
    if isinstance(t, msgspec.inspect.StrType):
        text = "string" + (f" matching {t.pattern}" if t.pattern else "")
        if t.max_length is not None:
            text += f", at most {t.max_length} characters"
        return text
    if isinstance(t, msgspec.inspect.BoolType):
        return "boolean"
    if isinstance(t, msgspec.inspect.NoneType):
        return "null"
    return type(t).__name__
