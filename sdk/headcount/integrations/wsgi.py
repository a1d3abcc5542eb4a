"""WSGI middleware: counts every request an app answers, streamed bodies included.

    from headcount.integrations.wsgi import HeadcountMiddleware
    app = HeadcountMiddleware(app, tracker)

A bare WSGI app has no router to ask for the route template, so the request is counted
as ``(unmatched)`` unless the app (or a routing layer) stores the template in
``environ["headcount.route"]``. Framework adapters supply the real template.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from time import perf_counter
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeAlias

from headcount._log import RateLimitedLog, logger
from headcount.integrations._common import chosen_route, environ_request_info, status_code

if TYPE_CHECKING:
    from headcount import Tracker

__all__ = ["HeadcountMiddleware"]

Environ: TypeAlias = dict[str, Any]
ExcInfo: TypeAlias = tuple[type[BaseException], BaseException, TracebackType | None]
StartResponse: TypeAlias = Callable[..., Callable[[bytes], object]]
WSGIApp: TypeAlias = Callable[[Environ, StartResponse], Iterable[bytes]]


class HeadcountMiddleware:
    """Time each request until the server closes its response, then record it.

    An exception from the app, or from its body while the server iterates it, is
    counted as a 5xx and re-raised untouched.
    """

    def __init__(self, app: WSGIApp, tracker: Tracker, *, tell_unrouted: bool = True) -> None:
        self.app = app
        self.tracker = tracker
        self._checked_servers = False
        # Framework adapters set the route themselves; a request of theirs without one
        # (a fallback page, an app dispatched beside them) is theirs to explain.
        self._told_about_routes = not tell_unrouted
        # At most one line a minute per kind of problem: a request shape that always
        # fails must not flood the app's log.
        self.log = RateLimitedLog()

    def route(self, environ: Environ) -> tuple[str | None, bool]:
        """The route template of the finished request, in the framework's own syntax, and
        whether it is the app's own text (``chosen_route``)."""
        return chosen_route(environ)

    def tell_about_routes(self, status: int) -> None:
        """Once per process: a request the app answered had no route template, so every
        such request lands in one (unmatched) row, which is rarely what was meant."""
        self._told_about_routes = True
        logger.warning(
            "headcount: a request answered %d had no route template, so it is counted "
            'under (unmatched); a bare WSGI app sets environ["headcount.route"] to the '
            "route's template (or to headcount.generalize_path(path)), and the Flask and "
            "Django integrations do it themselves",
            status,
        )

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if not self.tracker.settings.enabled:
            # A disabled tracker costs nothing per request: not even the wrapping.
            return self.app(environ, start_response)
        if not self._checked_servers:
            self._checked_servers = True
            if environ.get("wsgi.multiprocess"):
                self.tracker.served_by_several_processes()
        # One object per request: it captures the status, passes the body through and
        # records the request when the server closes it.
        response = _Response(self, environ, start_response)
        try:
            body = self.app(environ, response.start_response)
        except Exception:
            response.finish(failed=True)
            raise
        if isinstance(body, (list, tuple)):
            # Already complete in memory: nothing left to time.
            response.finish()
            return body
        file_wrapper = environ.get("wsgi.file_wrapper")
        if file_wrapper is not None:
            if isinstance(file_wrapper, type):
                if isinstance(body, file_wrapper):
                    return _hook_file_wrapper(body, response)
            # uWSGI's file_wrapper is a function that hands back the file itself, and the
            # server recognises it by identity: pass such a body through untouched.
            elif hasattr(body, "fileno") and hasattr(body, "read"):
                return _hook_file_wrapper(body, response)
        response.body = body
        return response


class _Response:
    """One request: its status as the app started it, and its body, passed through chunk
    by chunk; the request is recorded when the server closes the body."""

    __slots__ = (
        "body",
        "content_type",
        "environ",
        "finished",
        "iterated",
        "middleware",
        "server_start_response",
        "started",
        "status",
    )

    def __init__(
        self, middleware: HeadcountMiddleware, environ: Environ, start_response: StartResponse
    ) -> None:
        self.middleware = middleware
        self.environ = environ
        self.server_start_response = start_response
        self.status = 0
        self.content_type: str | None = None
        self.finished = False
        self.iterated = False
        self.body: Iterable[bytes] = ()
        self.started = perf_counter()

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
    ) -> Callable[[bytes], object]:
        self.status = status_code(status)
        for name, value in headers:
            if name.lower() == "content-type":
                self.content_type = value
                break
        if exc_info is None:
            return self.server_start_response(status, headers)
        return self.server_start_response(status, headers, exc_info)

    def __iter__(self) -> Iterator[bytes]:
        self.iterated = True
        try:
            yield from self.body
        except Exception:
            self.finish(failed=True)
            raise

    def close(self) -> None:
        if not self.iterated and not self.status:
            # Closed before the server asked for any of it: the client went away and
            # no response was sent, so there is nothing to count (not a 5xx).
            self.finished = True
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        except Exception:
            self.finish(failed=True)
            raise
        finally:
            self.finish()

    def finish(self, *, failed: bool = False) -> None:
        if self.finished:
            return
        self.finished = True
        elapsed = perf_counter() - self.started
        # No status means the app never called start_response: the server will
        # answer 500 for it.
        status = 500 if failed or not self.status else self.status
        middleware = self.middleware
        try:
            route, from_app = middleware.route(self.environ)
            info = environ_request_info(
                self.environ, route, status, elapsed, self.content_type, from_app
            )
        except Exception:
            # Describing the request must never break serving it.
            middleware.log.exception("describe-wsgi", "headcount could not describe a WSGI request")
            return
        if route is None and 200 <= status < 300 and not middleware._told_about_routes:
            middleware.tell_about_routes(status)
        middleware.tracker.record_request(info)


def _hook_file_wrapper(body: Any, request: _Response) -> Iterable[bytes]:
    """Return the server's own file wrapper, so it can still send the file efficiently
    (sendfile), with our finish added to its close()."""
    original_close = getattr(body, "close", None)

    def close() -> None:
        try:
            if original_close is not None:
                original_close()
        finally:
            request.finish()

    try:
        body.close = close
    except (AttributeError, TypeError):
        # A wrapper implemented in C may refuse new attributes: count the request
        # now rather than give up the server's file optimisation.
        request.finish()
    passed_through: Iterable[bytes] = body
    return passed_through
