"""The neutral description of one finished request that every integration fills in."""

from __future__ import annotations

__all__ = ["RequestInfo"]


class RequestInfo:
    """What an integration saw of one finished request, before any coarsening.

    Integrations copy raw framework values in; ``Tracker.record_request`` does all of the
    coarsening. Nothing here is kept after that call returns, except that a keyed hash of
    the client address, ``user_agent`` and ``host`` links a visit's pageviews in memory
    (or Redis) for as long as the visit lasts; it is never sent, logged or written out.
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
        "sec_fetch_dest",
        "sec_fetch_site",
        "status",
        "user_agent",
    )

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
    ) -> None:
        self.method = method
        # The framework's route template in its own syntax (`/users/<int:id>`,
        # `users/<int:pk>/`, `/users/{id:int}`, a `re_path` regex), or None when no route
        # matched. Never the request path.
        self.route = route
        self.status = status
        self.elapsed = elapsed  # seconds
        self.host = host
        self.referer = referer
        self.sec_fetch_site = sec_fetch_site
        self.sec_fetch_dest = sec_fetch_dest
        # `Sec-Purpose` or the legacy `Purpose` / `X-Purpose` header: "prefetch" marks a
        # speculative load that is not a pageview.
        self.purpose = purpose
        # The raw query string: only utm_* parameters are ever read from it.
        self.query_string = query_string
        self.user_agent = user_agent
        self.content_type = content_type
        # The peer address as the app already trusts it (after ProxyFix and the like), and
        # the raw X-Forwarded-For header, read only when client_addr is a trusted proxy.
        self.client_addr = client_addr
        self.forwarded_for = forwarded_for
        # The integration recognised a back-office view (Django's or Wagtail's admin):
        # counted as a request, never as a pageview, whatever its route.
        self.excluded = excluded
