"""A Starlette or FastAPI app's router answers once for paths that differ only in their
digits, and only where no route can tell those digits apart: every answer equals the
resolver's own match of the same path, made without the shortcut."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from starlette.applications import Starlette
from starlette.convertors import Convertor, IntegerConvertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Host, Mount, Route, Router, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from headcount.logimport._routes import Resolved, _StarletteRoutes
from tests.logimport._digit_paths import paths_like


class CountingRoutes(_StarletteRoutes):
    """The resolver, counting the full route matches it makes."""

    matches = 0

    def _match(self, method: str, path: str) -> Resolved:
        CountingRoutes.matches += 1
        return super()._match(method, path)


class EvenConvertor(Convertor[int]):
    """An app's own convertor: its check reads the value."""

    regex = "[0-9]*[02468]"

    def convert(self, value: str) -> int:
        return int(value)

    def to_string(self, value: int) -> str:
        return str(value)


class Passthrough:
    """Middleware wrapped around a mounted app: its routes show only through it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


class OwnRoute(Route):
    """An app's own route class: the resolver cannot know how it matches."""


class OwnAPIRoute(APIRoute):
    """A FastAPI ``route_class`` of the app's own."""


async def page(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def endpoint() -> dict[str, str]:
    return {}


def starlette_app(*extra: Any, fast: bool = True) -> Starlette:
    return Starlette(
        routes=[
            Route("/", page),
            Route("/users/{user_id:int}", page),
            Route("/prices/{amount:float}", page),
            Route("/orders/{order:uuid}", page),
            Route("/docs/{page:path}", page),
            Route("/items/{item_id:int}.json", page),
            Route("/contact", page, methods=["POST"]),
            WebSocketRoute("/ws/{room:int}", page),
            Mount("/blog", routes=[Route("/{slug}", page), Route("/{slug}/{n:int}", page)]),
            Mount("/orgs/{org}", routes=[Mount("/teams", routes=[Route("/{team:int}", page)])]),
            Mount("/nested", app=Router(routes=[Route("/{x}/x", page)])),
            *([Mount("/fast", app=fastapi_app())] if fast else []),
            *extra,
            Mount("/{a}", routes=[Mount("/{b}", routes=[Route("/z", page)])]),
        ]
    )


def fastapi_app(
    prefixes: tuple[str, str] = ("/users", "/teams"), route_class: type[APIRoute] = APIRoute
) -> FastAPI:
    app = FastAPI()
    app.add_api_route("/items/{item_id}", endpoint)
    users = APIRouter(route_class=route_class)
    users.add_api_route("/{user_id}", endpoint)
    users.add_api_route("/{user_id}/posts/{post:int}", endpoint, methods=["POST"])
    members = APIRouter()
    members.add_api_route("/{member}", endpoint)
    teams = APIRouter()
    teams.add_route("/{team_id}/page", page)
    teams.include_router(members, prefix="/{team_id}/members")
    app.include_router(users, prefix=prefixes[0])
    app.include_router(teams, prefix=prefixes[1])
    return app


def with_convertor() -> Starlette:
    # Starlette's registry is global: the name stays, and nothing else here uses it.
    register_url_convertor("even", EvenConvertor())
    return starlette_app(Route("/even/{n:even}", page))


def with_narrowed_convertor() -> Starlette:
    # Starlette's own int convertor, narrowed to refuse leading zeros: it reads digits.
    nonzero = IntegerConvertor()
    nonzero.regex = "[1-9][0-9]*"  # type: ignore[misc]  # an instance narrowed, as an app might
    register_url_convertor("nonzero", nonzero)
    return starlette_app(Route("/n/{n:nonzero}", page), Route("/n/{s}", page))


def with_hidden_year_mount() -> Starlette:
    """A mount below middleware, after a mount of parameters: matching never enters it,
    but its template, /x/2024, is the one the integration picks for the concrete mount
    path /x/2024 (not /x/2023) that the mounts of parameters matched."""
    app = starlette_app()
    hidden = Starlette(routes=[Mount("/2024", routes=[])])
    app.router.routes.append(Mount("/x", app=Passthrough(hidden)))
    return app


SAMPLE_PATHS = [
    "/", "/users/1", "/users/0", "/users/007", "/users/12x", "/users/", "/prices/1.5",
    "/prices/10", "/orders/12345678-1234-1234-1234-123456789abc", "/orders/1234",
    "/docs/a/1/b2", "/items/42.json", "/items/4a.json", "/contact", "/ws/5", "/blog/post-7",
    "/blog/7/3", "/orgs/42/teams/7", "/orgs/42/teams/x7", "/nested/5/x",
    "/fast/items/3", "/fast/users/5", "/fast/teams/3/members/4", "/users/%31", "/page/2",
    "/2024/hello", "/2023/hello", "/api/v1/users/12", "/api/v2/users/12", "/api/v9/users/12",
    "/item51", "/item52", "/even/4", "/even/5", "/x/2024/z", "/x/2023/z", "/items/12",
    "/users/5", "/users/5/posts/7", "/teams/3/members/9", "/teams/3/page", "/v1/things/4",
    "/v2/things/4", "/v1/5", "/v2/5/posts/3", "/2024/5", "/2023/5", "/q/1/z", "/n/10", "/n/01",
]  # fmt: skip


# Each set: the app, whether it is blind, and for a set that is not, two paths of one
# digit shape that the router itself tells apart (so the shortcut would have been wrong).
CASES: dict[str, tuple[Callable[[], Any], bool, tuple[str, str] | None]] = {
    "starlette: default convertors, mounts, a nested router": (
        lambda: starlette_app(fast=False), True, None,
    ),
    # FastAPI's own /docs/oauth2-redirect: only whole segments of digits are alike.
    "starlette: with a FastAPI app mounted": (starlette_app, True, None),
    "starlette: v1 and v2 mounts": (
        lambda: starlette_app(
            Mount("/api/v1", routes=[Route("/users/{user_id:int}", page)]),
            Mount("/api/v2", routes=[Route("/users/{user_id}", page)]),
        ),
        True,
        None,
    ),
    "fastapi: routers included with prefixes": (fastapi_app, True, None),
    "fastapi: v1 and v2 prefixes": (lambda: fastapi_app(("/v1", "/v2")), True, None),
    "starlette: a year literal": (
        lambda: starlette_app(Route("/2024/{slug}", page)), False, ("/2024/hello", "/2023/hello"),
    ),
    "starlette: a digit beside a parameter": (
        lambda: starlette_app(Route("/item{n:int}1", page)), False, ("/item51", "/item52"),
    ),
    "starlette: an app's convertor": (with_convertor, False, ("/even/4", "/even/5")),
    "starlette: a narrowed built-in convertor": (
        with_narrowed_convertor, False, ("/n/10", "/n/01"),
    ),
    "starlette: a year mount behind middleware": (
        with_hidden_year_mount, False, ("/x/2024/z", "/x/2023/z"),
    ),
    "starlette: a host route": (
        lambda: starlette_app(Host("{sub}.example", app=Router(routes=[]))), False, None,
    ),
    "starlette: an app's route class": (
        lambda: starlette_app(OwnRoute("/own/{n:int}", page)), False, None,
    ),
    "fastapi: a year prefix": (
        lambda: fastapi_app(("/2024", "/teams")), False, ("/2024/5", "/2023/5"),
    ),
    "fastapi: an app's route class": (lambda: fastapi_app(route_class=OwnAPIRoute), False, None),
}  # fmt: skip


@pytest.mark.parametrize(("make", "blind", "witness"), CASES.values(), ids=CASES.keys())
def test_every_answer_is_the_routers_own(
    make: Callable[[], Any], blind: bool, witness: tuple[str, str] | None
) -> None:
    app = make()
    own = _StarletteRoutes(app)
    resolve = CountingRoutes(app)
    paths = paths_like(SAMPLE_PATHS, random.Random(7))
    CountingRoutes.matches = 0
    for method in ("GET", "POST"):
        for path in paths:
            expected = own._match(method, path)
            assert resolve(method, path, "shop.example") == expected, (method, path)
    answered = CountingRoutes.matches
    # Blind routes answer a path's digit variants from one match; others match each path.
    if blind:
        assert answered < 2 * len(set(paths))
    else:
        assert answered == 2 * len(paths)
    if witness is not None:
        first, second = witness
        assert own._match("GET", first) != own._match("GET", second)


def test_a_log_full_of_ids_costs_one_match_per_route() -> None:
    resolve = CountingRoutes(starlette_app())
    CountingRoutes.matches = 0
    for user in range(10_000, 12_000):
        assert resolve("GET", f"/users/{user}", None) == ("/users/{user_id:int}", False)
        assert resolve("GET", f"/fast/users/{user}", None) == ("/fast/users/{user_id}", False)
    assert CountingRoutes.matches == 2
