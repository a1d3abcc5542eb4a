"""CMS sites end to end: a real `wagtail start` site and a Flask app with a `/<path:slug>`
page view, each under gunicorn, instrumented as the README says, sending to a real
collector. Ordinary visitors, editors in both admins, bots of every category and hostile
clients browse them; the released numbers are compared with what was sent, per page and
per bot category.

A CMS serves every page through one catch-all pattern. These tests check that each page
is counted under its own path (the Wagtail integration; ``set_route`` in Flask), that
paths nobody published never become routes, that page paths still pass the identifier
checks, that Django's and Wagtail's admins are not pageviews wherever they are mounted,
and that bots are counted by category, never as people.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests._servers import CollectorProcess, ServerProcess, free_port, spawn
from tests.conftest import SHOP_WRITE_TOKEN

from .conftest import BROWSER, Stats

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

BIN = Path(sys.executable).parent
PHONE = (
    "Mozilla/5.0 (Linux; Android 10; CUBOT X30) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.6099.144 Mobile Safari/537.36"
)
SAFARI = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_3 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.3 Mobile/15E148 Safari/604.1"
)
PEOPLE = (BROWSER, PHONE, SAFARI)
# One real user agent per bot, with the category it must be counted under.
BOTS = (
    ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "search"),
    ("Mozilla/5.0 (compatible; Yeti/1.1; +http://naver.me/bot)", "search"),
    ("Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, "
     "like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36 (compatible; Google-InspectionTool/1.0;)",
     "search"),
    ("Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; "
     "+https://openai.com/gptbot)", "ai"),
    ("Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; ClaudeBot/1.0; "
     "+claudebot@anthropic.com)", "ai"),
    ("facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)", "social"),
    ("http.rb/5.2.0 (Mastodon/4.3.2; +https://mastodon.example/) Bot", "social"),
    ("Mozilla/5.0+(compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)", "monitor"),
    ("python-requests/2.32.3", "other"),
    ("", "other"),
)  # fmt: skip
# Published content that looks like an identifier: counted, but never under its path.
ID_LIKE_SLUG = "order-48213377190"
# What hostile clients ask for: scanners' favourites and identifiers in paths and queries.
HOSTILE_PATHS = (
    "/wp-login.php",
    "/.env",
    "/blog/alice@example.com/",
    "/blog/3f2b8c1e-9d4a-4b7e-8f1a-2c3d4e5f6a7b/",
    "/tok_9sd8f7g6h5j4k3l2/",
)
SECRETS = ("alice", "3f2b8c1e", "9sd8f7", "48213377190")


@dataclass(frozen=True)
class Site:
    """A CMS site: its pages by request path, with the route each must be counted under."""

    pages: dict[str, str]
    unpublished: tuple[str, ...]  # paths of pages that exist but are not live


# --- servers ------------------------------------------------------------------------------


@dataclass
class Gunicorn:
    server: ServerProcess
    url: str

    def stop(self) -> None:
        assert self.server.stop(timeout=30) == 0, self.server.log_text()


def start_gunicorn(
    app: str, cwd: Path, collector: CollectorProcess, env: dict[str, str]
) -> Gunicorn:
    port = free_port()
    log = cwd / "gunicorn.log"
    environment = {
        **os.environ,
        "HEADCOUNT_ENDPOINT": collector.url,
        "HEADCOUNT_WRITE_TOKEN": SHOP_WRITE_TOKEN,
        "HEADCOUNT_FLUSH_INTERVAL": "1",
        # Counts while the app runs, not an hour later.
        "HEADCOUNT_SEND_SCHEDULE": "immediate",
        **env,
    }
    environment.pop("HEADCOUNT_ENABLED", None)
    argv = [str(BIN / "gunicorn"), "--workers=2", f"--bind=127.0.0.1:{port}", app]
    server = spawn("gunicorn", argv, log, cwd=cwd, env=environment)
    server.wait_until(server.mentions(b"Booting worker", times=2), timeout=60)
    url = f"http://127.0.0.1:{port}"
    # Exactly one probe, given all the time a worker's first request needs: a program's
    # user agent, counted as a bot ("other") and a request, which the tests expect.
    httpx.get(url + "/robots.txt", headers={"User-Agent": "readiness-probe"}, timeout=60)
    return Gunicorn(server, url)


# --- the Wagtail site -----------------------------------------------------------------------

WAGTAIL_SETTINGS = """
import os

from .dev import *  # noqa: F403

# As the README says: the Django integration (middleware first) and the Wagtail one.
INSTALLED_APPS = [*INSTALLED_APPS, "headcount.integrations.django", "headcount.integrations.wagtail"]  # noqa: F405
MIDDLEWARE = ["headcount.integrations.django.HeadcountMiddleware", *MIDDLEWARE]  # noqa: F405
HEADCOUNT_WAGTAIL_ROUTES = os.environ.get("E2E_WAGTAIL_ROUTES", "path")
"""

WAGTAIL_CONTENT = """
from django.contrib.auth import get_user_model
from wagtail.contrib.redirects.models import Redirect
from wagtail.models import Page
from home.models import HomePage

home = HomePage.objects.get(depth=2)

def add(parent, slug, live=True):
    page = HomePage(title=slug.replace("-", " ").title(), slug=slug)
    parent.add_child(instance=page)
    if live:
        page.save_revision().publish()
    else:
        page.unpublish()
    return page

about = add(home, "about")
blog = add(home, "blog")
for slug in ("first-post", "second-post", "{id_like}"):
    add(blog, slug)
add(home, "contact")
add(blog, "draft-post", live=False)
Redirect.objects.create(old_path="/old-about", redirect_page=about)
get_user_model().objects.create_superuser("editor", "editor@example.com", "not-a-secret-pw")
"""


@pytest.fixture(scope="module")
def wagtail_site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Site]:
    """A `wagtail start` site on SQLite with a few pages, built once for this module."""
    root = tmp_path_factory.mktemp("wagtail_site")
    subprocess.run([str(BIN / "wagtail"), "start", "cmssite", str(root)], check=True)
    (root / "cmssite" / "settings" / "headcount_e2e.py").write_text(WAGTAIL_SETTINGS)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "cmssite.settings.headcount_e2e"}
    env["HEADCOUNT_ENABLED"] = "false"  # management commands count nothing
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "-v0"], cwd=root, env=env, check=True)
    script = WAGTAIL_CONTENT.format(id_like=ID_LIKE_SLUG)
    subprocess.run([*manage, "shell", "-c", script], cwd=root, env=env, check=True)
    site = Site(
        pages={
            "/": "/",
            "/about/": "/about",
            "/blog/": "/blog",
            "/blog/first-post/": "/blog/first-post",
            "/blog/second-post/": "/blog/second-post",
            f"/blog/{ID_LIKE_SLUG}/": "/blog/{id}",
            "/contact/": "/contact",
        },
        unpublished=("/blog/draft-post/",),
    )
    return root, site


# --- the Flask CMS app ----------------------------------------------------------------------

FLASK_APP = """
from flask import Flask, abort, request

from headcount import set_route
from headcount.integrations.flask import Headcount

# The "database": published pages by path. Real apps load them from their models.
PAGES = {pages!r}
UNPUBLISHED = {unpublished!r}

app = Flask(__name__)
Headcount(app)


@app.get("/", defaults={{"slug": ""}})
@app.get("/<path:slug>")
def page(slug: str) -> str:
    title = PAGES.get(slug.strip("/"))
    if title is None:
        abort(404)
    set_route(request, request.path)
    return f"<!doctype html><title>{{title}}</title><h1>{{title}}</h1>"
"""


@pytest.fixture
def flask_site(tmp_path: Path) -> tuple[Path, Site]:
    root = tmp_path / "flask_site"
    root.mkdir()
    published = ["", "about", "docs/install", "docs/faq", f"team/{ID_LIKE_SLUG}"]
    source = FLASK_APP.format(
        pages={slug: slug.title() or "Home" for slug in published}, unpublished=["docs/draft"]
    )
    (root / "cms_app.py").write_text(textwrap.dedent(source))
    site = Site(
        pages={
            "/": "/",
            "/about": "/about",
            "/docs/install": "/docs/install",
            "/docs/faq": "/docs/faq",
            f"/team/{ID_LIKE_SLUG}": "/team/{id}",
        },
        unpublished=("/docs/draft",),
    )
    return root, site


# --- traffic ----------------------------------------------------------------------------------


@dataclass
class Sent:
    pageviews: Counter[str]
    bots: Counter[str]
    requests: int


def ordinary_traffic(base: str, site: Site) -> Sent:
    """People reading pages (a different number of times each), bots of every category,
    a 404 for an unpublished page, and utm-tagged links."""
    pageviews: Counter[str] = Counter()
    bots: Counter[str] = Counter()
    requests = 0
    with httpx.Client(base_url=base, timeout=10) as client:
        for index, (path, route) in enumerate(sorted(site.pages.items())):
            for visit in range(index + 1):
                agent = PEOPLE[visit % len(PEOPLE)]
                query = "?utm_source=newsletter&utm_medium=email" if visit == 1 else ""
                response = client.get(path + query, headers={"User-Agent": agent})
                requests += 1
                assert response.status_code == 200, (path, response.status_code)
                pageviews[route] += 1
        for path in site.unpublished:
            assert client.get(path, headers={"User-Agent": BROWSER}).status_code == 404
            requests += 1
        for agent, category in BOTS:
            for path in ("/", sorted(site.pages)[1]):
                response = client.get(path, headers={"User-Agent": agent})
                requests += 1
                assert response.status_code == 200, (agent, response.status_code)
                bots[category] += 1
    return Sent(pageviews, bots, requests)


def hostile_traffic(base: str, site: Site, sent: Sent) -> None:
    """Scanners and identifier-carrying requests, with a browser's user agent so that only
    the route rules (not bot detection) keep identifiers out."""
    about = next(path for path, route in site.pages.items() if route == "/about")
    with httpx.Client(base_url=base, timeout=10) as client:
        for path in HOSTILE_PATHS:
            headers = {"User-Agent": BROWSER, "Referer": f"https://evil.example{path}"}
            assert client.get(path, headers=headers).status_code == 404, path
            sent.requests += 1
        # A real page, asked for with identifiers in the query string: one pageview.
        query = "?email=alice@example.com&token=tok_9sd8f7g6h5j4k3l2&utm_source=alice@example.com"
        assert client.get(about + query, headers={"User-Agent": BROWSER}).status_code == 200
        sent.requests += 1
        sent.pageviews["/about"] += 1


def admin_traffic(base: str) -> int:
    """An editor signs in to Django's admin (mounted at /django-admin/ by `wagtail start`)
    and opens pages in it and in Wagtail's admin: HTML pages, none of them pageviews.
    Returns the requests sent."""
    sent = 0
    with httpx.Client(base_url=base, timeout=10, headers={"User-Agent": BROWSER}) as client:
        login = client.get("/django-admin/login/")
        sent += 1
        assert login.status_code == 200
        token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', login.content)
        assert token is not None
        response = client.post(
            "/django-admin/login/?next=/django-admin/",
            data={
                "csrfmiddlewaretoken": token.group(1).decode(),
                "username": "editor",
                "password": "not-a-secret-pw",
            },
            headers={"Referer": base + "/django-admin/login/"},
        )
        sent += 1
        assert response.status_code == 302, response.text[:500]
        for path in ("/django-admin/", "/django-admin/auth/user/", "/django-admin/auth/user/1/change/",
                     "/admin/", "/admin/pages/"):  # fmt: skip
            response = client.get(path)
            sent += 1
            assert response.status_code == 200, (path, response.status_code)
            assert "text/html" in response.headers["content-type"]
    return sent


def check_released(collector: CollectorProcess, sent: Sent) -> None:
    """Released counts equal what was sent: every request, pageviews per page, bots per
    category (plus the one readiness probe); no identifier anywhere."""
    stats = Stats(collector.url)
    try:
        stats.wait_for(lambda s: s.total("requests"), sent.requests + 1, "requests")
        pageviews = {key[0]: n for key, n in stats.counts("pageviews", "route").items()}
        assert pageviews == dict(sent.pageviews)
        bots = {key[0]: n for key, n in stats.counts("bots", "category").items()}
        assert bots == dict(sent.bots + Counter(other=1))
        routes = " ".join(key[0] for key in stats.counts("requests", "route")).lower()
        sources = stats.counts("pageviews", "utm_source")
    finally:
        stats.close()
    for secret in SECRETS:
        assert secret not in routes, secret
    # The e-mail address sent as a utm_source is dropped, never released.
    assert set(sources) == {("(none)",), ("newsletter",)}
    database = b"".join(p.read_bytes() for p in collector.db_path.parent.glob("headcount.sqlite3*"))
    for secret in SECRETS:
        assert secret.encode() not in database, secret


def test_wagtail_pages_are_counted_under_their_paths(
    wagtail_site: tuple[Path, Site], collector: CollectorProcess
) -> None:
    root, site = wagtail_site
    server = start_gunicorn(
        "cmssite.wsgi:application", root, collector,
        {"DJANGO_SETTINGS_MODULE": "cmssite.settings.headcount_e2e"},
    )  # fmt: skip
    try:
        sent = ordinary_traffic(server.url, site)
        # A Wagtail redirect: a request, not a pageview.
        redirect = httpx.get(server.url + "/old-about", headers={"User-Agent": BROWSER})
        assert redirect.status_code in (301, 302)
        sent.requests += 1
        hostile_traffic(server.url, site, sent)
        sent.requests += admin_traffic(server.url)
    finally:
        server.stop()
    check_released(collector, sent)


def test_wagtail_pages_can_be_counted_by_page_type(
    wagtail_site: tuple[Path, Site], collector: CollectorProcess
) -> None:
    root, site = wagtail_site
    server = start_gunicorn(
        "cmssite.wsgi:application", root, collector,
        {"DJANGO_SETTINGS_MODULE": "cmssite.settings.headcount_e2e",
         "E2E_WAGTAIL_ROUTES": "page_type"},
    )  # fmt: skip
    try:
        with httpx.Client(base_url=server.url, headers={"User-Agent": SAFARI}) as client:
            for path in site.pages:
                assert client.get(path).status_code == 200, path
    finally:
        server.stop()
    stats = Stats(collector.url)
    try:
        stats.wait_for(lambda s: s.total("requests"), len(site.pages) + 1, "requests")
        # Every page of this site is a HomePage: one template for all of them.
        assert stats.counts("pageviews", "route") == {("/{homepage}",): len(site.pages)}
    finally:
        stats.close()


def test_flask_cms_pages_are_counted_under_their_paths(
    flask_site: tuple[Path, Site], collector: CollectorProcess
) -> None:
    root, site = flask_site
    server = start_gunicorn("cms_app:app", root, collector, {})
    try:
        sent = ordinary_traffic(server.url, site)
        hostile_traffic(server.url, site, sent)
    finally:
        server.stop()
    check_released(collector, sent)
