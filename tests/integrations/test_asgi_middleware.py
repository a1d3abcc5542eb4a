"""The ASGI middleware under Starlette and FastAPI, and as a bare ASGI wrapper."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import HTMLResponse, StreamingResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket

from headcount import Tracker, set_route
from headcount.integrations.asgi import HeadcountMiddleware
from headcount.testing import RecordingCollector

from .conftest import (
    BROWSER,
    HOSTILE_HEADERS,
    HOSTILE_QUERY,
    assert_no_secrets,
    pageview_routes,
    requests_of,
)


async def page(request: StarletteRequest) -> HTMLResponse:
    return HTMLResponse("<h1>page</h1>")


async def boom(request: StarletteRequest) -> HTMLResponse:
    raise LookupError("the app's own error")


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text(await websocket.receive_text())
    await websocket.close()


def starlette_app(tracker: Tracker) -> Starlette:
    org_routes = [Route("/projects/{project}", page), Route("/", page)]
    app = Starlette(
        routes=[
            Route("/", page),
            Route("/users/{id:int}", page),
            Route("/boom", boom),
            Mount("/orgs/{org}", routes=org_routes),
            Mount("/docs", routes=[Route("/pages/{name}", page)]),
            WebSocketRoute("/ws", echo),
        ]
    )
    app.add_middleware(HeadcountMiddleware, tracker=tracker)
    return app


def test_starlette_templates_for_matched_id_and_mounted_routes(tracker: Tracker) -> None:
    client = TestClient(starlette_app(tracker), headers={"User-Agent": BROWSER})
    for path in ("/", "/users/42", "/users/43", "/orgs/acme/projects/rocket", "/docs/pages/intro"):
        assert client.get(path).status_code == 200

    assert requests_of(tracker) == {
        ("/", "GET", "2xx"): 1,
        ("/users/{id}", "GET", "2xx"): 2,
        ("/orgs/{org}/projects/{project}", "GET", "2xx"): 1,
        ("/docs/pages/{name}", "GET", "2xx"): 1,
    }
    assert pageview_routes(tracker)["/users/{id}"] == 2


def test_an_endpoint_can_set_the_route_of_a_cms_page(tracker: Tracker) -> None:
    async def cms_page(request: StarletteRequest) -> HTMLResponse:
        slug = request.path_params["slug"]
        if slug not in ("about", "about/team", "tok_9sd8f7g6h5j4k3l2"):
            return HTMLResponse("<h1>no such page</h1>", status_code=404)
        set_route(request, request.url.path)
        return HTMLResponse("<h1>cms</h1>")

    app = Starlette(routes=[Route("/{slug:path}", cms_page)])
    app.add_middleware(HeadcountMiddleware, tracker=tracker)
    client = TestClient(app, headers={"User-Agent": BROWSER})
    for path in ("/about", "/about", "/about/team", "/tok_9sd8f7g6h5j4k3l2"):
        assert client.get(path).status_code == 200
    assert client.get("/.env").status_code == 404
    assert pageview_routes(tracker) == {"/about": 2, "/about/team": 1, "/{id}": 1}
    assert requests_of(tracker)[("/{slug}", "GET", "4xx")] == 1


def test_numbered_routes_are_remembered_but_paths_an_app_names_are_not(tracker: Tracker) -> None:
    """The router's path is the app's code, so the tracker keeps its coarsening though a
    segment became {id}; a path the endpoint passes to set_route, or an app writes into
    the scope itself, may be the visitor's own."""

    async def named(request: StarletteRequest) -> HTMLResponse:
        set_route(request, request.url.path)
        return HTMLResponse("<h1>cms</h1>")

    def scope_route(app: Any) -> Any:
        async def wrapped(scope: Any, receive: Any, send: Any) -> None:
            if scope["path"].startswith("/raw/"):
                scope["headcount.route"] = scope["path"]
            await app(scope, receive, send)

        return wrapped

    inner = Starlette(
        routes=[
            Route("/docs/page-1026", page),
            Route("/pages/{slug}", named),
            Route("/raw/{slug}", page),
        ]
    )
    app = HeadcountMiddleware(scope_route(inner), tracker=tracker)
    client = TestClient(app, headers={"User-Agent": BROWSER})
    for path in ("/docs/page-1026", "/pages/tok_9sd8f7g6h5j4k3l2", "/raw/tok_1qa2ws3ed4rf5tg6"):
        assert client.get(path).status_code == 200
    assert pageview_routes(tracker) == {"/docs/{id}": 1, "/pages/{id}": 1, "/raw/{id}": 1}
    assert "/docs/page-1026" in tracker._route_infos
    assert "/pages/tok_9sd8f7g6h5j4k3l2" not in tracker._route_infos
    assert "/raw/tok_1qa2ws3ed4rf5tg6" not in tracker._route_infos


def test_starlette_404_and_405_are_unmatched(tracker: Tracker) -> None:
    client = TestClient(starlette_app(tracker))
    assert client.get("/users/not-a-number").status_code == 404
    assert client.get("/orgs/acme/nothing/here").status_code == 404
    assert client.post("/users/42").status_code == 405

    assert requests_of(tracker) == {
        ("(unmatched)", "GET", "4xx"): 2,
        ("(unmatched)", "POST", "4xx"): 1,
    }


def test_exception_is_a_5xx_and_propagates(tracker: Tracker) -> None:
    client = TestClient(starlette_app(tracker))
    with pytest.raises(LookupError, match="the app's own error"):
        client.get("/boom")
    assert requests_of(tracker) == {("/boom", "GET", "5xx"): 1}


def test_a_background_task_failing_after_the_answer_leaves_the_answer_as_it_was(
    tracker: Tracker,
) -> None:
    """The visitor got the whole page with 200; a task the app runs after it failing is
    the app's problem, not what the visitor saw (it was counted 5xx, its pageview lost)."""
    from starlette.background import BackgroundTask

    def fails() -> None:
        raise LookupError("after the answer")

    async def with_task(request: StarletteRequest) -> HTMLResponse:
        return HTMLResponse("<h1>done</h1>", background=BackgroundTask(fails))

    app = Starlette(routes=[Route("/signup", with_task), Route("/boom", boom)])
    app.add_middleware(HeadcountMiddleware, tracker=tracker)
    client = TestClient(app, raise_server_exceptions=False)
    assert client.get("/signup", headers={"User-Agent": BROWSER}).status_code == 200
    assert client.get("/boom", headers={"User-Agent": BROWSER}).status_code == 500
    assert requests_of(tracker) == {("/signup", "GET", "2xx"): 1, ("/boom", "GET", "5xx"): 1}
    assert pageview_routes(tracker) == {"/signup": 1}


def test_head_and_options_are_never_pageviews(tracker: Tracker) -> None:
    client = TestClient(starlette_app(tracker))
    client.head("/users/1")
    client.options("/users/1")
    # Starlette answers HEAD for GET routes; OPTIONS has no handler, so it is a 405.
    assert requests_of(tracker) == {
        ("/users/{id}", "HEAD", "2xx"): 1,
        ("(unmatched)", "OPTIONS", "4xx"): 1,
    }
    assert pageview_routes(tracker) == {}


def test_websocket_is_passed_through_and_not_counted(tracker: Tracker) -> None:
    client = TestClient(starlette_app(tracker))
    with client.websocket_connect("/ws") as websocket:
        websocket.send_text("hello")
        assert websocket.receive_text() == "hello"
    assert tracker.peek() == []


def test_hostile_requests_leave_no_trace(tracker: Tracker) -> None:
    client = TestClient(starlette_app(tracker), client=("203.0.113.77", 5000))
    for segment in ("alice@example.com", "tok_9sd8f7g6h5j4k3l2"):
        client.get(
            f"/orgs/{segment}/projects/{segment}", params=HOSTILE_QUERY, headers=HOSTILE_HEADERS
        )
        client.get(f"/{segment}", params=HOSTILE_QUERY, headers=HOSTILE_HEADERS)
    assert_no_secrets(tracker.peek())
    assert ("/orgs/{org}/projects/{project}", "GET", "2xx") in requests_of(tracker)


# --- FastAPI ------------------------------------------------------------------------


def fastapi_app(tracker: Tracker) -> FastAPI:
    app = FastAPI()
    app.add_middleware(HeadcountMiddleware, tracker=tracker)

    @app.get("/users/{id}", response_class=HTMLResponse)
    def user(id: int) -> str:
        return "<h1>user</h1>"

    members = APIRouter()

    @members.get("/{member_id}")
    def member(member_id: str) -> dict[str, str]:
        return {}

    teams = APIRouter(prefix="/teams/{team}")
    teams.include_router(members, prefix="/members")
    app.include_router(teams, prefix="/api")

    sub = FastAPI()

    @sub.get("/items/{item_id:int}", response_class=HTMLResponse)
    def item(item_id: int) -> str:
        return "<h1>item</h1>"

    app.mount("/shop", sub)
    return app


def test_fastapi_included_router_prefixes_and_mounts(tracker: Tracker) -> None:
    client = TestClient(fastapi_app(tracker), headers={"User-Agent": BROWSER})
    assert client.get("/users/5").status_code == 200
    assert client.get("/api/teams/red/members/alice").status_code == 200
    assert client.get("/shop/items/12").status_code == 200
    assert client.get("/shop/nothing").status_code == 404
    assert client.get("/users/not-an-int").status_code == 422

    assert requests_of(tracker) == {
        ("/users/{id}", "GET", "2xx"): 1,
        ("/api/teams/{team}/members/{member_id}", "GET", "2xx"): 1,
        ("/shop/items/{item_id}", "GET", "2xx"): 1,
        ("(unmatched)", "GET", "4xx"): 1,
        ("/users/{id}", "GET", "4xx"): 1,
    }
    assert pageview_routes(tracker) == {"/users/{id}": 1, "/shop/items/{item_id}": 1}


# --- bare ASGI ----------------------------------------------------------------------


def test_streamed_body_is_counted_when_the_app_returns(tracker: Tracker) -> None:
    seen_before_end: list[int] = []

    def chunks() -> Iterator[str]:
        yield "<p>one</p>"
        seen_before_end.append(len(tracker.peek()))
        yield "<p>two</p>"

    async def stream(request: StarletteRequest) -> StreamingResponse:
        return StreamingResponse(chunks(), media_type="text/html")

    app = Starlette(routes=[Route("/feed", stream)])
    client = TestClient(HeadcountMiddleware(app, tracker))
    assert client.get("/feed").text == "<p>one</p><p>two</p>"
    assert seen_before_end == [0]
    assert requests_of(tracker) == {("/feed", "GET", "2xx"): 1}


def test_lifespan_and_websocket_scopes_reach_the_app_untouched(tracker: Tracker) -> None:
    calls: list[tuple[Any, Any, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        calls.append((scope, receive, send))

    async def receive() -> dict[str, Any]:
        return {"type": "lifespan.startup"}

    async def send(message: Any) -> None:
        pass

    middleware = HeadcountMiddleware(app, tracker)
    for scope in (
        {"type": "lifespan", "asgi": {"version": "3.0"}},
        {"type": "websocket", "path": "/ws"},
    ):
        asyncio.run(middleware(scope, receive, send))
        assert calls[-1][0] is scope
        assert calls[-1][1] is receive
    assert calls[-1][2] is send  # the websocket's; a lifespan's send is watched (below)
    assert tracker.peek() == []


def test_the_end_of_a_lifespan_sends_the_last_counts_before_the_server_hears_of_it() -> None:
    """uvicorn ends a worker stopped by SIGTERM without running exit hooks, so the
    middleware sends what is counted when the app's lifespan ends."""
    collector = RecordingCollector(write_token="t")
    tracker = Tracker(
        "http://collector.test", "t", transport=collector.transport(), flush_interval=86400
    )
    forwarded: list[tuple[str, int]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        for message in ("lifespan.startup.complete", "lifespan.shutdown.complete"):
            await receive()
            await send({"type": message})

    async def server(message: Any) -> None:
        forwarded.append((message["type"], len(collector.batches)))

    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

    async def receive() -> Any:
        return next(messages)

    middleware = HeadcountMiddleware(app, tracker)
    assert TestClient(middleware).get("/").status_code == 200
    asyncio.run(middleware({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, server))
    # Started without a send; shutdown complete only once the count had been delivered.
    assert forwarded == [("lifespan.startup.complete", 0), ("lifespan.shutdown.complete", 1)]
    assert tracker.stats().sent == 1
    # A flush, not a shutdown: an app can live through several lifespans in one process
    # (a test suite's clients), and the tracker keeps counting after each.
    assert TestClient(middleware).get("/").status_code == 200
    assert tracker.stats().recorded == 2
    tracker.shutdown(1)


def test_request_cancelled_before_a_response_is_not_counted(tracker: Tracker) -> None:
    async def hangs(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.sleep(60)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        pass

    async def run() -> None:
        scope = {"type": "http", "method": "GET", "path": "/", "headers": []}
        task = asyncio.ensure_future(HeadcountMiddleware(hangs, tracker)(scope, receive, send))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    assert tracker.peek() == []


def test_app_returning_without_a_response_is_a_5xx(tracker: Tracker) -> None:
    async def silent(scope: Any, receive: Any, send: Any) -> None:
        pass

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        pass

    scope = {"type": "http", "method": "GET", "path": "/", "headers": []}
    asyncio.run(HeadcountMiddleware(silent, tracker)(scope, receive, send))
    assert requests_of(tracker) == {("(unmatched)", "GET", "5xx"): 1}


def test_fastapi_example_pages_are_counted_by_template(tracker: Tracker) -> None:
    from examples.fastapi_app.app import create_app

    with TestClient(
        create_app(tracker), raise_server_exceptions=False, headers={"User-Agent": BROWSER}
    ) as client:
        for path in (
            "/",
            "/about",
            "/users/",
            "/users/2",
            "/contact",
            "/help/",
            "/help/articles/privacy",
        ):
            response = client.get(path)
            assert response.status_code == 200, path
            assert "<nav>" in response.text
        sent = client.post("/contact", data={"name": "Ada"}, follow_redirects=False)
        assert sent.status_code == 303
        assert client.get("/users/99").status_code == 404
        assert client.get("/help/articles/nope").status_code == 404
        assert client.get("/missing").status_code == 404
        assert client.get("/boom").status_code == 500
        assert client.get("/report.csv").text.startswith("id,name")
        counted = requests_of(tracker)
    # Leaving the client ran the lifespan shutdown, which sent what was counted.
    assert tracker.stats().sent == 1
    assert tracker.peek() == []

    assert counted[("/users/{id}", "GET", "2xx")] == 1
    assert counted[("/users/{id}", "GET", "4xx")] == 1
    assert counted[("/help/articles/{slug}", "GET", "2xx")] == 1
    assert counted[("/help/articles/{slug}", "GET", "4xx")] == 1
    assert counted[("(unmatched)", "GET", "4xx")] == 1
    assert counted[("/contact", "POST", "3xx")] == 1
    assert counted[("/boom", "GET", "5xx")] == 1
    assert counted[("/report.csv", "GET", "2xx")] == 1
