"""What every integration shares: reading request headers into a RequestInfo."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from headcount._page_route import ROUTE_KEY, chosen_route
from headcount._request import RequestInfo, fill

if TYPE_CHECKING:
    from headcount import Tracker

__all__ = [
    "ROUTE_KEY",
    "asgi_request_info",
    "chosen_route",
    "environ_request_info",
    "matched_route",
    "send_last_counts",
    "status_code",
    "tracker_from_options",
]

# One pass over the ASGI headers finds every header we read, each in its own slot (the
# first line of each wins). Three names feed `purpose`, the first slot present winning;
# X-Forwarded-For may come in several lines, which make one list.
_ASGI_SLOTS: Final[Mapping[bytes, int]] = {
    b"host": 0,
    b"referer": 1,
    b"sec-fetch-site": 2,
    b"sec-fetch-dest": 3,
    b"sec-purpose": 4,
    b"purpose": 5,
    b"x-purpose": 6,
    b"user-agent": 7,
    b"x-forwarded-for": 8,
}
_FORWARDED_FOR: Final = 8
_asgi_slot = _ASGI_SLOTS.get


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
    found: list[bytes | None] = [None] * _FORWARDED_FOR
    forwarded: list[str] = []
    for name, value in scope.get("headers", ()):
        slot = _asgi_slot(name)
        if slot is None:
            # ASGI servers give names in lowercase, so most names are simply not ours;
            # only a name that is not all lowercase (an app's own scope) is looked up
            # again. A browser sends a dozen headers: this loop is per request.
            if name.islower():
                continue
            slot = _asgi_slot(name.lower())
            if slot is None:
                continue
        if slot == _FORWARDED_FOR:
            forwarded.append(value.decode("latin-1"))
        elif found[slot] is None:
            found[slot] = value
    host, referer, fetch_site, fetch_dest, sec_purpose, purpose, x_purpose, agent = found
    if sec_purpose is None:
        sec_purpose = purpose if purpose is not None else x_purpose
    client = scope.get("client")
    query = scope.get("query_string")
    return fill(
        _new(RequestInfo),
        scope.get("method", "GET"),
        route,
        status,
        elapsed,
        None if host is None else host.decode("latin-1"),
        None if referer is None else referer.decode("latin-1"),
        None if fetch_site is None else fetch_site.decode("latin-1"),
        None if fetch_dest is None else fetch_dest.decode("latin-1"),
        None if sec_purpose is None else sec_purpose.decode("latin-1"),
        query.decode("latin-1") if query else None,  # query_string
        None if agent is None else agent.decode("latin-1"),
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
    await anyio.to_thread.run_sync(tracker._flush_at_exit, tracker.settings.shutdown_timeout)
