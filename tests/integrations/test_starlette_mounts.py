"""Mount prefixes resolve to templates, through middleware, literal mounts first; a mount
the router tree does not show is unmatched, never its concrete path text."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route, Router
from starlette.testclient import TestClient

from headcount import Tracker, wire
from headcount.integrations.asgi import HeadcountMiddleware


def tracker() -> Tracker:
    return Tracker(
        "http://collector.invalid", "tok",
        transport=httpx.MockTransport(lambda request: httpx.Response(202)),
        flush_interval=86400,
    )  # fmt: skip


async def ok(request: Request) -> Response:
    return PlainTextResponse("ok")


def routes_of(tracker: Tracker) -> set[str]:
    return {r.route for r in tracker.peek() if isinstance(r, wire.Request)}


def test_mount_templates_through_middleware_and_literal_first() -> None:
    inner = Router([Mount("/deep/{d}", routes=[Route("/z", ok)])])
    app = Starlette(
        routes=[
            Mount("/wrapped/{w}", app=CORSMiddleware(inner, allow_origins=["*"])),
            Mount("/orgs/new", routes=[Route("/x", ok)]),
            Mount("/orgs/{org}", routes=[Route("/x", ok)]),
        ]
    )
    counted = tracker()
    client = TestClient(HeadcountMiddleware(app, counted))
    for path in ("/wrapped/alice/deep/bob/z", "/orgs/new/x", "/orgs/acme/x"):
        assert client.get(path).status_code == 200
    assert routes_of(counted) == {"/wrapped/{w}/deep/{d}/z", "/orgs/new/x", "/orgs/{org}/x"}
    counted.shutdown(1)


def test_latency_ends_with_the_response_not_its_background_task() -> None:
    async def slow_after(request: Request) -> Response:
        return PlainTextResponse("ok", background=BackgroundTask(asyncio.sleep, 2.6))

    counted = tracker()
    client = TestClient(HeadcountMiddleware(Starlette(routes=[Route("/", slow_after)]), counted))
    assert client.get("/").status_code == 200
    [request] = [r for r in counted.peek() if isinstance(r, wire.Request)]
    # The background task takes 2.6 s; the response itself is ready at once, and even a
    # busy machine answers well inside a second.
    assert request.latency in wire.LATENCY_LABELS[:7], request.latency
    counted.shutdown(1)


def test_static_files_mounted_in_fastapi_and_starlette_count_under_their_prefix(
    tmp_path: Path,
) -> None:
    from fastapi import FastAPI
    from starlette.staticfiles import StaticFiles

    (tmp_path / "app.css").write_text("body {}", encoding="utf-8")
    fastapi_app = FastAPI()
    fastapi_app.mount("/static", StaticFiles(directory=tmp_path), name="static")
    starlette_app = Starlette(routes=[Mount("/assets", StaticFiles(directory=tmp_path))])
    for app, prefix in ((fastapi_app, "/static"), (starlette_app, "/assets")):
        counted = tracker()
        client = TestClient(HeadcountMiddleware(app, counted))
        assert client.get(f"{prefix}/app.css").status_code == 200
        assert client.get(f"{prefix}/alice@example.com.css").status_code == 404
        requests = {(r.route, r.status) for r in counted.peek() if isinstance(r, wire.Request)}
        assert requests == {(f"{prefix}/{{path}}", "2xx"), ("(unmatched)", "4xx")}, app
        counted.shutdown(1)
