"""The Django app and middleware, through Django's test clients (WSGI and ASGI handlers).

Settings are the example project's, with test-only overrides, configured once per process.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

django = pytest.importorskip("django")

from django.conf import settings  # noqa: E402
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse  # noqa: E402
from django.urls import include, path, re_path  # noqa: E402
from django.views.decorators.http import require_safe  # noqa: E402

from headcount import Tracker, set_route  # noqa: E402
from headcount._request import RequestInfo  # noqa: E402

from .conftest import (  # noqa: E402
    BROWSER,
    HOSTILE_HEADERS,
    HOSTILE_QUERY,
    assert_no_secrets,
    pageview_routes,
    requests_of,
)


@require_safe  # type: ignore[untyped-decorator]  # Django ships no type hints
def page(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
    return HttpResponse("<h1>page</h1>")


def boom(request: HttpRequest) -> HttpResponse:
    raise LookupError("the app's own error")


def feed(request: HttpRequest) -> StreamingHttpResponse:
    def items() -> Iterator[str]:
        yield "<p>one</p>"
        yield "<p>two</p>"

    return StreamingHttpResponse(items(), content_type="text/html")


async def async_feed(request: HttpRequest) -> StreamingHttpResponse:
    async def items() -> AsyncIterator[str]:
        yield "<p>one</p>"
        yield "<p>two</p>"

    return StreamingHttpResponse(items(), content_type="text/html")


async def async_page(request: HttpRequest, pk: int) -> HttpResponse:
    return HttpResponse("<h1>async</h1>")


# Pages of a CMS-style catch-all view, as a database would hold them; the last one is
# content that happens to look like an identifier, which the route must never carry.
CMS_PAGES = frozenset({"about/", "about/team/", "contact-alice@example.com/"})


def cms_page(request: HttpRequest, slug: str) -> HttpResponse:
    if slug not in CMS_PAGES:
        raise Http404
    set_route(request, request.path)
    return HttpResponse("<h1>cms</h1>")


urlpatterns = [
    path("", page),
    path("pages/<path:slug>", cms_page),
    path("docs/page-1026/", page),
    # The application namespace every Django AdminSite uses, mounted somewhere unusual,
    # and a view named the way Wagtail names its admin views.
    path("backoffice/", include(([path("", page, name="index")], "admin"), namespace="ops")),
    path("cms-admin/", page, name="wagtailadmin_home"),
    path("boom/", boom),
    path("feed/", feed),
    path("async/<int:pk>/", async_page),
    path("async/feed/", async_feed),
    path(
        "users/",
        include([path("<int:pk>/", page), path("<int:pk>/posts/<slug:slug>/", page)]),
    ),
    path("blog/", include([re_path(r"^(?P<year>[0-9]{4})/(?P<slug>[-\w]+)/$", page)])),
    re_path(r"^legacy/([0-9]+)/$", page),
    re_path(r"^api/", include([path("items/<int:pk>/", page)])),
]


@pytest.fixture(scope="module", autouse=True)
def django_configured() -> None:
    if not settings.configured:
        from examples.django_project import settings as example_settings

        values = {name: getattr(example_settings, name) for name in dir(example_settings)}
        options = {name: value for name, value in values.items() if name.isupper()}
        options.update(
            ROOT_URLCONF=__name__,
            HEADCOUNT={
                "ENDPOINT": "http://collector.invalid",
                "WRITE_TOKEN": "django-settings-token",
                "FLUSH_INTERVAL": 3600.0,
                "TRANSPORT": httpx.MockTransport(lambda request: httpx.Response(204)),
            },
        )
        settings.configure(**options)
        django.setup()


@pytest.fixture
def app_tracker(tracker: Tracker) -> Iterator[Tracker]:
    """Swap the app's Tracker for the test's own, so each test starts from zero."""
    from django.apps import apps

    config = apps.get_app_config("headcount")
    original = config.tracker
    config.tracker = tracker
    yield tracker
    config.tracker = original


@pytest.fixture
def client() -> object:
    from django.test import Client

    return Client(headers={"User-Agent": BROWSER})


def test_settings_build_the_tracker_once() -> None:
    from django.apps import apps

    from headcount.integrations.django.apps import HeadcountConfig

    config = apps.get_app_config("headcount")
    assert isinstance(config, HeadcountConfig)
    assert isinstance(config.tracker, Tracker)


def test_path_include_and_re_path_templates(app_tracker: Tracker, client: object) -> None:
    from django.test import Client

    assert isinstance(client, Client)
    for url in (
        "/",
        "/users/5/",
        "/users/6/",
        "/users/5/posts/hello-world/",
        "/blog/2024/hello-world/",
        "/legacy/12345/",
        "/api/items/3/",
    ):
        assert client.get(url).status_code == 200, url

    assert requests_of(app_tracker) == {
        ("/", "GET", "2xx"): 1,
        ("/users/{pk}", "GET", "2xx"): 2,
        ("/users/{pk}/posts/{slug}", "GET", "2xx"): 1,
        ("/blog/{year}/{slug}", "GET", "2xx"): 1,
        ("/legacy/{id}", "GET", "2xx"): 1,
        ("/api/items/{pk}", "GET", "2xx"): 1,
    }
    assert pageview_routes(app_tracker)["/users/{pk}"] == 2


def test_a_view_can_set_the_route_of_a_cms_page(app_tracker: Tracker, client: object) -> None:
    from django.test import Client

    assert isinstance(client, Client)
    for url in ("/pages/about/", "/pages/about/", "/pages/about/team/"):
        assert client.get(url).status_code == 200, url
    assert client.get("/pages/contact-alice@example.com/").status_code == 200
    # A path no page has keeps the pattern's template: made-up paths never become routes.
    assert client.get("/pages/wp-login.php").status_code == 404
    assert pageview_routes(app_tracker) == {
        "/pages/about": 2,
        "/pages/about/team": 1,
        "/pages/{id}": 1,
    }
    assert requests_of(app_tracker)[("/pages/{slug}", "GET", "4xx")] == 1
    assert b"alice" not in repr(app_tracker.peek()).encode()


def test_numbered_patterns_are_remembered_but_paths_a_view_names_are_not(
    app_tracker: Tracker, client: object
) -> None:
    """The URL pattern is the app's code, so the tracker keeps its coarsening though a
    segment became {id}; a path the view passes to set_route may be the visitor's own."""
    from django.test import Client

    assert isinstance(client, Client)
    assert client.get("/docs/page-1026/").status_code == 200
    assert client.get("/pages/contact-alice@example.com/").status_code == 200
    assert pageview_routes(app_tracker) == {"/docs/{id}": 1, "/pages/{id}": 1}
    assert "/docs/page-1026/" in app_tracker._route_infos
    assert "/pages/contact-alice@example.com/" not in app_tracker._route_infos


def test_the_wagtail_hook_marks_a_pages_path_as_the_apps_own_until_a_view_names_another(
    app_tracker: Tracker,
) -> None:
    """A page's path comes from the site's page tree (editors' text), so the tracker may
    remember it; a view that then names a route itself takes that trust away."""
    from django.test import RequestFactory

    from headcount.integrations.django._middleware import _route_of
    from headcount.integrations.wagtail.wagtail_hooks import count_under_page_route

    class Page:
        specific_class = None

        def get_url_parts(self, request: object) -> tuple[int, str, str]:
            return (1, "https://shop.example", "/reports/annual-2024-7341/")

    request = RequestFactory().get("/reports/annual-2024-7341/")
    count_under_page_route(Page(), request, (), {})
    assert _route_of(request) == ("/reports/annual-2024-7341/", True)
    set_route(request, request.path)
    assert _route_of(request) == ("/reports/annual-2024-7341/", False)
    # Nor does the mark vouch for a route a view writes into META itself.
    count_under_page_route(Page(), request, (), {})
    request.META["headcount.route"] = "/reports/tok_9sd8f7g6h5j4k3l2/"
    assert _route_of(request) == ("/reports/tok_9sd8f7g6h5j4k3l2/", False)


def test_admin_views_are_recognised_by_namespace_not_path(
    app_tracker: Tracker, client: object
) -> None:
    from django.test import Client

    assert isinstance(client, Client)
    assert client.get("/backoffice/").status_code == 200
    assert client.get("/cms-admin/").status_code == 200
    assert client.get("/").status_code == 200
    assert pageview_routes(app_tracker) == {"/": 1}
    assert requests_of(app_tracker) == {
        ("/backoffice", "GET", "2xx"): 1,
        ("/cms-admin", "GET", "2xx"): 1,
        ("/", "GET", "2xx"): 1,
    }


def test_404_and_405_are_unmatched(app_tracker: Tracker, client: object) -> None:
    from django.test import Client

    assert isinstance(client, Client)
    assert client.get("/nothing/here/").status_code == 404
    assert client.get("/users/not-a-number/").status_code == 404
    assert client.post("/users/5/").status_code == 405
    assert requests_of(app_tracker) == {
        ("(unmatched)", "GET", "4xx"): 2,
        ("(unmatched)", "POST", "4xx"): 1,
    }


def test_exception_is_a_5xx(app_tracker: Tracker) -> None:
    from django.test import Client

    with pytest.raises(LookupError, match="the app's own error"):
        Client().get("/boom/")
    assert Client(raise_request_exception=False).get("/boom/").status_code == 500
    assert requests_of(app_tracker) == {("/boom", "GET", "5xx"): 2}


def test_streaming_response_counted_when_closed(app_tracker: Tracker, client: object) -> None:
    from django.test import Client

    assert isinstance(client, Client)
    response = client.get("/feed/")
    assert app_tracker.peek() == []
    assert b"".join(response.streaming_content) == b"<p>one</p><p>two</p>"
    assert requests_of(app_tracker) == {("/feed", "GET", "2xx"): 1}


def test_head_and_options_are_never_pageviews(app_tracker: Tracker, client: object) -> None:
    from django.test import Client

    assert isinstance(client, Client)
    client.head("/users/5/")
    client.options("/users/5/")
    assert requests_of(app_tracker) == {
        ("/users/{pk}", "HEAD", "2xx"): 1,
        ("(unmatched)", "OPTIONS", "4xx"): 1,
    }
    assert pageview_routes(app_tracker) == {}


def test_async_handler_uses_the_async_middleware(app_tracker: Tracker) -> None:
    from django.test import AsyncClient

    async def run() -> tuple[int, int, int]:
        client = AsyncClient(headers={"User-Agent": BROWSER})
        ok = await client.get("/async/7/")
        missing = await client.get("/nothing/")
        streamed = await client.get("/async/feed/")
        async for _ in streamed.streaming_content:
            pass
        return ok.status_code, missing.status_code, streamed.status_code

    assert asyncio.run(run()) == (200, 404, 200)
    assert requests_of(app_tracker) == {
        ("/async/{pk}", "GET", "2xx"): 1,
        ("(unmatched)", "GET", "4xx"): 1,
        ("/async/feed", "GET", "2xx"): 1,
    }


def test_asgi_without_the_lifespan_wrapper_is_told_once_and_with_it_sends_at_the_end(
    app_tracker: Tracker, caplog: pytest.LogCaptureFixture
) -> None:
    from django.apps import apps
    from django.core.asgi import get_asgi_application
    from django.test import AsyncClient

    from headcount.integrations.django import HeadcountLifespan

    async def two_pages() -> None:
        client = AsyncClient(headers={"User-Agent": BROWSER})
        for _ in range(2):
            assert (await client.get("/async/7/")).status_code == 200

    config = apps.get_app_config("headcount")
    with caplog.at_level(logging.WARNING, logger="headcount"):
        asyncio.run(two_pages())
    told = [r.getMessage() for r in caplog.records if "HeadcountLifespan" in r.getMessage()]
    assert len(told) == 1, told
    # Django's ASGI requests claim several processes, whatever the server: not believed.
    assert not any("several processes" in r.getMessage() for r in caplog.records)

    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    answered: list[str] = []

    async def receive() -> Any:
        return next(messages)

    async def send(message: Any) -> None:
        answered.append(message["type"])

    async def lifespan() -> None:
        application = HeadcountLifespan(get_asgi_application())
        await application({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)

    caplog.clear()
    try:
        asyncio.run(lifespan())
        assert config.lifespan_wrapped
        with caplog.at_level(logging.WARNING, logger="headcount"):
            asyncio.run(two_pages())
        assert not any("HeadcountLifespan" in r.getMessage() for r in caplog.records)
    finally:
        config.lifespan_wrapped = False
    assert answered == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    # The lifespan's end sent what was counted before it.
    assert app_tracker.stats().sent >= 1


def test_the_lifespan_wrapper_leaves_an_app_its_own_lifespan(app_tracker: Tracker) -> None:
    from headcount.integrations.django import HeadcountLifespan

    seen: list[str] = []
    sent_before_the_end: list[int] = []

    async def own_lifespan(scope: Any, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            seen.append(message["type"])
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return

    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

    async def receive() -> Any:
        return next(messages)

    async def send(message: Any) -> None:
        if message["type"] == "lifespan.shutdown.complete":
            sent_before_the_end.append(app_tracker.stats().sent)

    app_tracker.record_request(
        RequestInfo(
            "GET", "/about", 200, 0.01, user_agent=BROWSER, content_type="text/html",
            client_addr="203.0.113.7", sec_fetch_dest="document",
        )
    )  # fmt: skip
    application = HeadcountLifespan(own_lifespan)
    asyncio.run(application({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send))
    assert seen == ["lifespan.startup", "lifespan.shutdown"]
    # The count, and the visit it opened, went out before the server heard of the end.
    assert sent_before_the_end == [1]
    assert app_tracker.peek() == []


def test_hostile_requests_leave_no_trace(app_tracker: Tracker) -> None:
    from django.test import Client

    client = Client(REMOTE_ADDR="203.0.113.77", headers=HOSTILE_HEADERS)
    for segment in ("alice@example.com", "3f2b8c1e-9d4a-4b7e-8f1a-2c3d4e5f6a7b"):
        client.get(f"/users/5/posts/{segment}/", HOSTILE_QUERY)
        client.get(f"/{segment}/", HOSTILE_QUERY)
    client.get("/users/5/", HOSTILE_QUERY)
    assert_no_secrets(app_tracker.peek())


def test_example_project_pages(app_tracker: Tracker) -> None:
    from django.test import Client, override_settings

    with override_settings(ROOT_URLCONF="examples.django_project.urls"):
        client = Client(raise_request_exception=False, headers={"User-Agent": BROWSER})
        for url in ("/", "/about/", "/people/", "/people/2/", "/articles/2024/hello-world/"):
            response = client.get(url)
            assert response.status_code == 200, url
            assert b"<nav>" in response.content
        assert client.get("/contact/").status_code == 200
        assert client.post("/contact/", {"name": "Ada"}).status_code == 302
        assert client.get("/people/99/").status_code == 404
        assert client.get("/missing/").status_code == 404
        assert client.get("/boom/").status_code == 500
        report = client.get("/report.csv")
        assert b"".join(report.streaming_content).startswith(b"id,name")

    counted = requests_of(app_tracker)
    assert counted[("/people/{pk}", "GET", "2xx")] == 1
    assert counted[("/people/{pk}", "GET", "4xx")] == 1
    assert counted[("/articles/{year}/{slug}", "GET", "2xx")] == 1
    assert counted[("(unmatched)", "GET", "4xx")] == 1
    assert counted[("/contact", "POST", "3xx")] == 1
    assert counted[("/boom", "GET", "5xx")] == 1
    assert counted[("/report.csv", "GET", "2xx")] == 1


def test_wagtail_route_mode_is_checked() -> None:
    from django.core.exceptions import ImproperlyConfigured
    from django.test import override_settings

    from headcount.integrations.wagtail._routes import route_mode

    assert route_mode() == "path"
    with override_settings(HEADCOUNT_WAGTAIL_ROUTES="page_type"):
        assert route_mode() == "page_type"
    with (
        override_settings(HEADCOUNT_WAGTAIL_ROUTES="every-page"),
        pytest.raises(ImproperlyConfigured, match="HEADCOUNT_WAGTAIL_ROUTES"),
    ):
        route_mode()


def test_manage_py_check_warns_when_the_middleware_is_missing_or_not_first() -> None:
    from django.core import checks
    from django.test import override_settings

    def warnings() -> list[str]:
        return [m.id for m in checks.run_checks() if m.id and m.id.startswith("headcount.")]

    ours = "headcount.integrations.django.HeadcountMiddleware"
    others = ["django.middleware.security.SecurityMiddleware"]
    assert warnings() == []  # the example project: first, as the README says
    with override_settings(MIDDLEWARE=others):
        assert warnings() == ["headcount.W001"]
    with override_settings(MIDDLEWARE=[*others, ours]):
        assert warnings() == ["headcount.W002"]
    with override_settings(MIDDLEWARE=[ours, *others]):
        assert warnings() == []
    # Its module's own path, or a subclass, in a tuple: still the middleware.
    direct = "headcount.integrations.django._middleware.HeadcountMiddleware"
    with override_settings(MIDDLEWARE=(direct, *others)):
        assert warnings() == []
