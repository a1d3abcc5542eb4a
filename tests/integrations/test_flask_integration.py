"""The Flask extension, through Flask's test client, on a purpose-built app and the example."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from flask import Flask, Response, abort, request, stream_with_context
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from headcount import Tracker, set_route
from headcount.integrations.flask import Headcount

from .conftest import (
    BROWSER,
    HOSTILE_HEADERS,
    HOSTILE_QUERY,
    assert_no_secrets,
    make_tracker,
    pageview_routes,
    requests_of,
)


class BufferedClient(FlaskClient):
    """Werkzeug's client closes a response, which is when it is counted, only when it
    buffers the body or the test closes the response; these tests read whole pages.

    It presents itself as a browser: its own ``Werkzeug/x.y`` user agent is a program's,
    which counts as a bot."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.environ_base["HTTP_USER_AGENT"] = BROWSER

    def open(self, *args: Any, buffered: bool = True, **kwargs: Any) -> TestResponse:
        return super().open(*args, buffered=buffered, **kwargs)


def build_app(tracker: Tracker) -> Flask:
    app = Flask(__name__)
    app.test_client_class = BufferedClient
    Headcount(app, tracker=tracker)

    @app.get("/users/<int:id>")
    def user(id: int) -> str:
        return "<h1>user</h1>"

    @app.get("/docs/page-1026")
    def numbered_doc() -> str:
        return "<h1>doc</h1>"

    @app.get("/posts/<path:slug>")
    def post(slug: str) -> str:
        return "<h1>post</h1>"

    @app.get("/feed")
    def feed() -> Response:
        def items() -> Iterator[str]:
            yield "<p>one</p>"
            yield "<p>two</p>"

        return Response(stream_with_context(items()), mimetype="text/html")

    @app.get("/boom")
    def boom() -> str:
        raise LookupError("the app's own error")

    @app.get("/pages/<path:slug>")
    def cms_page(slug: str) -> str:
        if slug not in ("about", "about/team", "id-3f2b8c1e-9d4a-4b7e-8f1a-2c3d4e5f6a7b"):
            abort(404)
        set_route(request, request.path)
        return "<h1>cms</h1>"

    return app


def test_a_view_can_set_the_route_of_a_cms_page(tracker: Tracker) -> None:
    client = build_app(tracker).test_client()
    for path in ("/pages/about", "/pages/about", "/pages/about/team"):
        assert client.get(path).status_code == 200
    assert client.get("/pages/id-3f2b8c1e-9d4a-4b7e-8f1a-2c3d4e5f6a7b").status_code == 200
    assert client.get("/pages/wp-admin/setup.php").status_code == 404
    assert pageview_routes(tracker) == {
        "/pages/about": 2,
        "/pages/about/team": 1,
        "/pages/{id}": 1,
    }
    # The view never named a route for a page that does not exist: the rule stays.
    assert requests_of(tracker)[("/pages/{slug}", "GET", "4xx")] == 1
    assert b"3f2b8c1e" not in repr(tracker.peek()).encode()


def test_numbered_rules_are_remembered_but_paths_a_view_names_are_not(tracker: Tracker) -> None:
    """The rule is the app's code, so the tracker keeps its coarsening even though a
    segment became {id}; a path the view passes to set_route may be the visitor's own."""
    client = build_app(tracker).test_client()
    assert client.get("/docs/page-1026").status_code == 200
    named = "/pages/id-3f2b8c1e-9d4a-4b7e-8f1a-2c3d4e5f6a7b"
    assert client.get(named).status_code == 200
    assert pageview_routes(tracker) == {"/docs/{id}": 1, "/pages/{id}": 1}
    assert "/docs/page-1026" in tracker._route_infos
    assert named not in tracker._route_infos


def test_a_route_written_into_the_environ_after_the_rule_is_not_trusted(tracker: Tracker) -> None:
    """A teardown registered before Headcount's runs after it (Flask runs them in
    reverse) and may write a path into the environ itself, as a routing layer may: the
    rule's mark must not vouch for it."""
    app = Flask(__name__)
    app.test_client_class = BufferedClient
    written = "/legacy/tok_9sd8f7g6h5j4k3l2"

    @app.teardown_request
    def name_legacy_pages(error: BaseException | None) -> None:
        request.environ["headcount.route"] = request.path

    Headcount(app, tracker=tracker)

    @app.get("/legacy/<path:rest>")
    def legacy(rest: str) -> str:
        return "<h1>legacy</h1>"

    assert app.test_client().get(written).status_code == 200
    assert pageview_routes(tracker) == {"/legacy/{id}": 1}
    assert written not in tracker._route_infos


def test_set_route_refuses_what_is_not_a_request_or_a_string() -> None:
    with pytest.raises(TypeError, match="request object"):
        set_route(object(), "/about")
    with pytest.raises(TypeError, match="route must be a string"):
        set_route({}, b"/about")  # type: ignore[arg-type]


def test_rule_templates_and_unmatched(tracker: Tracker) -> None:
    client = build_app(tracker).test_client()
    assert client.get("/users/1").status_code == 200
    assert client.get("/users/2").status_code == 200
    assert client.get("/posts/2024/hello").status_code == 200
    assert client.get("/users/not-a-number").status_code == 404
    assert client.post("/users/1").status_code == 405

    assert requests_of(tracker) == {
        ("/users/{id}", "GET", "2xx"): 2,
        ("/posts/{slug}", "GET", "2xx"): 1,
        ("(unmatched)", "GET", "4xx"): 1,
        ("(unmatched)", "POST", "4xx"): 1,
    }
    assert pageview_routes(tracker) == {"/users/{id}": 2, "/posts/{slug}": 1}


def test_streamed_response_counted_after_the_body_closes(tracker: Tracker) -> None:
    client = build_app(tracker).test_client()
    response = client.get("/feed", buffered=False)
    assert tracker.peek() == []
    assert b"".join(response.iter_encoded()) == b"<p>one</p><p>two</p>"
    response.close()
    assert requests_of(tracker) == {("/feed", "GET", "2xx"): 1}


def test_exception_is_a_5xx_whether_flask_propagates_it_or_not(tracker: Tracker) -> None:
    app = build_app(tracker)
    app.testing = True
    with pytest.raises(LookupError, match="the app's own error"):
        app.test_client().get("/boom")
    app.testing = False
    assert app.test_client().get("/boom").status_code == 500
    assert requests_of(tracker) == {("/boom", "GET", "5xx"): 2}


def test_head_and_options_are_never_pageviews(tracker: Tracker) -> None:
    client = build_app(tracker).test_client()
    client.head("/users/1")
    client.options("/users/1")
    assert requests_of(tracker) == {
        ("/users/{id}", "HEAD", "2xx"): 1,
        ("/users/{id}", "OPTIONS", "2xx"): 1,
    }
    assert pageview_routes(tracker) == {}


def test_excluded_routes_are_load_but_never_pageviews() -> None:
    tracker = make_tracker(exclude_routes=["/users/*"])
    try:
        client = build_app(tracker).test_client()
        client.get("/users/1")
        client.get("/posts/x")
        assert requests_of(tracker) == {
            ("/users/{id}", "GET", "2xx"): 1,
            ("/posts/{slug}", "GET", "2xx"): 1,
        }
        assert pageview_routes(tracker) == {"/posts/{slug}": 1}
    finally:
        tracker.shutdown(timeout=1.0)


def test_hostile_requests_leave_no_trace(tracker: Tracker) -> None:
    client = build_app(tracker).test_client()
    for segment in ("alice@example.com", "3f2b8c1e-9d4a-4b7e-8f1a-2c3d4e5f6a7b"):
        client.get(
            f"/posts/{segment}",
            query_string=HOSTILE_QUERY,
            headers=HOSTILE_HEADERS,
            environ_base={"REMOTE_ADDR": "203.0.113.77"},
        )
        client.get(f"/{segment}", query_string=HOSTILE_QUERY, headers=HOSTILE_HEADERS)
    assert_no_secrets(tracker.peek())


def test_options_come_from_app_config() -> None:
    sent: list[httpx.Request] = []

    def collector(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(204)

    app = Flask(__name__)
    app.test_client_class = BufferedClient
    app.config.update(
        HEADCOUNT_ENDPOINT="http://collector.invalid",
        HEADCOUNT_WRITE_TOKEN="flask-config-token",
        HEADCOUNT_FLUSH_INTERVAL=3600.0,
        HEADCOUNT_TRANSPORT=httpx.MockTransport(collector),
    )
    headcount = Headcount()
    headcount.init_app(app)

    @app.get("/")
    def home() -> str:
        return "<h1>home</h1>"

    app.test_client().get("/")
    with app.app_context():
        tracker = headcount.tracker
    assert tracker is app.extensions["headcount"]
    assert requests_of(tracker) == {("/", "GET", "2xx"): 1}
    tracker.flush(timeout=5.0)
    tracker.shutdown(timeout=1.0)
    assert sent, "the flush reached the collector"
    assert sent[0].url.host == "collector.invalid"
    assert b"flask-config-token" in b"".join(v for _, v in sent[0].headers.raw)


def test_unknown_config_option_is_rejected() -> None:
    app = Flask(__name__)
    app.config.update(HEADCOUNT_ENDPOINT="http://collector.invalid", HEADCOUNT_ENDPIONT="typo")
    with pytest.raises(ValueError, match=r"(?i)endpiont"):
        Headcount(app)


def test_example_app_pages_are_counted_by_template() -> None:
    from examples.flask_app.app import create_app

    app = create_app(
        {
            "HEADCOUNT_ENABLED": True,
            "HEADCOUNT_ENDPOINT": "http://collector.invalid",
            "HEADCOUNT_WRITE_TOKEN": "example-token",
            "HEADCOUNT_FLUSH_INTERVAL": 3600.0,
            "HEADCOUNT_TRANSPORT": httpx.MockTransport(lambda request: httpx.Response(204)),
        }
    )
    tracker: Tracker = app.extensions["headcount"]
    app.test_client_class = BufferedClient
    client = app.test_client()
    try:
        for path in ("/", "/about", "/users/", "/users/2", "/contact"):
            response = client.get(path)
            assert response.status_code == 200, path
            assert b"<nav>" in response.data
        assert client.post("/contact", data={"name": "Ada"}).status_code == 302
        assert client.get("/users/99").status_code == 404
        assert client.get("/missing").status_code == 404
        assert client.get("/boom").status_code == 500
        assert client.get("/report.csv").data.startswith(b"id,name")

        counted = requests_of(tracker)
        assert counted[("/users/{id}", "GET", "2xx")] == 1
        assert counted[("/users/{id}", "GET", "4xx")] == 1
        assert counted[("(unmatched)", "GET", "4xx")] == 1
        assert counted[("/contact", "POST", "3xx")] == 1
        assert counted[("/boom", "GET", "5xx")] == 1
        assert counted[("/report.csv", "GET", "2xx")] == 1
        assert pageview_routes(tracker) == {
            "/": 1,
            "/about": 1,
            "/users": 1,
            "/users/{id}": 1,
            "/contact": 1,
        }
    finally:
        tracker.shutdown(timeout=1.0)


def test_example_app_counts_nothing_without_a_collector(monkeypatch: pytest.MonkeyPatch) -> None:
    from examples.flask_app.app import create_app

    monkeypatch.delenv("HEADCOUNT_ENDPOINT", raising=False)
    monkeypatch.delenv("HEADCOUNT_ENABLED", raising=False)
    app = create_app()
    assert app.test_client().get("/").status_code == 200
    assert app.extensions["headcount"].peek() == []


def test_a_flask_page_without_a_route_is_not_taken_for_a_bare_wsgi_app(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A single-page app's fallback answers 200 from its 404 handler: Flask routed it,
    so the bare-WSGI hint would mislead."""
    from flask import Flask

    from headcount import Tracker
    from headcount.integrations.flask import Headcount

    app = Flask(__name__)
    app.register_error_handler(404, lambda error: ("<p>app shell</p>", 200))
    tracker = Tracker("http://collector.invalid", "t", flush_interval=86400)
    Headcount(app, tracker=tracker)
    with caplog.at_level("WARNING", logger="headcount"):
        response = app.test_client().get("/some/client/route", headers={"User-Agent": BROWSER})
        response.close()  # the server's close: the request is counted now
    assert response.status_code == 200
    assert requests_of(tracker) == {("(unmatched)", "GET", "2xx"): 1}
    assert not [r for r in caplog.records if "no route template" in r.getMessage()]
    tracker.shutdown(0.1)
