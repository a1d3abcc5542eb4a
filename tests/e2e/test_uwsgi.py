"""The Flask example under uWSGI: forked workers without Python's fork hooks.

uWSGI loads the app in its master and forks workers without running CPython's fork
hooks (unless --py-call-uwsgi-fork-hooks), so only the SDK's pid check keeps a worker
from reusing its parent's table, lock and sender. Counts must arrive exactly once.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests._servers import CollectorProcess, answers_http, free_port, spawn
from tests.conftest import SHOP_READ_TOKEN, SHOP_WRITE_TOKEN

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"


def pageviews_by_route(server: CollectorProcess) -> dict[str, int]:
    response = httpx.get(
        f"{server.url}/v1/stats",
        params={"metric": "pageviews", "interval": "total", "by": "route"},
        headers={"Authorization": f"Bearer {SHOP_READ_TOKEN}"},
    )
    assert response.status_code == 200
    return {row["route"]: row["count"] for row in response.json()["rows"]}


def test_flask_example_under_uwsgi_counts_each_request_once(
    collector_server: CollectorProcess, tmp_path: Path
) -> None:
    uwsgi = str(Path(sys.executable).parent / "uwsgi")
    if not Path(uwsgi).exists():
        pytest.fail("uwsgi is part of the dev extra and must be installed")
    port = free_port()
    env = {
        **os.environ,
        "HEADCOUNT_ENDPOINT": collector_server.url,
        "HEADCOUNT_WRITE_TOKEN": SHOP_WRITE_TOKEN,
        "HEADCOUNT_FLUSH_INTERVAL": "1",
        # Counts while the app runs, not an hour later.
        "HEADCOUNT_SEND_SCHEDULE": "immediate",
    }
    argv = [
        uwsgi, "--http-socket", f"127.0.0.1:{port}", "--master", "--processes", "2",
        "--enable-threads", "--need-app", "--die-on-term", "--disable-logging",
        "--pythonpath", str(ROOT), "--module", "examples.flask_app.app:app",
    ]  # fmt: skip
    server = spawn("uwsgi", argv, tmp_path / "uwsgi.log", cwd=ROOT, env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        # The default httpx user agent is a bot: never a pageview.
        server.wait_until(answers_http(f"{url}/", lambda response: response.is_success))
        headers = {"User-Agent": BROWSER, "Accept": "text/html"}
        # uWSGI's http-socket closes each connection after its response.
        no_reuse = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(base_url=url, headers=headers, limits=no_reuse) as client:
            for _ in range(40):
                assert client.get("/about").status_code == 200
            for number in (1, 2, 3):
                assert client.get(f"/users/{number}").status_code == 200
        expected = {"/about": 40, "/users/{id}": 3}
        deadline = time.monotonic() + 20
        while pageviews_by_route(collector_server) != expected:
            assert time.monotonic() < deadline, (
                pageviews_by_route(collector_server),
                server.log_text(),
            )
            time.sleep(0.3)
        # Settled: nothing arrives twice from a worker that inherited its master's state.
        time.sleep(2.5)
        assert pageviews_by_route(collector_server) == expected
    finally:
        server.stop(timeout=20)
