"""ASGI middleware: counts every HTTP request an app answers, streamed bodies included.

    from headcount.integrations.asgi import HeadcountMiddleware
    app = HeadcountMiddleware(app, tracker)
    # or, in Starlette / FastAPI:
    app.add_middleware(HeadcountMiddleware, tracker=tracker)

A plain ASGI middleware rather than Starlette's ``BaseHTTPMiddleware``: it adds one
closure per request and sees the end of a streamed body. Websocket and lifespan scopes
pass through untouched, except that the end of a lifespan (the server shutting the app
down) first sends the tracker's last counts. Under Starlette or FastAPI the route
template is read from the router (mounts and ``include_router`` prefixes included); any
other app is counted as ``(unmatched)``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from time import perf_counter
from typing import TYPE_CHECKING, Any, TypeAlias

from headcount._log import RateLimitedLog
from headcount.integrations._common import asgi_request_info, chosen_route, send_last_counts
from headcount.integrations._starlette import StarletteRoutes

if TYPE_CHECKING:
    from headcount import Tracker

__all__ = ["HeadcountMiddleware"]

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]


class HeadcountMiddleware:
    """Time each HTTP request until the app returns, then record it; send what is left
    when the server shuts the app down (lifespan shutdown).

    An exception from the app is counted as a 5xx and re-raised untouched. A request
    cancelled before any response started (the client went away) is not counted.
    """

    def __init__(self, app: ASGIApp, tracker: Tracker) -> None:
        self.app = app
        self.tracker = tracker
        self._routes = StarletteRoutes()
        # At most one line a minute per kind of problem: a request shape that always
        # fails must not flood the app's log.
        self.log = RateLimitedLog()

    def _sending_last_counts(self, send: Send) -> Send:
        """``send`` for the lifespan scope: once the app has shut down, and before the
        server hears so, the tracker sends what it holds (``send_last_counts``)."""
        tracker = self.tracker

        async def send_after_flushing(message: Message) -> None:
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                await send_last_counts(tracker)
            await send(message)

        return send_after_flushing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # A disabled tracker costs nothing per request: not even the wrapping.
        if scope["type"] != "http" or not self.tracker.settings.enabled:
            if scope["type"] == "lifespan" and self.tracker.settings.enabled:
                await self.app(scope, receive, self._sending_last_counts(send))
                return
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        finished = 0.0
        status = 0
        content_type: str | None = None

        async def send_and_capture(message: Message) -> None:
            nonlocal status, content_type, finished
            if message["type"] == "http.response.start":
                status = message["status"]
                for name, value in message.get("headers", ()):
                    if name.lower() == b"content-type":
                        content_type = value.decode("latin-1")
                        break
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                # The response is complete; background tasks that run after it are not
                # part of its latency.
                finished = perf_counter()

        outcome = _COMPLETED
        try:
            await self.app(scope, receive, send_and_capture)
        except Exception:
            outcome = _FAILED
            raise
        except BaseException:
            outcome = _CANCELLED
            raise
        finally:
            if outcome != _CANCELLED or status:
                # No response at all means the server answers 500 on the app's behalf;
                # a failure after the whole response went out (a background task) is
                # not what the visitor got.
                failed_first = outcome == _FAILED and not finished
                final = 500 if failed_first or not status else status
                self._record(scope, final, (finished or perf_counter()) - started, content_type)

    def _record(self, scope: Scope, status: int, elapsed: float, content_type: str | None) -> None:
        try:
            route, from_app = chosen_route(scope)
            if route is None:
                route, from_app = self._routes.route(scope, status), True
            info = asgi_request_info(scope, route, status, elapsed, content_type, from_app)
        except Exception:
            # Describing the request must never break serving it.
            self.log.exception("describe-asgi", "headcount could not describe an ASGI request")
            return
        self.tracker.record_request(info)


_COMPLETED = 0
_FAILED = 1
_CANCELLED = 2
