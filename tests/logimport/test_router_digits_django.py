"""A Django URLconf answers once for paths that differ only in their digits, and only where
no pattern can tell those digits apart: every answer equals ``django.urls.resolve``'s own
(read by the Django integration's rules) for the same path.

Django is configured once per process, and the integration tests configure it their own
way: the checks run in a fresh interpreter, with this module as its settings module, once
for all the URLconfs here; each test reads its URLconf's outcome."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from headcount.logimport._routes import Resolved, _DjangoRoutes
from tests.logimport._digit_paths import paths_like

ROOT = Path(__file__).resolve().parents[2]

# The settings of the interpreter that runs the checks (ROOT_URLCONF is set per URLconf).
SECRET_KEY = "router-digits-test-only"
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
]
USE_I18N = True
LANGUAGE_CODE = "en"


class CountingRoutes(_DjangoRoutes):
    """The resolver, counting the resolve() calls it makes."""

    matches = 0

    def _match(self, path: str) -> Resolved:
        CountingRoutes.matches += 1
        return super()._match(path)


class UrlConf:
    """A URLconf made in memory: Django reads its ``urlpatterns``."""

    def __init__(self, patterns: list[Any]) -> None:
        self.urlpatterns = patterns


class EvenConverter:
    """An app's own converter: its check reads the value."""

    regex = "[0-9]+"

    def to_python(self, value: str) -> int:
        if int(value) % 2:
            raise ValueError(value)
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)


def view(request: Any, *args: Any, **kwargs: Any) -> Any:
    raise AssertionError("resolving never calls a view")


def plain_patterns() -> list[Any]:
    from django.urls import include, path, re_path

    return [
        path("", view),
        path("users/<int:pk>/", view),
        path("posts/<slug:slug>/", view),
        path("orders/<uuid:order>/", view),
        path("docs/<path:page>", view),
        path("items/<int:pk>.json", view),
        path("tags/<tag>/", view),
        path("blog/", include([path("<str:slug>/", view), path("<slug:slug>/<int:n>/", view)])),
        re_path(r"^archive/(?P<year>\d+)/(?P<slug>[-\w]+)/$", view),
        re_path(r"^legacy/(\w+)/[^/]+/(.)$", view),
        re_path(r"^api/", include([path("things/<int:pk>/", view), re_path(r"^x-\d+$", view)])),
    ]


def default_patterns() -> list[Any]:
    """With Django's admin, whose "jsi18n/" leaves whole segments of digits alike only."""
    from django.contrib import admin
    from django.urls import path

    return [*plain_patterns(), path("backoffice/", admin.site.urls)]


def year_patterns() -> list[Any]:
    from django.urls import path

    return [*default_patterns(), path("2024/<slug:slug>/", view)]


def versioned_patterns() -> list[Any]:
    from django.urls import include, path

    return [
        *default_patterns(),
        path("api/v1/users/<int:pk>/", view),
        path("api/v2/", include([path("users/<int:pk>/", view)])),
    ]


def i18n_patterns() -> list[Any]:
    from django.conf.urls.i18n import i18n_patterns

    return [*i18n_patterns(*default_patterns()), *default_patterns()]


def with_regex(regex: str) -> Callable[[], list[Any]]:
    def patterns() -> list[Any]:
        from django.urls import re_path

        return [*default_patterns(), re_path(regex, view)]

    return patterns


def with_route(route: str) -> Callable[[], list[Any]]:
    def patterns() -> list[Any]:
        from django.urls import path

        return [*default_patterns(), path(route, view)]

    return patterns


def with_converter() -> list[Any]:
    from django.urls import path, register_converter

    register_converter(EvenConverter, "even")
    return [*default_patterns(), path("even/<even:n>/", view)]


def with_narrowed_converter() -> list[Any]:
    from django.urls import path, register_converter
    from django.urls.converters import IntConverter

    # Django's own int converter, narrowed to refuse leading zeros: it reads digits.
    nonzero = IntConverter()
    nonzero.regex = "[1-9][0-9]*"
    register_converter(lambda: nonzero, "nonzero")
    return [*default_patterns(), path("n/<nonzero:n>/", view), path("n/<str:s>/", view)]


def split_digit_prefix() -> list[Any]:
    from django.urls import include, path

    return [*default_patterns(), path("v", include([path("1/<int:n>/", view)]))]


# Each URLconf: its patterns, the language, whether it is blind, and for one that is not,
# two paths of one digit shape that Django itself tells apart.
CASES: dict[str, tuple[Callable[[], list[Any]], str, bool, tuple[str, str] | None]] = {
    "default converters, re_path, include": (plain_patterns, "en", True, None),
    "with Django's admin": (default_patterns, "en", True, None),
    "v1 and v2 literals": (versioned_patterns, "en", True, None),
    "an i18n prefix": (i18n_patterns, "en", True, None),
    "an i18n prefix with digits": (i18n_patterns, "es-419", True, None),
    "a year literal": (year_patterns, "en", False, ("/2024/hello/", "/2023/hello/")),
    "a digit beside a converter": (
        with_route("item<int:n>1/"), "en", False, ("/item51/", "/item52/"),
    ),
    "a digit include prefix": (split_digit_prefix, "en", False, ("/v1/5/", "/v2/5/")),
    "an app's converter": (with_converter, "en", False, ("/even/4/", "/even/5/")),
    "a narrowed built-in converter": (
        with_narrowed_converter, "en", False, ("/n/10/", "/n/01/"),
    ),
    "a regex with a digit range": (
        with_regex(r"^page/(?P<n>[1-5])/$"), "en", False, ("/page/3/", "/page/7/"),
    ),
    "a regex quantifier": (
        with_regex(r"^years/(?P<year>\d{4})/$"), "en", False, None,
    ),
    "a regex escape": (with_regex(r"^x\x35/$"), "en", False, ("/x5/", "/x6/")),
    "a named character": (
        with_regex(r"^n\N{DIGIT FIVE}/$"), "en", False, ("/n5/", "/n6/"),
    ),
    "a named backreference": (
        with_regex(r"^twice/(?P<a>\d)(?P=a)/$"), "en", False, ("/twice/11/", "/twice/12/"),
    ),
    # A group's name is no matched text; the same text escaped is.
    "a group name with a digit": (with_regex(r"^grp/(?P<id2>\d+)/$"), "en", True, None),
    "a group's text escaped": (
        with_regex(r"^esc\(?P<a1>/(?P<a1>x)/$"), "en", False, ("/escP<a1>/x/", "/escP<a2>/x/"),
    ),
}  # fmt: skip

SAMPLE_PATHS = [
    "/", "/users/1/", "/users/007/", "/users/12x/", "/users/", "/posts/post-7/",
    "/orders/12345678-1234-1234-1234-123456789abc/", "/orders/1234/", "/docs/a/1/b2",
    "/items/42.json", "/items/4a.json", "/tags/7/", "/blog/7/", "/blog/post-7/3/",
    "/archive/2024/hello-1/", "/legacy/a1/b2/3", "/api/things/5/", "/api/x-12",
    "/backoffice/", "/backoffice/auth/user/12/change/", "/backoffice/r/3/5/",
    "/en/users/5/", "/es-419/users/5/", "/es-419/blog/7/", "/2024/hello/", "/2023/hello/",
    "/api/v1/users/12/", "/api/v2/users/12/", "/api/v9/users/12/", "/item51/", "/item52/",
    "/v1/5/", "/v2/5/", "/even/4/", "/even/5/", "/page/3/", "/page/7/", "/years/2024/",
    "/years/202/", "/x5/", "/x6/", "/n5/", "/n6/", "/twice/11/", "/twice/12/",
    "/users/%31/", "/users/1/?page=2", "/n/10/", "/n/01/", "/grp/5/", "/escP<a1>/x/",
    "/escP<a2>/x/",
]  # fmt: skip


def django_answer(path: str) -> Resolved:
    """What the Django integration reads from ``resolve()`` on a live request."""
    from django.urls import Resolver404, resolve

    from headcount.integrations.django._middleware import _is_admin_view, _route_of
    from headcount.logimport._routes import _Resolved

    try:
        match = resolve(path.split("?", 1)[0])
    except Resolver404:
        return None, False
    return _route_of(_Resolved(match))[0], _is_admin_view(match)


def report() -> None:
    """In the fresh interpreter: each URLconf's outcome, as JSON on stdout."""
    import django
    from django.conf import settings
    from django.urls import clear_url_caches

    os.environ["DJANGO_SETTINGS_MODULE"] = __name__
    django.setup()
    paths = paths_like(SAMPLE_PATHS, random.Random(7))
    outcomes: dict[str, Any] = {}
    for name, (patterns, language, _, witness) in CASES.items():
        settings.LANGUAGE_CODE = language
        settings.ROOT_URLCONF = UrlConf(patterns())
        clear_url_caches()
        resolve = CountingRoutes(__name__)
        CountingRoutes.matches = 0
        wrong = [
            [path, got, expected]
            for path in paths
            if (got := resolve("GET", path, "shop.example")) != (expected := django_answer(path))
        ]
        outcomes[name] = {
            "wrong": wrong,
            "matches": CountingRoutes.matches,
            "witness": [django_answer(path) for path in witness or ()],
        }
    settings.LANGUAGE_CODE = "en"
    settings.ROOT_URLCONF = UrlConf(plain_patterns())
    clear_url_caches()
    resolve = CountingRoutes(__name__)
    CountingRoutes.matches = 0
    answers = {
        resolve("GET", f"/{kind}/{user}{end}", None)
        for user in range(10_000, 12_000)
        for kind, end in (("users", "/"), ("items", ".json"))
    }
    outcomes["ids"] = {"matches": CountingRoutes.matches, "answers": sorted(answers)}
    json.dump(outcomes, sys.stdout)


@pytest.fixture(scope="module")
def outcomes() -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", f"import {__name__} as checks; checks.report()"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    found: dict[str, Any] = json.loads(done.stdout)
    return found


@pytest.mark.parametrize("name", CASES)
def test_every_answer_is_djangos_own(outcomes: dict[str, Any], name: str) -> None:
    outcome = outcomes[name]
    _, _, blind, witness = CASES[name]
    paths = paths_like(SAMPLE_PATHS, random.Random(7))
    assert outcome["wrong"] == []
    # Blind URLconfs answer a path's digit variants from one match; others match each path.
    if blind:
        assert outcome["matches"] < len(set(paths))
    else:
        assert outcome["matches"] == len(paths)
    if witness is not None:
        first, second = outcome["witness"]
        assert first != second


def test_a_log_full_of_ids_costs_one_match_per_route(outcomes: dict[str, Any]) -> None:
    assert outcomes["ids"]["answers"] == [
        ["/items/<int:pk>.json", False],
        ["/users/<int:pk>/", False],
    ]
    assert outcomes["ids"]["matches"] == 2
