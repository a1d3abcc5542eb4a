"""A Flask app's router answers once for paths that differ only in their digits, and only
where no rule of its map can tell those digits apart: every answer equals werkzeug's own
match of the same path."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from werkzeug.exceptions import HTTPException
from werkzeug.routing import (
    BaseConverter,
    IntegerConverter,
    Map,
    MapAdapter,
    RequestRedirect,
    ValidationError,
)

from headcount.logimport._routes import _FlaskRoutes
from tests.logimport._digit_paths import paths_like


class CountingRoutes(_FlaskRoutes):
    """The import's Flask resolver, counting the werkzeug matches it makes."""

    def __init__(self, app: Any) -> None:
        super().__init__(app)
        self.matches = 0

    def _match(self, method: str, path: str, server: str) -> tuple[str | None, bool]:
        self.matches += 1
        return super()._match(method, path, server)


class EvenConverter(BaseConverter):
    """An app's own converter: its check reads the value."""

    regex = r"\d+"

    def to_python(self, value: str) -> int:
        if int(value) % 2:
            raise ValidationError()
        return int(value)


class OwnMap(Map):
    """An app's own map class: it may match in its own way."""


LEGACY_IDS = {11: "/products/eleven"}


def legacy_product(adapter: MapAdapter, product: int) -> str:
    return LEGACY_IDS[product]  # an id it does not know raises, as an app's lookup would


def app_with(
    *rules: str,
    defaults: dict[str, dict[str, int]] | None = None,
    redirects: dict[str, Any] | None = None,
    map_class: type[Map] = Map,
) -> Flask:
    app = Flask(__name__)
    app.url_map = map_class()
    app.url_map.converters["even"] = EvenConverter
    for rule in rules:
        app.add_url_rule(rule, rule, lambda **kw: "")
    for rule, values in (defaults or {}).items():
        app.add_url_rule(rule, rule + ":defaults", lambda **kw: "", defaults=values)
    for rule, target in (redirects or {}).items():
        app.add_url_rule(rule, rule + ":redirect", redirect_to=target)
    return app


def outcome(answer: Callable[..., object], *args: object) -> tuple[str, object]:
    try:
        return "answered", answer(*args)
    except Exception as exc:
        return "raised", type(exc)


def werkzeug_answer(app: Flask, method: str, path: str) -> tuple[str | None, bool]:
    try:
        rule, _ = app.url_map.bind("shop.example").match(path, method, return_rule=True)
    except (HTTPException, RequestRedirect):
        return None, False
    return str(rule.rule), False


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
    "/old/11", "/old/13", "/moved/5", "/n/10", "/n/01",
]  # fmt: skip


CASES: dict[str, tuple[dict[str, Any], bool]] = {
    "default converters": ({}, True),
    "v1 and v2 literals": ({"rules": ["/api/v1/users/<int:id>", "/api/v2/users/<int:id>"]}, True),
    "a digit literal": ({"rules": ["/x1"]}, True),
    "a redirect to a fixed path": ({"redirects": {"/moved/<int:n>": "/users/<n>"}}, True),
    "int max": ({"rules": ["/page/<int(max=5):n>"]}, False),
    "int min": ({"rules": ["/page/<int(min=3):n>"]}, False),
    "defaults": ({"rules": ["/page/<int:n>"], "defaults": {"/page/": {"n": 1}}}, False),
    "a year literal": ({"rules": ["/2024/<slug>"]}, False),
    "a digit beside a converter": ({"rules": ["/item<int:n>1"]}, False),
    "any with digits": ({"rules": ["/kind2/<any(a1,b):k>"]}, False),
    "an app's converter": ({"rules": ["/even/<even:n>"]}, False),
    "a redirect function": ({"redirects": {"/old/<int:product>": legacy_product}}, False),
    "an app's map class": ({"map_class": OwnMap}, False),
}


@pytest.mark.parametrize(("options", "blind"), CASES.values(), ids=CASES.keys())
def test_every_answer_is_werkzeugs_own(options: dict[str, Any], blind: bool) -> None:
    app = app_with(*BLIND, *options.pop("rules", []), **options)
    resolve = CountingRoutes(app)
    paths = paths_like(SAMPLE_PATHS, random.Random(7))
    for method in ("GET", "POST"):
        for path in paths:
            expected = outcome(werkzeug_answer, app, method, path)
            assert outcome(resolve, method, path, "shop.example") == expected, path
    # Blind maps answer a path's digit variants from one match; others match each path.
    if blind:
        assert resolve.matches < 2 * len(set(paths))
    else:
        assert resolve.matches == 2 * len(paths)


def test_a_log_full_of_ids_costs_one_match_per_route_and_method() -> None:
    resolve = CountingRoutes(app_with(*BLIND))
    for user in range(10_000, 12_000):
        assert resolve("GET", f"/users/{user}", None) == ("/users/<int:user_id>", False)
        assert resolve("GET", f"/items/{user}.json", None) == ("/items/<int:item_id>.json", False)
        # A path without digits is its own shape: matched once too.
        assert resolve("GET", "/blog/hello", None) == ("/blog/<slug>", False)
    assert resolve.matches == 3


def test_a_narrowed_built_in_converter_is_matched_path_by_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Werkzeug's own int converter, narrowed to refuse leading zeros: it reads digits.
    monkeypatch.setattr(IntegerConverter, "regex", "[1-9][0-9]*")
    app = app_with(*BLIND, "/n/<int:n>", "/n/<s>")
    resolve = CountingRoutes(app)
    assert werkzeug_answer(app, "GET", "/n/10") != werkzeug_answer(app, "GET", "/n/01")
    for path in ("/n/10", "/n/01", "/n/20", "/n/02"):
        assert resolve("GET", path, None) == werkzeug_answer(app, "GET", path)
    assert resolve.matches == 4
