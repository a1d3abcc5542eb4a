"""Imports through an app's own router (Flask, Django, Starlette), and ``--follow`` across
a logrotate-style rotation, each against a real collector."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from headcount.logimport import Importer, LineSource, load_resolver, parser_for
from tests._servers import CollectorProcess, start_collector
from tests.logimport._scenario import (
    BIN,
    CHROME,
    HOST,
    SCENARIO,
    Hit,
    SiteTokens,
    render,
    run_import,
    sites_toml,
    start_hour,
    stats,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

SITES = ["flask", "django", "starlette", "fastapi", "follow", "interrupt", "periodic"]

FLASK_APP = """
from flask import Flask

app = Flask(__name__)

@app.get("/")
def home():
    return "home"

@app.get("/blog/<slug>")
def post(slug):
    return slug

@app.get("/users/<int:user_id>")
def user(user_id):
    return str(user_id)

@app.post("/contact")
def contact():
    return "", 303
"""

DJANGO_SETTINGS = """
SECRET_KEY = "import-test-only"
ROOT_URLCONF = "importurls"
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
]
USE_TZ = True
"""

DJANGO_URLS = """
from django.contrib import admin
from django.http import HttpResponse
from django.urls import include, path, re_path

def view(request, **kwargs):
    return HttpResponse("ok")

blog = [path("<slug:slug>", view)]
urlpatterns = [
    path("", view),
    path("blog/", include(blog)),
    re_path(r"^users/(?P<pk>[0-9]+)$", view),
    path("contact", view),
    path("static/<path:name>", view),
    path("backoffice/", admin.site.urls),
]
"""

STARLETTE_APP = """
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

async def page(request):
    return PlainTextResponse("ok")

app = Starlette(routes=[
    Route("/", page),
    Mount("/blog", routes=[Route("/{slug}", page)]),
    Route("/users/{user_id:int}", page),
    Route("/contact", page, methods=["POST"]),
])
"""


FASTAPI_APP = """
from fastapi import APIRouter, FastAPI

app = FastAPI()
blog = APIRouter()
users = APIRouter()

@app.get("/")
def home():
    return {}

@blog.get("/{slug}")
def post(slug: str):
    return {}

@users.get("/{user_id}")
def user(user_id: int):
    return {}

@app.post("/contact")
def contact():
    return {}

app.include_router(blog, prefix="/blog")
app.include_router(users, prefix="/users")
"""


@pytest.fixture(scope="module")
def collector(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[CollectorProcess, dict[str, SiteTokens]]]:
    tmp = tmp_path_factory.mktemp("router-collector")
    text, tokens = sites_toml(SITES)
    site_file = tmp / "sites.toml"
    site_file.write_text(text, encoding="utf-8")
    server = start_collector(tmp, site_file)
    try:
        yield server, tokens
    finally:
        server.stop()


@pytest.fixture
def app_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "app"
    directory.mkdir()
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(directory), os.environ.get("PYTHONPATH")]))
    )
    return directory


def _import_scenario(
    server: CollectorProcess, site: SiteTokens, tmp_path: Path, *router: str
) -> None:
    log = tmp_path / "access.log"
    log.write_text(render("combined", start_hour()), encoding="utf-8")
    done = run_import(server.url, site.write, *router, str(log))
    assert done.returncode == 0, done.stderr


def test_flask_routes_come_from_the_url_map(
    collector: tuple[CollectorProcess, dict[str, SiteTokens]], tmp_path: Path, app_dir: Path
) -> None:
    server, tokens = collector
    (app_dir / "importflask.py").write_text(FLASK_APP, encoding="utf-8")
    _import_scenario(server, tokens["flask"], tmp_path, "--app", "importflask:app")
    assert stats(server.url, tokens["flask"], "pageviews", "route") == Counter(
        {"/": 2, "/blog/{slug}": 1, "/users/{user_id}": 1}
    )
    assert stats(server.url, tokens["flask"], "requests", "route") == Counter(
        {
            "/": 4,  # two pageviews, a crawler's hit and a server error
            "/blog/{slug}": 2,
            "/users/{user_id}": 1,
            "/static/{filename}": 1,  # Flask's own static route
            "(unmatched)": 1,
            "/contact": 1,
        }
    )


def test_django_routes_come_from_resolve(
    collector: tuple[CollectorProcess, dict[str, SiteTokens]], tmp_path: Path, app_dir: Path
) -> None:
    server, tokens = collector
    (app_dir / "importsettings.py").write_text(DJANGO_SETTINGS, encoding="utf-8")
    (app_dir / "importurls.py").write_text(DJANGO_URLS, encoding="utf-8")
    # A browser's page of Django's admin, wherever it is mounted: a request, never a pageview.
    admin_page = Hit(200, "203.0.113.9", CHROME, "GET", "/backoffice/", 200, "text/html")
    log = tmp_path / "access.log"
    log.write_text(render("combined", start_hour(), (*SCENARIO, admin_page)), encoding="utf-8")
    done = run_import(
        server.url, tokens["django"].write, "--django-settings", "importsettings", str(log)
    )
    assert done.returncode == 0, done.stderr
    assert stats(server.url, tokens["django"], "requests", "route")["/backoffice"] == 1
    assert stats(server.url, tokens["django"], "pageviews", "route") == Counter(
        {"/": 2, "/blog/{slug}": 1, "/users/{pk}": 1}
    )
    assert stats(server.url, tokens["django"], "requests", "route")["/static/{name}"] == 1


def test_starlette_routes_come_from_route_matching(
    collector: tuple[CollectorProcess, dict[str, SiteTokens]], tmp_path: Path, app_dir: Path
) -> None:
    server, tokens = collector
    (app_dir / "importstarlette.py").write_text(STARLETTE_APP, encoding="utf-8")
    _import_scenario(server, tokens["starlette"], tmp_path, "--app", "importstarlette:app")
    assert stats(server.url, tokens["starlette"], "pageviews", "route") == Counter(
        {"/": 2, "/blog/{slug}": 1, "/users/{user_id}": 1}
    )
    # No route for the stylesheet: unmatched, like the 404.
    assert stats(server.url, tokens["starlette"], "requests", "route")["(unmatched)"] == 2


def test_fastapi_routes_include_the_router_prefixes(
    collector: tuple[CollectorProcess, dict[str, SiteTokens]], tmp_path: Path, app_dir: Path
) -> None:
    server, tokens = collector
    (app_dir / "importfastapi.py").write_text(FASTAPI_APP, encoding="utf-8")
    _import_scenario(server, tokens["fastapi"], tmp_path, "--app", "importfastapi:app")
    assert stats(server.url, tokens["fastapi"], "pageviews", "route") == Counter(
        {"/": 2, "/blog/{slug}": 1, "/users/{user_id}": 1}
    )
    assert stats(server.url, tokens["fastapi"], "requests", "route")["/contact"] == 1


def test_follow_reads_across_a_rotation(
    collector: tuple[CollectorProcess, dict[str, SiteTokens]], tmp_path: Path
) -> None:
    server, tokens = collector
    site = tokens["follow"]
    lines = render("combined", start_hour()).splitlines(keepends=True)
    log = tmp_path / "access.log"
    log.write_text("".join(lines[:4]), encoding="utf-8")
    process = subprocess.Popen(
        [
            str(BIN / "headcount"), "import", "--host", HOST, "--endpoint", server.url,
            "--write-token", site.write, "--follow", "--idle-exit", "2", str(log),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        _wait_until_reading(process, log)
        with log.open("a", encoding="utf-8") as stream:
            stream.write("".join(lines[4:6]))
        time.sleep(0.8)
        # logrotate's default (create): the file is renamed and a new one takes its name.
        log.rename(tmp_path / "access.log.1")
        log.write_text("".join(lines[6:]), encoding="utf-8")
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr
    assert f"lines read: {len(SCENARIO)}" in stderr
    assert stats(server.url, site, "requests")[""] == len(SCENARIO)
    assert stats(server.url, site, "pageviews")[""] == sum(1 for h in SCENARIO if h.pageview)


def test_an_app_that_is_no_router_is_refused(tmp_path: Path, app_dir: Path) -> None:
    (app_dir / "notanapp.py").write_text("app = 42\n", encoding="utf-8")
    log = tmp_path / "access.log"
    log.write_text(render("combined", start_hour()), encoding="utf-8")
    done = run_import(None, None, "--dry-run", "--app", "notanapp:app", str(log))
    assert done.returncode == 1
    assert "neither a Flask app nor a Starlette/FastAPI app" in done.stderr


def test_ctrl_c_ends_follow_and_still_sends(
    collector: tuple[CollectorProcess, dict[str, SiteTokens]], tmp_path: Path
) -> None:
    server, tokens = collector
    site = tokens["interrupt"]
    log = tmp_path / "access.log"
    log.write_text(render("combined", start_hour()), encoding="utf-8")
    process = subprocess.Popen(
        [
            str(BIN / "headcount"), "import", "--host", HOST, "--endpoint", server.url,
            "--write-token", site.write, "--follow", str(log),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        _wait_until_reading(process, log)
        time.sleep(0.5)  # a few lines: read at once, then it waits for more
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr
    assert stats(server.url, site, "requests")[""] == len(SCENARIO)


def test_follow_sends_hours_as_they_end_across_a_rotation(
    collector: tuple[CollectorProcess, dict[str, SiteTokens]], tmp_path: Path
) -> None:
    server, tokens = collector
    site = tokens["periodic"]
    base = start_hour()
    log = tmp_path / "access.log"
    log.write_text(render("combined", base), encoding="utf-8")
    process = subprocess.Popen(
        [
            str(BIN / "headcount"), "import", "--host", HOST, "--endpoint", server.url,
            "--write-token", site.write, "--follow", "--send-every", "0.3",
            "--idle-exit", "60", str(log),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        _wait_until_reading(process, log)
        # The scenario's hours ended long ago: they arrive while the importer still runs.
        _wait_for(lambda: stats(server.url, site, "requests")[""] == len(SCENARIO), process)
        log.rename(tmp_path / "access.log.1")
        log.write_text(render("combined", base + 2 * 3600), encoding="utf-8")
        _wait_for(lambda: stats(server.url, site, "requests")[""] == 2 * len(SCENARIO), process)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr
    assert f"lines read: {2 * len(SCENARIO)}" in stderr
    assert "hours covered: 4" in stderr
    assert stats(server.url, site, "requests")[""] == 2 * len(SCENARIO)
    assert stats(server.url, site, "pageviews")[""] == 2 * sum(1 for h in SCENARIO if h.pageview)


def _wait_until_reading(process: subprocess.Popen[str], log: Path) -> None:
    """Until the importer holds ``log`` open (it starts slowly on a busy machine)."""
    wanted = str(log.resolve())
    fds = Path(f"/proc/{process.pid}/fd")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(OSError):
            if any(os.readlink(fd) == wanted for fd in fds.iterdir()):
                return
        time.sleep(0.05)
    raise AssertionError("the importer never opened the log")


def _wait_for(condition: Callable[[], bool], process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert process.poll() is None, "the importer stopped before sending"
        assert time.monotonic() < deadline, "nothing arrived in time"
        time.sleep(0.2)


def test_an_app_in_the_current_directory_loads_and_a_failing_one_is_one_line(
    tmp_path: Path,
) -> None:
    """As gunicorn and uvicorn do, the importer finds the app module where it is run."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "siteapp.py").write_text(
        "from flask import Flask\napp = Flask(__name__)\napp.add_url_rule('/', 'home', lambda: '')\n",
        encoding="utf-8",
    )
    (project / "needsdep.py").write_text("import missing_dependency_xyz\n", encoding="utf-8")
    (project / "needsenv.py").write_text(
        "import os\nTOKEN = os.environ['SOME_SETTING_THE_SERVER_SETS']\n", encoding="utf-8"
    )
    log = tmp_path / "access.log"
    log.write_text(render("combined", start_hour()), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    def run(app: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "headcount"), "import", "--dry-run", "--app", app, str(log)],
            cwd=project, env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    assert run("siteapp:app").returncode == 0
    for app, said in (
        ("nosuchmodule:app", "--app nosuchmodule:app: no module named 'nosuchmodule'"),
        ("needsenv:app", "importing needsenv raised KeyError: 'SOME_SETTING_THE_SERVER_SETS'"),
        ("siteapp:application", "--app siteapp:application: siteapp has no 'application'"),
        ("needsdep:app", "needs 'missing_dependency_xyz', which is not installed"),
    ):
        done = run(app)
        assert done.returncode == 1, app
        assert said in done.stderr, done.stderr
        assert "Traceback" not in done.stderr


@pytest.mark.parametrize("routes_from_app", [True, False])
def test_a_routers_rules_are_remembered_as_the_apps_own_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, routes_from_app: bool
) -> None:
    """A rule with a number in it (or a re_path group without a name) is not template
    text as written, so the tracker would work it out again for every line; a router's
    rules are the app's own text, and the importer says so, as the live integrations do."""
    (tmp_path / "rememberflask.py").write_text(
        "from flask import Flask\napp = Flask(__name__)\n"
        "@app.get('/archive/2024/<int:item>')\ndef item(item):\n    return str(item)\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    log = tmp_path / "access.log"
    log.write_text(
        "".join(
            f'203.0.113.{n} - - [01/Dec/2026:10:00:0{n} +0000] "GET /archive/2024/{n} '
            f'HTTP/1.1" 200 512 "-" "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Firefox/128.0"\n'
            for n in range(1, 4)
        ),
        encoding="utf-8",
    )
    sent: list[str] = []
    importer = Importer(
        parser_for("combined"),
        load_resolver("rememberflask:app", None, None),
        client=None,
        tracker_options={"visits_store": "memory"},
        dry_run=True,
        output=sent.append,
        routes_from_app=routes_from_app,
    )
    assert importer.run(LineSource([str(log)])).pageviews == 3
    assert '"route":"/archive/{id}/{item}"' in "".join(sent)
    remembered = "/archive/2024/<int:item>" in importer._tracker._route_infos
    assert remembered is routes_from_app
