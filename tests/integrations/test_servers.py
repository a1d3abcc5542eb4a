"""The example apps under real servers: gunicorn (2 workers, with and without --preload)
and uvicorn, on free local ports, sending to a recording collector on shutdown."""

from __future__ import annotations

import os
import signal
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from headcount.testing import RecordingCollector
from headcount.wire import Request, Visit
from tests._servers import ServerProcess, answers_http, free_port, spawn

from .conftest import BROWSER, REPO_ROOT

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
WRITE_TOKEN = "server-test-token"


@dataclass
class Collector:
    recording: RecordingCollector
    url: str

    def requests(self) -> Counter[tuple[object, ...]]:
        return self.recording.counts(Request, "route", "method", "status")


@pytest.fixture
def collector() -> Iterator[Collector]:
    """A recording collector that accepts only this test's write token."""
    recording = RecordingCollector(write_token=WRITE_TOKEN)
    with recording.serve() as url:
        yield Collector(recording, url)
    assert recording.rejected == []


def start(
    name: str, command: list[str], collector: Collector, log: Path, base: str
) -> ServerProcess:
    env = {
        **os.environ,
        "HEADCOUNT_ENDPOINT": collector.url,
        "HEADCOUNT_WRITE_TOKEN": WRITE_TOKEN,
        "HEADCOUNT_FLUSH_INTERVAL": "3600",
    }
    env.pop("HEADCOUNT_ENABLED", None)
    server = spawn(name, command, log, cwd=REPO_ROOT, env=env)
    server.wait_until(answers_http(base + "/about"))
    return server


def stop(server: ServerProcess, clean_exit: tuple[int, ...] = (0,)) -> None:
    assert server.stop(timeout=30) in clean_exit, server.log_text()


def browse(base: str) -> None:
    with httpx.Client(base_url=base, headers={"User-Agent": BROWSER}, timeout=10) as client:
        for path in ("/", "/users/1", "/users/2", "/users/3"):
            assert client.get(path).status_code == 200, path
        assert client.get("/users/99").status_code == 404
        assert client.get("/no/such/page").status_code == 404
        assert client.get("/report.csv").text.startswith("id,name")
    # On its own connection: uvicorn drops a keep-alive connection after an app error.
    assert httpx.get(base + "/boom", headers={"User-Agent": BROWSER}, timeout=10).status_code == 500


@pytest.mark.parametrize("preload", [False, True], ids=["fork-then-load", "preload"])
def test_gunicorn_two_workers_serve_the_flask_example_and_flush_on_exit(
    collector: Collector, tmp_path: Path, preload: bool
) -> None:
    port = free_port()
    command = [
        str(BIN / "gunicorn"),
        "--workers=2",
        f"--bind=127.0.0.1:{port}",
        "--config=examples/flask_app/gunicorn.conf.py",
        "--graceful-timeout=10",
        *(["--preload"] if preload else []),
        "examples.flask_app.app:app",
    ]
    base = f"http://127.0.0.1:{port}"
    server = start("gunicorn", command, collector, tmp_path / "gunicorn.log", base)
    try:
        browse(base)
    finally:
        stop(server)

    assert collector.recording.rejected == []  # every batch carried the right token
    counted = collector.requests()
    assert counted[("/users/{id}", "GET", "2xx")] == 3
    assert counted[("/users/{id}", "GET", "4xx")] == 1
    assert counted[("(unmatched)", "GET", "4xx")] == 1
    assert counted[("/boom", "GET", "5xx")] == 1
    assert counted[("/report.csv", "GET", "2xx")] == 1


def test_uvicorn_serves_the_fastapi_example_and_flushes_on_lifespan_shutdown(
    collector: Collector, tmp_path: Path
) -> None:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        f"--port={port}",
        "--host=127.0.0.1",
        "--no-access-log",
        "examples.fastapi_app.app:app",
    ]
    base = f"http://127.0.0.1:{port}"
    server = start("uvicorn", command, collector, tmp_path / "uvicorn.log", base)
    try:
        browse(base)
        with httpx.Client(base_url=base, headers={"User-Agent": BROWSER}) as client:
            assert client.get("/help/articles/privacy").status_code == 200
    finally:
        # uvicorn re-raises the signal it stopped on once it has shut down cleanly.
        stop(server, clean_exit=(0, -signal.SIGTERM))

    assert "Application shutdown complete" in server.log_text()
    counted = collector.requests()
    assert counted[("/users/{id}", "GET", "2xx")] == 3
    assert counted[("/users/{id}", "GET", "4xx")] == 1
    assert counted[("(unmatched)", "GET", "4xx")] == 1
    assert counted[("/boom", "GET", "5xx")] == 1
    assert counted[("/help/articles/{slug}", "GET", "2xx")] == 1


_BARE_FASTAPI_APP = """
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from headcount import Tracker
from headcount.integrations.asgi import HeadcountMiddleware

app = FastAPI()
tracker = Tracker()  # HEADCOUNT_ENDPOINT and HEADCOUNT_WRITE_TOKEN from the environment
app.add_middleware(HeadcountMiddleware, tracker=tracker)


@app.get("/about")
def about() -> dict[str, str]:
    return {"page": "about"}


@app.get("/users/{user_id}")
def user(user_id: int) -> dict[str, int]:
    return {"user": user_id}


@app.get("/welcome", response_class=HTMLResponse)
def welcome() -> str:
    return "<p>Welcome</p>"
"""


@pytest.mark.parametrize("workers", [1, 2])
def test_the_readmes_fastapi_setup_sends_its_counts_when_uvicorn_is_stopped(
    collector: Collector, tmp_path: Path, workers: int
) -> None:
    """The README's FastAPI lines, no lifespan hook of the app's own: SIGTERM makes uvicorn
    end by raising the signal again, so exit hooks never run; the middleware's lifespan
    flush is what delivers the counts."""
    (tmp_path / "bare_app.py").write_text(_BARE_FASTAPI_APP, encoding="utf-8")
    port = free_port()
    command = [
        sys.executable, "-m", "uvicorn", f"--port={port}", "--host=127.0.0.1",
        "--no-access-log", f"--workers={workers}", f"--app-dir={tmp_path}", "bare_app:app",
    ]  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    server = start("uvicorn", command, collector, tmp_path / "uvicorn.log", base)
    try:
        with httpx.Client(base_url=base, headers={"User-Agent": BROWSER}, timeout=10) as client:
            for n in range(12):
                assert client.get(f"/users/{n}").status_code == 200
            # A visit of one page, still open when the server stops: it ends there.
            assert client.get("/welcome").status_code == 200
    finally:
        stop(server, clean_exit=(0, -signal.SIGTERM))
    assert collector.requests()[("/users/{user_id}", "GET", "2xx")] == 12, server.log_text()
    assert collector.recording.counts(Visit, "route", "pages") == {("/welcome", "1"): 1}


@pytest.mark.parametrize("workers", [1, 2])
def test_the_django_example_under_uvicorn_sends_its_counts_and_visits_when_stopped(
    collector: Collector, tmp_path: Path, workers: int
) -> None:
    """Django's ASGI handler refuses the lifespan, and uvicorn's workers exit without exit
    hooks: the example's asgi.py wraps it in HeadcountLifespan, whose end sends the
    counts and ends the visits linked in memory."""
    port = free_port()
    command = [
        sys.executable, "-m", "uvicorn", f"--port={port}", "--host=127.0.0.1",
        "--no-access-log", f"--workers={workers}", "examples.django_project.asgi:application",
    ]  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    server = start("uvicorn", command, collector, tmp_path / "uvicorn.log", base)
    try:
        with httpx.Client(base_url=base, headers={"User-Agent": BROWSER}, timeout=10) as client:
            for _ in range(3):
                assert client.get("/about/").status_code == 200
            assert client.get("/contact/").status_code == 200
    finally:
        stop(server, clean_exit=(0, -signal.SIGTERM))
    log = server.log_text()
    assert "Application shutdown complete" in log
    assert "without HeadcountLifespan" not in log
    counted = collector.requests()
    # Templates lose their trailing slash on the wire; the probe for /about was redirected.
    assert counted[("/about", "GET", "2xx")] == 3, (counted, log)
    assert counted[("/contact", "GET", "2xx")] == 1, (counted, log)
    # One browser, one connection: one visit, ended by the stop.
    assert sum(collector.recording.counts(Visit, "pages").values()) == 1, log
