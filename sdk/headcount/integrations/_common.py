"""What every integration shares: reading request headers into a RequestInfo."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from headcount._page_route import APP_ROUTE_KEY, ROUTE_KEY
from headcount._request import RequestInfo, fill

if TYPE_CHECKING:
    from headcount import Tracker

__all__ = [
    "APP_ROUTE_KEY",
    "ROUTE_KEY",
    "asgi_request_info",
    "environ_request_info",
    "matched_route",
    "send_last_counts",
    "status_code",
    "tracker_from_options",
]

# One pass over the ASGI headers fills every field we read. Several names feed
# `purpose`; the lower the rank the more authoritative the header.
_ASGI_FIELDS: Final[Mapping[bytes, tuple[str, int]]] = {
    b"host": ("host", 0),
    b"referer": ("referer", 0),
    b"sec-fetch-site": ("sec_fetch_site", 0),
    b"sec-fetch-dest": ("sec_fetch_dest", 0),
    b"sec-purpose": ("purpose", 0),
    b"purpose": ("purpose", 1),
    b"x-purpose": ("purpose", 2),
    b"user-agent": ("user_agent", 0),
}


# The integrations describe every request, so they fill a bare instance by position.
_new = object.__new__


def status_code(status_line: str) -> int:
    """The numeric code of a WSGI status line such as ``"404 Not Found"``."""
    try:
        return int(status_line[:3])
    except ValueError:
        # A malformed status line is the app's bug; count it as a server error
        # rather than dropping the request from the statistics.
        return 500


def matched_route(route: str | None, status: int) -> str | None:
    # A 405 means no handler exists for this method. Flask reports no rule for it,
    # Starlette a "partial" match and Django whatever view refused it; counting all
    # of them as unmatched keeps one meaning across frameworks.
    return None if status == 405 else route


def environ_request_info(
    environ: Mapping[str, Any],
    route: str | None,
    status: int,
    elapsed: float,
    content_type: str | None,
    route_from_app: bool = False,
) -> RequestInfo:
    """Describe a request from a WSGI environ (or Django's ``request.META``)."""
    get = environ.get
    # The first of the purpose headers present, without a loop: this runs per request.
    purpose = get("HTTP_SEC_PURPOSE")
    if purpose is None:
        purpose = get("HTTP_PURPOSE")
        if purpose is None:
            purpose = get("HTTP_X_PURPOSE")
    return fill(
        _new(RequestInfo),
        get("REQUEST_METHOD", "GET"),
        None if status == 405 else route,  # as matched_route()
        status,
        elapsed,
        get("HTTP_HOST") or get("SERVER_NAME"),  # host
        get("HTTP_REFERER"),  # referer
        get("HTTP_SEC_FETCH_SITE"),  # sec_fetch_site
        get("HTTP_SEC_FETCH_DEST"),  # sec_fetch_dest
        purpose,
        get("QUERY_STRING"),  # query_string
        get("HTTP_USER_AGENT"),  # user_agent
        content_type,
        get("REMOTE_ADDR"),  # client_addr
        get("HTTP_X_FORWARDED_FOR"),  # forwarded_for
        False,  # excluded
        route_from_app,
    )


def asgi_request_info(
    scope: Mapping[str, Any],
    route: str | None,
    status: int,
    elapsed: float,
    content_type: str | None,
    route_from_app: bool = False,
) -> RequestInfo:
    """Describe an HTTP request from its ASGI scope."""
    route = matched_route(route, status)
    fields: dict[str, str] = {}
    forwarded: list[str] = []
    purpose_rank = 3
    for name, value in scope.get("headers", ()):
        lowered = name.lower()
        known = _ASGI_FIELDS.get(lowered)
        if known is None:
            if lowered == b"x-forwarded-for":
                # Every proxy may add its own header line; in order, they make one list.
                forwarded.append(value.decode("latin-1"))
            continue
        field, rank = known
        if field == "purpose":
            if rank >= purpose_rank:
                continue
            purpose_rank = rank
        elif field in fields:
            continue
        fields[field] = value.decode("latin-1")
    client = scope.get("client")
    query = scope.get("query_string")
    found = fields.get
    return fill(
        _new(RequestInfo),
        scope.get("method", "GET"),
        route,
        status,
        elapsed,
        found("host"),
        found("referer"),
        found("sec_fetch_site"),
        found("sec_fetch_dest"),
        found("purpose"),
        query.decode("latin-1") if query else None,  # query_string
        found("user_agent"),
        content_type,
        client[0] if client else None,  # client_addr
        ",".join(forwarded) if forwarded else None,  # forwarded_for
        False,  # excluded
        route_from_app,
    )


def tracker_from_options(options: Mapping[str, object]) -> Tracker:
    """A Tracker from framework configuration: option names in any case, values as given.

    Anything not given falls back to the ``HEADCOUNT_*`` environment variables.
    """
    # Imported here: the integrations are imported by the package's users, never by the
    # core, and this keeps `_common` importable without pulling the Tracker in early.
    from headcount import Tracker

    return Tracker.from_options(options)


async def send_last_counts(tracker: Tracker) -> None:
    """At the end of an ASGI lifespan, before the server hears of it: end the visits
    linked in memory, as at exit, and send what is counted. uvicorn ends a worker
    stopped by SIGTERM by raising the signal again, so Python's exit hooks (the SDK's
    exit flush among them) never run there.

    A flush, not ``shutdown``: an app can live through several lifespans in one process
    (a test suite's clients, a tracker shared by two apps), and the tracker keeps
    counting after each; the visits that span a lifespan's end are split there."""
    import anyio.to_thread

    tracker._end_visits_in_memory()
    # Off the event loop, through anyio (httpx's own dependency), so that trio servers
    # work too; bounded by shutdown_timeout.
    await anyio.to_thread.run_sync(tracker.flush, tracker.settings.shutdown_timeout)
