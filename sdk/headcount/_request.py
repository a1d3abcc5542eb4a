"""The neutral description of one finished request that every integration fills in."""

from __future__ import annotations

__all__ = ["RequestInfo"]


class RequestInfo:
    """What an integration saw of one finished request, before any coarsening.

    Integrations copy raw framework values in; ``Tracker.record_request`` does all of the
    coarsening. Nothing here is kept after that call returns, except that a keyed hash of
    the client address, ``user_agent`` and ``host`` links a visit's pageviews in memory
    (or Redis) for as long as the visit lasts; it is never sent, logged or written out.

    ``route_from_app`` says that ``route`` is the app's own text (a router's rule, a CMS
    page's path), never worked out from the request's path: only then is it kept for a
    request answered 404 or 410, which otherwise counts as ``(unmatched)``, since the
    path of a page that does not exist is whatever the visitor typed.
    """

    __slots__ = (
        "client_addr",
        "content_type",
        "elapsed",
        "excluded",
        "forwarded_for",
        "host",
        "method",
        "purpose",
        "query_string",
        "referer",
        "route",
        "route_from_app",
        "sec_fetch_dest",
        "sec_fetch_site",
        "status",
        "user_agent",
    )
    # Declared here for the type checker: `fill` below assigns them.
    method: str
    route: str | None
    status: int
    elapsed: float
    host: str | None
    referer: str | None
    sec_fetch_site: str | None
    sec_fetch_dest: str | None
    purpose: str | None
    query_string: str | None
    user_agent: str | None
    content_type: str | None
    client_addr: str | None
    forwarded_for: str | None
    excluded: bool
    route_from_app: bool

    def __init__(
        self,
        method: str,
        route: str | None,
        status: int,
        elapsed: float,
        *,
        host: str | None = None,
        referer: str | None = None,
        sec_fetch_site: str | None = None,
        sec_fetch_dest: str | None = None,
        purpose: str | None = None,
        query_string: str | None = None,
        user_agent: str | None = None,
        content_type: str | None = None,
        client_addr: str | None = None,
        forwarded_for: str | None = None,
        excluded: bool = False,
        route_from_app: bool = False,
    ) -> None:
        fill(
            self, method, route, status, elapsed, host, referer, sec_fetch_site,
            sec_fetch_dest, purpose, query_string, user_agent, content_type, client_addr,
            forwarded_for, excluded, route_from_app,
        )  # fmt: skip


def fill(
    info: RequestInfo,
    method: str,
    route: str | None,
    status: int,
    elapsed: float,
    host: str | None,
    referer: str | None,
    sec_fetch_site: str | None,
    sec_fetch_dest: str | None,
    purpose: str | None,
    query_string: str | None,
    user_agent: str | None,
    content_type: str | None,
    client_addr: str | None,
    forwarded_for: str | None,
    excluded: bool = False,
    route_from_app: bool = False,
) -> RequestInfo:
    """Set every field of ``info`` by position, in ``__init__``'s order, and return it.

    With ``object.__new__(RequestInfo)`` as ``info`` this is the integrations' constructor:
    matching ten keyword arguments was over half the cost of describing a request
    (``bench/middleware_layers.py``)."""
    info.method = method
    # The framework's route template in its own syntax (`/users/<int:id>`,
    # `users/<int:pk>/`, `/users/{id:int}`, a `re_path` regex), or None when no route
    # matched. Never the request path.
    info.route = route
    info.status = status
    info.elapsed = elapsed  # seconds
    info.host = host
    info.referer = referer
    info.sec_fetch_site = sec_fetch_site
    info.sec_fetch_dest = sec_fetch_dest
    # `Sec-Purpose` or the legacy `Purpose` / `X-Purpose` header: "prefetch" marks a
    # speculative load that is not a pageview.
    info.purpose = purpose
    # The raw query string: only utm_* parameters are ever read from it.
    info.query_string = query_string
    info.user_agent = user_agent
    info.content_type = content_type
    # The peer address as the app already trusts it (after ProxyFix and the like), and
    # the raw X-Forwarded-For header, read only when client_addr is a trusted proxy.
    info.client_addr = client_addr
    info.forwarded_for = forwarded_for
    # The integration recognised a back-office view (Django's or Wagtail's admin):
    # counted as a request, never as a pageview, whatever its route.
    info.excluded = excluded
    # The route is the app's own text, a router's rule or a CMS page's path, never a
    # path a visitor sent: the tracker may then remember how it coarsens even when a
    # segment became {id} (see _caches). An app's set_route is not taken on trust.
    info.route_from_app = route_from_app
    return info
