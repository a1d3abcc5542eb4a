"""The example apps without Headcount, and instrumented instead by its peers.

Server factories for ``bench/middleware.py`` (gunicorn ``module:factory()``, uvicorn
``--factory``). Not a benchmark itself.

- ``without``: the examples with the Headcount middleware (and Flask's teardown hook)
  taken out again, so no Headcount code runs per request;
- ``prometheus``: that app plus what prometheus-flask-exporter and starlette-exporter do
  per request: one Counter and one Histogram, both labelled route/method/status,
  observed after the response with the time since the request began. The route is the
  matched template (Flask's ``url_rule``; for Starlette the exporter's own lookup: match
  the request against the router's routes again). The registry is the in-process one,
  not the multiprocess mode (files under ``PROMETHEUS_MULTIPROC_DIR``) that a correct
  ``/metrics`` under gunicorn -w 2 needs, which costs more: the cheaper of the two is
  the bar to meet;
- ``posthog``: that app plus posthog's server-side ``capture()`` of one event per
  request with the same properties, built and validated in full but with sending
  disabled (``send=False``: no consumer thread, nothing queued or sent).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from time import perf_counter
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    from fastapi import FastAPI
    from flask import Flask
    from posthog import Posthog

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]
# (route, method, status, seconds, user agent, referrer) of one finished request.
Observer: TypeAlias = Callable[[str, str, int, float, str, str], None]

UNMATCHED = "(unmatched)"


# --- the baselines --------------------------------------------------------------------


def flask_without_headcount() -> Flask:
    """gunicorn factory: the Flask example with no Headcount code on the request path."""
    from examples.flask_app.app import create_app

    from headcount.integrations.wsgi import HeadcountMiddleware

    app = create_app({"HEADCOUNT_ENABLED": False})
    middleware = app.wsgi_app
    if not isinstance(middleware, HeadcountMiddleware):
        raise TypeError("the Flask example is no longer wrapped the way this bench expects")
    app.wsgi_app = middleware.app  # type: ignore[method-assign,assignment]
    teardowns = app.teardown_request_funcs.get(None, [])
    app.teardown_request_funcs[None] = [
        f for f in teardowns if not f.__module__.startswith("headcount.")
    ]
    return app


def fastapi_without_headcount() -> FastAPI:
    """uvicorn factory: the FastAPI example without the Headcount ASGI middleware."""
    from examples.fastapi_app.app import create_app

    from headcount import Tracker
    from headcount.integrations.asgi import HeadcountMiddleware

    app = create_app(Tracker(enabled=False))
    before = len(app.user_middleware)
    # Starlette builds the middleware stack on the first request, so removing the entry
    # now means the stack is built without it.
    app.user_middleware = [m for m in app.user_middleware if m.cls is not HeadcountMiddleware]  # type: ignore[comparison-overlap]
    if len(app.user_middleware) != before - 1:
        raise TypeError("the FastAPI example is no longer wrapped the way this bench expects")
    return app


# --- the peers' per-request work ------------------------------------------------------


def prometheus_observer() -> Observer:
    from prometheus_client import CollectorRegistry, Counter, Histogram

    registry = CollectorRegistry()
    labels = ("route", "method", "status")
    requests = Counter("http_requests", "Requests answered", labels, registry=registry)
    latency = Histogram(
        "http_request_duration_seconds", "Time to answer", labels, registry=registry
    )

    def observe(
        route: str, method: str, status: int, seconds: float, user_agent: str, referrer: str
    ) -> None:
        code = str(status)
        requests.labels(route, method, code).inc()
        latency.labels(route, method, code).observe(seconds)

    return observe


def posthog_client() -> Posthog:
    from posthog import Posthog

    return Posthog(
        "phc_bench",
        host="http://127.0.0.1:9",  # nothing listens there; with send=False nothing is sent
        send=False,
        disable_geoip=True,
        enable_exception_autocapture=False,
    )


def posthog_observer() -> Observer:
    client = posthog_client()

    def observe(
        route: str, method: str, status: int, seconds: float, user_agent: str, referrer: str
    ) -> None:
        client.capture(
            "request",
            distinct_id="anonymous",
            properties={
                "route": route,
                "method": method,
                "status": status,
                "duration": seconds,
                "$user_agent": user_agent,
                "$referrer": referrer,
            },
        )

    return observe


# --- Flask: before_request / after_request hooks, as prometheus-flask-exporter ---------


def _instrument_flask(app: Flask, observe: Observer) -> Flask:
    from flask import Response, g, request

    def start() -> None:
        g.bench_started = perf_counter()

    def finish(response: Response) -> Response:
        rule = request.url_rule
        observe(
            rule.rule if rule is not None else UNMATCHED,
            request.method,
            response.status_code,
            perf_counter() - g.bench_started,
            request.headers.get("User-Agent", ""),
            request.headers.get("Referer", ""),
        )
        return response

    app.before_request(start)
    app.after_request(finish)
    return app


def flask_with_prometheus() -> Flask:
    return _instrument_flask(flask_without_headcount(), prometheus_observer())


def flask_with_posthog() -> Flask:
    return _instrument_flask(flask_without_headcount(), posthog_observer())


# --- Starlette: a pure ASGI middleware wrapping send, as starlette-exporter -----------


def _matching_route(scope: Scope, routes: Sequence[Any], routed: Any) -> str | None:
    from starlette.routing import Match, Mount

    for route in routes:
        match, child = route.matches(scope)
        if match != Match.FULL:
            continue
        if isinstance(route, Mount) and route.routes:
            below = _matching_route({**scope, **child}, route.routes, routed)
            return None if below is None else route.path + below
        path = getattr(route, "path", None)
        if path is None:
            # A FastAPI included router: its prefix, then the route it matched.
            context = getattr(route, "include_context", None)
            path = getattr(context, "prefix", "") + getattr(routed, "path", "")
        return path if isinstance(path, str) else None
    return None


class PeerMiddleware:
    def __init__(self, app: ASGIApp, observe: Observer) -> None:
        self.app = app
        self.observe = observe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        status = 500

        async def send_and_capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_capture)
        finally:
            router = scope.get("router")
            route = None
            if router is not None and scope.get("endpoint") is not None:
                # What starlette-exporter does: match the request against the routes
                # again, from the top, to learn the template.
                outer = {
                    "type": "http",
                    "path": scope["path"],
                    "root_path": "",
                    "method": scope["method"],
                }
                route = _matching_route(outer, router.routes, scope.get("route"))
            headers = dict(scope["headers"])
            self.observe(
                route or UNMATCHED,
                scope["method"],
                status,
                perf_counter() - started,
                headers.get(b"user-agent", b"").decode("latin-1"),
                headers.get(b"referer", b"").decode("latin-1"),
            )


def fastapi_with_prometheus() -> FastAPI:
    app = fastapi_without_headcount()
    app.add_middleware(PeerMiddleware, observe=prometheus_observer())
    return app


def fastapi_with_posthog() -> FastAPI:
    app = fastapi_without_headcount()
    app.add_middleware(PeerMiddleware, observe=posthog_observer())
    return app
