"""The generic WSGI middleware, driven directly, through werkzeug's client and wsgiref."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.util import FileWrapper, setup_testing_defaults

import httpx
import pytest
from werkzeug.test import Client

from headcount import Tracker
from headcount.integrations.wsgi import HeadcountMiddleware

from .conftest import (
    BROWSER,
    HOSTILE_HEADERS,
    HOSTILE_QUERY,
    assert_no_secrets,
    pageview_routes,
    requests_of,
)

StartResponse = Callable[..., Any]


def html_app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    route = {"/": "/", "/users/7": "/users/<int:id>"}.get(environ["PATH_INFO"])
    if route is None:
        start_response("404 Not Found", [("Content-Type", "text/html")])
        return [b"<h1>no</h1>"]
    environ["headcount.route"] = route
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
    return [b"<h1>hi</h1>"]


def environ_for(path: str = "/", method: str = "GET") -> dict[str, Any]:
    environ: dict[str, Any] = {"PATH_INFO": path, "REQUEST_METHOD": method}
    setup_testing_defaults(environ)
    return environ


def collect(status_headers: list[Any]) -> StartResponse:
    def start_response(status: str, headers: list[Any], exc_info: Any = None) -> Any:
        status_headers[:] = [status, headers]
        return lambda data: None

    return start_response


def test_route_from_environ_key_and_unmatched(tracker: Tracker) -> None:
    client = Client(HeadcountMiddleware(html_app, tracker))
    browser = {"User-Agent": BROWSER}
    assert client.get("/users/7", headers=browser).status_code == 200
    assert client.get("/", headers=browser).status_code == 200
    assert client.get("/nowhere/alice@example.com", headers=browser).status_code == 404

    assert requests_of(tracker) == {
        ("/users/{id}", "GET", "2xx"): 1,
        ("/", "GET", "2xx"): 1,
        ("(unmatched)", "GET", "4xx"): 1,
    }
    assert pageview_routes(tracker) == {"/users/{id}": 1, "/": 1}


def test_a_made_up_path_the_app_generalized_itself_is_unmatched_when_not_found(
    tracker: Tracker,
) -> None:
    """A bare WSGI app that routes every path through generalize_path answers 404 for
    paths nobody published: those are the visitor's own words (a name, a passphrase
    token), which no shape test can tell from a page's name. A review got them sent."""
    from headcount import generalize_path

    answers = {"/about/team": "200 OK", "/pricing": "200 OK", "/gone/jane-doe": "410 Gone",
               "/private/alice-smith": "401 Unauthorized", "/admin/bob-jones": "403 Forbidden",
               "/login-first/carol-white": "302 Found", "/slash/dave-brown": "301 Moved"}  # fmt: skip

    def generalizing(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ["PATH_INFO"]
        environ["headcount.route"] = generalize_path(path)
        start_response(answers.get(path, "404 Not Found"), [("Content-Type", "text/html")])
        return [b"<p>hi</p>"]

    client = Client(HeadcountMiddleware(generalizing, tracker))
    browser = {"User-Agent": BROWSER}
    for path in [*answers, "/u/jane-doe", "/reset/correct-horse-battery-staple"]:
        client.get(path, headers=browser).close()
    counted = requests_of(tracker)
    assert counted[("(unmatched)", "GET", "4xx")] == 3  # 410 and two 404s
    assert not any("jane" in route or "horse" in route for route, _, _ in counted)
    # A refusal or a redirect keeps the route the app set (here the visitor's words: the
    # README tells such an app to name its pages instead).
    assert counted[("/private/alice-smith", "GET", "4xx")] == 1
    assert counted[("/login-first/carol-white", "GET", "3xx")] == 1


def test_an_app_that_never_sets_a_route_is_told_once(
    tracker: Tracker, caplog: pytest.LogCaptureFixture
) -> None:
    def routeless(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/html")])
        return [b"<p>hi</p>"]

    browser = {"User-Agent": BROWSER}
    with caplog.at_level("WARNING", logger="headcount"):
        # An app that sets its routes, with a 404 without one: nothing to say.
        routed = Client(HeadcountMiddleware(html_app, tracker))
        assert routed.get("/", headers=browser).status_code == 200
        assert routed.get("/nowhere", headers=browser).status_code == 404
        assert not caplog.records
        bare = Client(HeadcountMiddleware(routeless, tracker))
        for path in ("/a", "/b/1", "/c"):
            assert bare.get(path, headers=browser).status_code == 200
    (told,) = [r.getMessage() for r in caplog.records]
    assert "had no route template" in told
    assert 'environ["headcount.route"]' in told
    assert "/b/1" not in told  # the path itself is never logged
    assert requests_of(tracker)[("(unmatched)", "GET", "2xx")] == 3


def test_head_and_options_are_requests_but_never_pageviews(tracker: Tracker) -> None:
    client = Client(HeadcountMiddleware(html_app, tracker))
    client.head("/users/7")
    client.options("/users/7")

    assert requests_of(tracker) == {
        ("/users/{id}", "HEAD", "2xx"): 1,
        ("/users/{id}", "OPTIONS", "2xx"): 1,
    }
    assert pageview_routes(tracker) == {}


def test_streamed_body_is_counted_only_when_the_server_closes_it(tracker: Tracker) -> None:
    def streaming_app(environ: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
        environ["headcount.route"] = "/feed"
        start_response("200 OK", [("Content-Type", "text/html")])
        yield b"<p>one</p>"
        yield b"<p>two</p>"

    middleware = HeadcountMiddleware(streaming_app, tracker)
    status_headers: list[Any] = []
    body = middleware(environ_for("/feed"), collect(status_headers))
    assert tracker.peek() == []

    chunks = list(body)
    assert chunks == [b"<p>one</p>", b"<p>two</p>"]
    assert tracker.peek() == [], "a body is not finished until the server closes it"

    body.close()  # type: ignore[attr-defined]
    body.close()  # type: ignore[attr-defined]  # a second close must not count twice
    assert requests_of(tracker) == {("/feed", "GET", "2xx"): 1}


def test_close_reaches_the_apps_own_iterable(tracker: Tracker) -> None:
    closed: list[bool] = []

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            yield b"x"

        def close(self) -> None:
            closed.append(True)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Body:
        start_response("200 OK", [])
        return Body()

    body = HeadcountMiddleware(app, tracker)(environ_for(), collect([]))
    list(body)
    body.close()  # type: ignore[attr-defined]
    assert closed == [True]
    assert requests_of(tracker) == {("(unmatched)", "GET", "2xx"): 1}


def test_exception_from_the_app_is_a_5xx_and_propagates(tracker: Tracker) -> None:
    def failing(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        environ["headcount.route"] = "/boom"
        raise LookupError("the app's own error")

    with pytest.raises(LookupError, match="the app's own error"):
        HeadcountMiddleware(failing, tracker)(environ_for("/boom"), collect([]))
    assert requests_of(tracker) == {("/boom", "GET", "5xx"): 1}


def test_exception_while_streaming_is_a_5xx_even_after_a_200(tracker: Tracker) -> None:
    def breaks_midway(environ: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/html")])
        yield b"first"
        raise OSError("disk went away")

    body = HeadcountMiddleware(breaks_midway, tracker)(environ_for(), collect([]))
    iterator = iter(body)
    assert next(iterator) == b"first"
    with pytest.raises(OSError, match="disk went away"):
        next(iterator)
    body.close()  # type: ignore[attr-defined]
    assert requests_of(tracker) == {("(unmatched)", "GET", "5xx"): 1}


def test_app_that_never_starts_a_response_is_a_5xx(tracker: Tracker) -> None:
    def silent(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        return []

    HeadcountMiddleware(silent, tracker)(environ_for(), collect([]))
    assert requests_of(tracker) == {("(unmatched)", "GET", "5xx"): 1}


def test_file_wrapper_is_passed_through_so_the_server_can_sendfile(tracker: Tracker) -> None:
    closed: list[bool] = []

    class File(io.BytesIO):
        def close(self) -> None:
            closed.append(True)
            super().close()

    def app(environ: dict[str, Any], start_response: StartResponse) -> Any:
        start_response("200 OK", [("Content-Type", "application/pdf")])
        return environ["wsgi.file_wrapper"](File(b"%PDF"), 4096)

    environ = environ_for("/report.pdf")
    environ["wsgi.file_wrapper"] = FileWrapper
    body = HeadcountMiddleware(app, tracker)(environ, collect([]))

    assert type(body) is FileWrapper
    assert b"".join(body) == b"%PDF"
    assert tracker.peek() == []
    body.close()
    assert closed == [True]
    assert requests_of(tracker) == {("(unmatched)", "GET", "2xx"): 1}


def test_hostile_request_leaves_no_trace_in_records(tracker: Tracker) -> None:
    client = Client(HeadcountMiddleware(html_app, tracker))
    for segment in ("alice@example.com", "3f2b8c1e-9d4a-4b7e-8f1a-2c3d4e5f6a7b"):
        client.get(f"/{segment}", query_string=HOSTILE_QUERY, headers=HOSTILE_HEADERS)
    client.get(
        "/users/7",
        query_string=HOSTILE_QUERY,
        headers=HOSTILE_HEADERS,
        environ_overrides={"REMOTE_ADDR": "203.0.113.77"},
    )
    assert_no_secrets(tracker.peek())


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_real_wsgiref_server_counts_a_streamed_response(tracker: Tracker) -> None:
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
        environ["headcount.route"] = "/stream"
        start_response("200 OK", [("Content-Type", "text/html")])
        for index in range(3):
            yield b"<p>%d</p>" % index

    server: WSGIServer = make_server(
        "127.0.0.1", 0, HeadcountMiddleware(app, tracker), handler_class=_QuietHandler
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        response = httpx.get(f"http://127.0.0.1:{server.server_port}/stream", timeout=5)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert response.text == "<p>0</p><p>1</p><p>2</p>"
    assert requests_of(tracker) == {("/stream", "GET", "2xx"): 1}


def test_a_lazy_app_closed_before_it_started_is_not_counted(tracker: Tracker) -> None:
    def lazy_app(environ: dict[str, object], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/html")])
        yield b"<p>hi</p>"

    middleware = HeadcountMiddleware(lazy_app, tracker)
    body = middleware({"REQUEST_METHOD": "GET", "PATH_INFO": "/"}, collect([]))
    assert hasattr(body, "close")
    body.close()  # the client went away before the first chunk
    assert tracker.peek() == []


def test_several_server_processes_with_memory_visits_warn_once(
    tracker: Tracker, caplog: pytest.LogCaptureFixture
) -> None:
    def app(environ: dict[str, object], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/html")])
        return [b"<p>hi</p>"]

    middleware = HeadcountMiddleware(app, tracker)
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "wsgi.multiprocess": True}
    with caplog.at_level("WARNING", logger="headcount"):
        for _ in range(3):
            middleware(dict(environ), collect([]))
    warnings = [r for r in caplog.records if "several processes" in r.getMessage()]
    assert len(warnings) == 1
    assert "Redis" in warnings[0].getMessage()


def test_a_request_that_cannot_be_described_is_served_and_logged_once_a_minute(
    tracker: Tracker, caplog: pytest.LogCaptureFixture
) -> None:
    class BrokenRoutes(HeadcountMiddleware):
        def route(self, environ: dict[str, Any]) -> tuple[str | None, bool]:
            raise LookupError("the router is broken")

    middleware = BrokenRoutes(html_app, tracker)
    with caplog.at_level("ERROR", logger="headcount"):
        bodies = [middleware(setup_environ(), collect([])) for _ in range(5)]
    assert all(body == [b"<h1>hi</h1>"] for body in bodies)  # the app's answer, untouched
    logged = [r for r in caplog.records if "could not describe" in r.getMessage()]
    assert len(logged) == 1  # not one line per request
    assert logged[0].exc_info is not None
    assert tracker.peek() == []


def setup_environ() -> dict[str, Any]:
    environ: dict[str, Any] = {"HTTP_USER_AGENT": BROWSER}
    setup_testing_defaults(environ)
    return environ
