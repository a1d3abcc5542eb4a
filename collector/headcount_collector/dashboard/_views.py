"""The dashboard's pages: sign-in, the site overview, a route's detail, CSV downloads."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode

import jinja2
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from headcount import wire
from headcount_collector import privacy
from headcount_collector.config import Site, SiteRegistry
from headcount_collector.errors import QueryRejected, StoreUnavailable
from headcount_collector.query import parse_stats_query, render_csv, run_stats_query
from headcount_collector.stores.base import Store

from ._periods import PRESETS, choose_period
from ._session import COOKIE_NAME, SESSION_SECONDS, read_session, session_end, write_session
from ._widgets import Overview, RouteDetail, overview, route_detail

__all__ = ["CSP", "dashboard_routes"]

SESSION_SECRET = "dashboard_session_secret"  # noqa: S105 - a row name, not a secret

CSP: Final = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
STYLESHEET_PATH: Final = "/dashboard/static/dashboard.css"
_HERE = Path(__file__).parent
_MAX_FORM_BYTES = 4096


def _security_headers() -> dict[str, str]:
    return {
        "Content-Security-Policy": CSP,
        "X-Content-Type-Options": "nosniff",
        # No Referer ever leaves for another site; the collector's own forms still send
        # their Origin, which is how a browser without Sec-Fetch-Site proves a form is ours.
        "Referrer-Policy": "same-origin",
        "Cache-Control": "private, no-cache",
    }


@dataclass(frozen=True, slots=True)
class _Context:
    registry: SiteRegistry
    store: Store
    clock: Callable[[], float]
    templates: jinja2.Environment
    stylesheet: str
    session_secret: bytes

    def page(self, request: Request, template: str, status: int = 200, **values: Any) -> Response:
        html = self.templates.get_template(template).render(stylesheet=self.stylesheet, **values)
        body = html.encode("utf-8")
        headers = _security_headers()
        # The page is a function of released numbers only, so equal bodies are equal pages:
        # a sealed period answers a revalidation with 304 and no body.
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        headers["ETag"] = etag
        if status == 200 and etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        return HTMLResponse(body, status_code=status, headers=headers)

    def signed_in(self, request: Request) -> list[Site]:
        return read_session(
            request.cookies.get(COOKIE_NAME), self.registry, self.clock(), self.session_secret
        )

    def public(self) -> list[Site]:
        return [site for site in self.registry if site.public_dashboard]


def _scheme(request: Request) -> str:
    """The scheme the browser used: behind the TLS-terminating proxy that
    docs/deployment.md asks for, the proxy's X-Forwarded-Proto says https. Trusting it
    can only make the cookie stricter or accept the collector's own https origin."""
    forwarded = request.headers.get("x-forwarded-proto", "").split(",", 1)[0].strip().lower()
    return "https" if forwarded == "https" else request.url.scheme


def _set_session(response: Response, request: Request, value: str, max_age: int) -> None:
    response.set_cookie(
        COOKIE_NAME,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="strict",
        secure=_scheme(request) == "https",
    )


def dashboard_routes(
    registry: SiteRegistry,
    store: Store,
    clock: Callable[[], float] = time.time,
    session_secret: bytes | None = None,
) -> list[BaseRoute]:
    """The dashboard's routes, to be mounted on the collector's app. ``session_secret``
    signs session cookies; by default the store's own, shared by its collectors."""
    secret = session_secret if session_secret is not None else store.meta_secret(SESSION_SECRET)
    templates = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_HERE / "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    stylesheet_bytes = (_HERE / "static" / "dashboard.css").read_bytes()
    version = hashlib.sha256(stylesheet_bytes).hexdigest()[:12]
    ctx = _Context(registry, store, clock, templates, f"{STYLESHEET_PATH}?v={version}", secret)

    async def sign_in_page(request: Request) -> Response:
        return ctx.page(
            request,
            "signin.html",
            signed_in=ctx.signed_in(request),
            public=ctx.public(),
            current=None,
            message=None,
        )

    def cross_site(request: Request) -> Response | None:
        """A form posted from another site (login CSRF) is refused.

        Browsers say where a request comes from in Sec-Fetch-Site. One that does not
        (Safari before 16.4) is judged by its Origin, which our same-origin referrer
        policy lets it send for our own forms: "null" is what a hostile page with a
        no-referrer policy makes it send, so without Sec-Fetch-Site it is refused.
        """
        fetch_site = request.headers.get("sec-fetch-site")
        origin = request.headers.get("origin")
        own = f"{_scheme(request)}://{request.url.netloc}"
        if fetch_site is None:
            allowed_origins: tuple[str | None, ...] = (None, own)
        elif fetch_site in ("same-origin", "none"):
            allowed_origins = (None, "null", own)
        else:
            allowed_origins = ()
        if origin in allowed_origins:
            return None
        return ctx.page(
            request,
            "refused.html",
            403,
            signed_in=[],
            current=None,
            heading="Refused",
            message=(
                "This form can only be sent from this collector's own pages. Behind a "
                "reverse proxy, pass on the Host header as the browser sent it, port "
                "included (nginx: proxy_set_header Host $http_host), and X-Forwarded-Proto."
            ),
        )

    async def sign_in(request: Request) -> Response:
        refused = cross_site(request)
        if refused is not None:
            return refused
        body = b""
        declared = request.headers.get("content-length", "")
        # A form declared too large is answered before its body is read: trickled in by
        # a stranger, it would hold a connection for the whole body deadline.
        oversized = declared.isdigit() and int(declared) > _MAX_FORM_BYTES
        try:
            if not oversized:
                async for chunk in request.stream():
                    body += chunk
                    if len(body) > _MAX_FORM_BYTES:
                        oversized = True
                        break
        except ClientDisconnect:
            # Nobody is left to answer, and a stranger must not be able to fill the
            # log with tracebacks by hanging up mid-form.
            return Response(status_code=400)
        signed_in = ctx.signed_in(request)
        fields = {} if oversized else dict(parse_qsl(body.decode("utf-8", "replace")))
        token = fields.get("token", "").strip()
        site = registry.by_read_token(token) if token else None
        if site is None:
            return ctx.page(
                request,
                "signin.html",
                413 if oversized else 401,
                signed_in=signed_in,
                public=ctx.public(),
                current=None,
                message="The form was too large."
                if oversized
                else "That is not the read token of any site on this collector.",
            )
        others = [other for other in signed_in if other.id != site.id]
        response = RedirectResponse(f"/dashboard/{site.id}", status_code=303)
        expires = int(clock()) + SESSION_SECONDS
        if others:
            # One expiry signs every grant: signing in to another site must not renew
            # the ones already held (a copied cookie plus any read token would otherwise
            # live for ever), so the session keeps its end.
            expires = min(expires, session_end(request.cookies.get(COOKIE_NAME)) or expires)
        sites = [site, *others]
        _set_session(
            response,
            request,
            write_session(sites, expires, ctx.session_secret),
            max(0, expires - int(clock())),
        )
        return response

    async def sign_out(request: Request) -> Response:
        refused = cross_site(request)
        if refused is not None:
            return refused
        response = RedirectResponse("/", status_code=303)
        _set_session(response, request, "", 0)
        return response

    def allowed(request: Request) -> tuple[Site | Response, list[Site]]:
        """The site a request may read, or the page refusing it."""
        signed_in = ctx.signed_in(request)
        site = registry.get(request.path_params["site"])
        if site is not None and (site in signed_in or site.public_dashboard):
            return site, signed_in
        # The same answer for an unknown site and a private one: ids are not disclosed.
        refusal = ctx.page(
            request,
            "refused.html",
            401,
            signed_in=signed_in,
            current=None,
            heading="Sign in to see this dashboard",
            message="This dashboard is private: sign in with the site's read token.",
        )
        return refusal, signed_in

    def unshowable(request: Request, signed_in: list[Site], site: Site, reason: str) -> Response:
        """The page for a view the request asks for but that cannot be drawn (400)."""
        return ctx.page(
            request,
            "refused.html",
            400,
            signed_in=signed_in,
            current=site,
            heading="That view cannot be shown",
            message=reason,
        )

    def state(request: Request) -> dict[str, str]:
        params = dict(request.query_params)
        return {
            key: params[key]
            for key in ("period", "from", "to", "compare", "more", "route")
            if key in params
        }

    def links(site: Site, kept: dict[str, str], route: str | None) -> dict[str, Any]:
        here = f"/dashboard/{site.id}" + ("/route" if route else "")

        def more_link(key: str) -> str:
            return here + "?" + urlencode({**kept, "more": key})

        def route_link(name: str) -> str:
            wanted = {k: v for k, v in kept.items() if k not in ("more", "route")}
            return f"/dashboard/{site.id}/route?" + urlencode({"route": name, **wanted})

        back = f"/dashboard/{site.id}?" + urlencode(
            {k: v for k, v in kept.items() if k not in ("more", "route")}
        )
        return {
            "here": here,
            "more_link": more_link,
            "route_link": route_link,
            "back": back,
            "csv": f"/dashboard/{site.id}/csv",
        }

    async def render(request: Request, route: str | None) -> Response:
        site, signed_in = allowed(request)
        if isinstance(site, Response):
            return site
        kept = state(request)
        now = clock()
        try:
            sealed = await asyncio.to_thread(store.seal_state, site.id)
            period = choose_period(
                kept, site.timezone, now, sealed.get("h") if site.policy.noise else None
            )
            compare = kept.get("compare") == "1"
            if route is None:
                data: Overview | RouteDetail = await asyncio.to_thread(
                    overview, store, site, period, compare, kept.get("more", ""), now
                )
            else:
                data = await asyncio.to_thread(
                    route_detail, store, site, route, period, compare, now
                )
        except QueryRejected as exc:
            return unshowable(request, signed_in, site, f"{exc.parameter}: {exc.error}")
        except StoreUnavailable:
            return ctx.page(
                request,
                "refused.html",
                503,
                signed_in=signed_in,
                current=site,
                heading="Storage unavailable",
                message="Storage is temporarily unavailable; retry later.",
            )
        custom = period.preset == "custom"
        values: dict[str, Any] = {
            "signed_in": signed_in,
            "current": site,
            "presets": PRESETS,
            "custom_from": kept.get("from", "") if custom else "",
            "custom_to": kept.get("to", "") if custom else "",
            "route": route,
            **links(site, kept, route),
        }
        values.update({f.name: getattr(data, f.name) for f in dataclasses.fields(data)})
        template = "overview.html" if route is None else "route.html"
        return ctx.page(request, template, **values)

    async def site_overview(request: Request) -> Response:
        return await render(request, None)

    async def site_route(request: Request) -> Response:
        route = request.query_params.get("route", "")
        # Only a route template can be shown: anything else would put a stranger's text
        # in the page's heading on a public dashboard.
        if not route.startswith("/") or len(route) > 512 or wire.route_problem(route):
            site, signed_in = allowed(request)
            if isinstance(site, Response):
                return site
            return unshowable(
                request, signed_in, site, "route: expected a route template such as /blog/{slug}"
            )
        return await render(request, route)

    async def csv_download(request: Request) -> Response:
        site, _ = allowed(request)
        if isinstance(site, Response):
            return site
        params = [(k, v) for k, v in request.query_params.multi_items() if k != "format"]
        now = clock()
        try:
            query = parse_stats_query([*params, ("format", "csv")], site, now)
            result = await asyncio.to_thread(run_stats_query, store, site, query, now)
        except QueryRejected as exc:
            return Response(f"{exc.parameter}: {exc.error}\n", 400, media_type="text/plain")
        except StoreUnavailable:
            return Response("storage is temporarily unavailable\n", 503, media_type="text/plain")
        headers = {**_security_headers(), **privacy.csv_headers(site, result)}
        headers["Content-Disposition"] = f'attachment; filename="{site.id}-{query.metric}.csv"'
        return Response(render_csv(result), media_type="text/csv; charset=utf-8", headers=headers)

    async def stylesheet(request: Request) -> Response:
        headers = {**_security_headers(), "Cache-Control": "public, max-age=86400"}
        return Response(stylesheet_bytes, media_type="text/css; charset=utf-8", headers=headers)

    return [
        Route("/", sign_in_page, methods=["GET"]),
        Route("/dashboard/sign-in", sign_in, methods=["POST"]),
        Route("/dashboard/sign-out", sign_out, methods=["POST"]),
        Route(STYLESHEET_PATH, stylesheet, methods=["GET"]),
        Route("/dashboard/{site}", site_overview, methods=["GET"]),
        Route("/dashboard/{site}/route", site_route, methods=["GET"]),
        Route("/dashboard/{site}/csv", csv_download, methods=["GET"]),
    ]
