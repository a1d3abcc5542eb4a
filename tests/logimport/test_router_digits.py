"""A Flask app's router answers once for paths that differ only in their digits, and only
where no rule of its map can tell those digits apart: every answer equals werkzeug's own
match of the same path."""

from __future__ import annotations

import random
from typing import Any

import pytest
from flask import Flask
from werkzeug.exceptions import HTTPException
from werkzeug.routing import BaseConverter, Map, MapAdapter, RequestRedirect

from headcount.logimport._routes import _FlaskRoutes


class CountingMap(Map):
    """A werkzeug map that counts the matches its adapters make."""

    matches = 0

    def bind(self, *args: Any, **kwargs: Any) -> MapAdapter:
        adapter = super().bind(*args, **kwargs)
        match = adapter.match

        def counted(*a: Any, **kw: Any) -> Any:
            CountingMap.matches += 1
            return match(*a, **kw)

        adapter.match = counted  # type: ignore[method-assign]
        return adapter


class EvenConverter(BaseConverter):
    """An app's own converter: its check reads the value."""

    regex = r"\d+"

    def to_python(self, value: str) -> int:
        if int(value) % 2:
            from werkzeug.routing import ValidationError

            raise ValidationError()
        return int(value)


def app_with(*rules: str, defaults: dict[str, dict[str, int]] | None = None) -> Flask:
    Flask.url_map_class = CountingMap
    try:
        app = Flask(__name__)
    finally:
        Flask.url_map_class = Map
    app.url_map.converters["even"] = EvenConverter
    for rule in rules:
        app.add_url_rule(rule, rule, lambda **kw: "")
    for rule, values in (defaults or {}).items():
        app.add_url_rule(rule, rule + ":defaults", lambda **kw: "", defaults=values)
    return app


def werkzeug_answer(app: Flask, method: str, path: str) -> str | None:
    try:
        rule, _ = Map.bind(app.url_map, "shop.example").match(path, method, return_rule=True)
    except (HTTPException, RequestRedirect):
        return None
    return str(rule.rule)


BLIND = [
    "/", "/users/<int:user_id>", "/prices/<float:amount>", "/orders/<uuid:order>",
    "/codes/<string(length=3):code>", "/docs/<path:page>", "/kind/<any(red,blue):colour>",
    "/years/<int(fixed_digits=4):year>", "/items/<int:item_id>.json", "/blog/<slug>",
    "/files/<path:name>/raw", "/signed/<int(signed=True):n>",
]  # fmt: skip

SAMPLE_PATHS = [
    "/", "/users/1", "/users/0", "/users/007", "/users/12x", "/users/", "/prices/1.5",
    "/prices/10", "/orders/12345678-1234-1234-1234-123456789abc", "/orders/1234",
    "/codes/123", "/codes/1234", "/codes/ab1", "/docs/a/1/b2", "/kind/red", "/kind/1",
    "/years/2024", "/years/202", "/items/42.json", "/items/4a.json", "/blog/post-7",
    "/files/1/2/raw", "/signed/-5", "/signed/5", "/users/%31", "/page/1", "/page/2",
    "/page/9", "/2024/hello", "/2023/hello", "/api/v1/users/12", "/api/v2/users/12",
    "/api/v9/users/12", "/even/4", "/even/5", "/x1", "/x2", "/item1", "/item21",
]  # fmt: skip


def paths_like(rng: random.Random) -> list[str]:
    """The sample paths, each also with its digits drawn again (one digit for one)."""
    found = list(SAMPLE_PATHS)
    for path in SAMPLE_PATHS:
        for _ in range(5):
            found.append("".join(str(rng.randrange(10)) if c.isdigit() else c for c in path))
    return found


@pytest.mark.parametrize(
    ("rules", "defaults", "blind"),
    [
        (BLIND, None, True),
        ([*BLIND, "/api/v1/users/<int:id>", "/api/v2/users/<int:id>"], None, True),
        ([*BLIND, "/page/<int(max=5):n>"], None, False),
        ([*BLIND, "/page/<int(min=3):n>"], None, False),
        ([*BLIND, "/page/<int:n>"], {"/page/": {"n": 1}}, False),
        ([*BLIND, "/2024/<slug>"], None, False),
        ([*BLIND, "/item<int:n>1"], None, False),
        ([*BLIND, "/x1"], None, True),
        ([*BLIND, "/kind2/<any(a1,b):k>"], None, False),
        ([*BLIND, "/even/<even:n>"], None, False),
    ],
    ids=[
        "default converters",
        "v1 and v2 literals",
        "int max",
        "int min",
        "defaults",
        "a year literal",
        "a digit beside a converter",
        "a digit literal",
        "any with digits",
        "an app's converter",
    ],
)
def test_every_answer_is_werkzeugs_own(
    rules: list[str], defaults: dict[str, dict[str, int]] | None, blind: bool
) -> None:
    app = app_with(*rules, defaults=defaults)
    resolve = _FlaskRoutes(app)
    paths = paths_like(random.Random(7))
    CountingMap.matches = 0
    for method in ("GET", "POST"):
        for path in paths:
            expected = werkzeug_answer(app, method, path)
            assert resolve(method, path, "shop.example") == (expected, False), (method, path)
    answered = CountingMap.matches
    # Blind maps answer a path's digit variants from one match; others match each path.
    if blind:
        assert answered < 2 * len(set(paths))
    else:
        assert answered == 2 * len(paths)


def test_a_log_full_of_ids_costs_one_match_per_route_and_method() -> None:
    resolve = _FlaskRoutes(app_with(*BLIND))
    CountingMap.matches = 0
    for user in range(10_000, 12_000):
        assert resolve("GET", f"/users/{user}", None) == ("/users/<int:user_id>", False)
        assert resolve("GET", f"/items/{user}.json", None) == ("/items/<int:item_id>.json", False)
    assert CountingMap.matches == 2
