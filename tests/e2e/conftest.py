"""End-to-end fixtures: a real collector, a capturing proxy in front of it, the example
apps under real servers, and the hostile identifiers a run injects and then hunts for."""

from __future__ import annotations

import hashlib
import os
import secrets
import signal
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests._servers import (
    CollectorProcess,
    accepts_connections,
    free_port,
    spawn,
    start_collector,
)
from tests.conftest import SHOP_READ_TOKEN, SHOP_WRITE_TOKEN, site_file_text

from ._capture import CapturingProxy

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# The core treats a missing user agent as a bot; requests meant as pageviews send this.
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
# Where a test waits for counts to settle. Generous: CI machines are small and busy.
SETTLE_SECONDS = 25.0


# --- the example apps ----------------------------------------------------------------


@dataclass(frozen=True)
class ExampleApp:
    """How to serve one example app, and where its pages are."""

    name: str
    command: Callable[[int], list[str]]  # port -> argv, run from the repository root
    clean_exit: tuple[int, ...]
    about: str
    user: str  # an existing user's page
    user_path: Callable[[str], str]  # the user page path for any id
    user_route: str  # the route template that path resolves to
    contact: str
    contact_post_status: str  # the status class of a form POST without extra tokens
    report: str
    boom: str
    startup_line: bytes  # what the server always prints: proves its output was captured

    def route_of(self, path: str) -> str:
        """The route template a fixed page is counted under (trailing slashes are not
        part of a template)."""
        return "/" + path.strip("/") if path != "/" else path


def _gunicorn(app: str, *extra: str) -> Callable[[int], list[str]]:
    def command(port: int) -> list[str]:
        return [
            str(BIN / "gunicorn"),
            "--workers=2",
            f"--bind=127.0.0.1:{port}",
            "--graceful-timeout=10",
            *extra,
            app,
        ]

    return command


def _uvicorn(app: str) -> Callable[[int], list[str]]:
    def command(port: int) -> list[str]:
        # uvicorn's own access log would print raw paths; it is the server's log, not
        # the SDK's, and a real deployment that cares turns it off the same way.
        return [
            sys.executable,
            "-m",
            "uvicorn",
            f"--port={port}",
            "--host=127.0.0.1",
            "--no-access-log",
            app,
        ]

    return command


EXAMPLE_APPS = {
    "flask": ExampleApp(
        name="flask",
        command=_gunicorn(
            "examples.flask_app.app:app", "--config=examples/flask_app/gunicorn.conf.py"
        ),
        clean_exit=(0,),
        about="/about",
        user="/users/1",
        user_path=lambda id: f"/users/{id}",
        user_route="/users/{id}",
        contact="/contact",
        contact_post_status="3xx",
        report="/report.csv",
        boom="/boom",
        startup_line=b"Booting worker",
    ),
    # No gunicorn.conf.py: the Django example relies on the Tracker's own exit hook.
    "django": ExampleApp(
        name="django",
        command=_gunicorn("examples.django_project.wsgi"),
        clean_exit=(0,),
        about="/about/",
        user="/people/1/",
        user_path=lambda id: f"/people/{id}/",
        user_route="/people/{pk}",
        contact="/contact/",
        contact_post_status="4xx",  # CSRF protection refuses a form without its token
        report="/report.csv",
        boom="/boom/",
        startup_line=b"Booting worker",
    ),
    "fastapi": ExampleApp(
        name="fastapi",
        command=_uvicorn("examples.fastapi_app.app:app"),
        # uvicorn re-raises the signal it stopped on once it has shut down cleanly.
        clean_exit=(0, -signal.SIGTERM),
        about="/about",
        user="/users/1",
        user_path=lambda id: f"/users/{id}",
        user_route="/users/{id}",
        contact="/contact",
        contact_post_status="3xx",
        report="/report.csv",
        boom="/boom",
        startup_line=b"Application startup complete",
    ),
}


class AppServer:
    """An example app under its real server, sending through ``endpoint``."""

    def __init__(self, app: ExampleApp, endpoint: str, log_path: Path) -> None:
        self.app = app
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        env = {
            **os.environ,
            "HEADCOUNT_ENDPOINT": endpoint,
            "HEADCOUNT_WRITE_TOKEN": SHOP_WRITE_TOKEN,
            "HEADCOUNT_FLUSH_INTERVAL": "1",
            # Counts while the app runs, not an hour later.
            "HEADCOUNT_SEND_SCHEDULE": "immediate",
            # Entries then follow the referrer rule, which these tests pin hit by hit; with
            # visits on an entry is a visit's first pageview, which per-worker linking
            # under gunicorn makes depend on which worker served what (test_visits_e2e.py
            # covers visits and their entries).
            "HEADCOUNT_VISITS": "false",
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("HEADCOUNT_ENABLED", None)
        self.server = spawn(app.name, app.command(self.port), log_path, cwd=REPO_ROOT, env=env)
        # A TCP connect, not an HTTP request: a readiness probe must never be counted.
        self.server.wait_until(accepts_connections(self.port))

    def log_bytes(self) -> bytes:
        return self.log_path.read_bytes()

    def terminate(self) -> float:
        """SIGTERM the server (the gunicorn master or uvicorn); returns when it was sent."""
        sent = time.monotonic()
        self.server.process.send_signal(signal.SIGTERM)
        return sent

    def wait_for_exit(self) -> int:
        """The exit code after ``terminate()``; ``-SIGKILL`` if it did not stop in 30 s."""
        return self.server.wait(timeout=30)

    def kill(self) -> None:
        self.server.kill()


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[CollectorProcess]:
    sites = tmp_path / "sites.toml"
    sites.write_text(site_file_text(), encoding="utf-8")
    server = start_collector(tmp_path, sites)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def proxy(collector: CollectorProcess) -> Iterator[CapturingProxy]:
    url = httpx.URL(collector.url)
    capture = CapturingProxy(url.host, url.port or 80)
    try:
        yield capture
    finally:
        capture.close()


AppServerFactory = Callable[[ExampleApp], AppServer]


@pytest.fixture
def serve(tmp_path: Path, proxy: CapturingProxy) -> Iterator[AppServerFactory]:
    started: list[AppServer] = []

    def start(app: ExampleApp) -> AppServer:
        server = AppServer(app, proxy.url, tmp_path / f"{app.name}-server.log")
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()


# --- the stats API ---------------------------------------------------------------------


class Stats:
    """Reads the k=1 "shop" site through ``GET /v1/stats``, so every count is exact."""

    def __init__(self, collector_url: str) -> None:
        self._client = httpx.Client(
            base_url=collector_url,
            headers={"Authorization": f"Bearer {SHOP_READ_TOKEN}"},
            timeout=10,
        )

    def close(self) -> None:
        self._client.close()

    def counts(self, metric: str, *by: str) -> dict[tuple[str, ...], int]:
        params: dict[str, str] = {"metric": metric, "interval": "total"}
        if by:
            params["by"] = ",".join(by)
        response = self._client.get("/v1/stats", params=params)
        response.raise_for_status()
        body = response.json()
        assert body["k"] == 1, body
        assert body["withheld"] == 0, body
        counts: dict[tuple[str, ...], int] = {}
        for row in body["rows"]:
            key = tuple(str(row[name]) for name in by)
            counts[key] = counts.get(key, 0) + int(row["count"])
        return counts

    def total(self, metric: str) -> int:
        return sum(self.counts(metric).values())

    def wait_for(self, read: Callable[[Stats], object], expected: object, what: str) -> None:
        """Poll until ``read(self) == expected``; fail with the last reading at the deadline."""
        deadline = time.monotonic() + SETTLE_SECONDS
        seen = read(self)
        while seen != expected and time.monotonic() < deadline:
            time.sleep(0.25)
            seen = read(self)
        assert seen == expected, f"{what} did not settle"


@pytest.fixture
def stats(collector: CollectorProcess) -> Iterator[Stats]:
    reader = Stats(collector.url)
    yield reader
    reader.close()


# --- hostile identifiers -------------------------------------------------------------


@dataclass(frozen=True)
class Identifiers:
    """Values that identify a person or a secret, fresh for every run so that a match
    can only come from this run's traffic."""

    email: str
    uuid: str
    long_number: str
    token: str
    ipv4: str
    ipv6: str
    cookie: str
    bearer: str
    ua_marker: str  # carried inside every hostile user agent
    unicode_ua: str
    long_ua: str  # about 8 KB: gunicorn's default limit is 8190 bytes per header field
    bot_ua: str

    @classmethod
    def fresh(cls) -> Identifiers:
        run = secrets.token_hex(5)
        marker = f"uamark{run}"
        return cls(
            email=f"jane.doe.{run}@mailbox.example.org",
            uuid=str(uuid.uuid4()),
            long_number="4" + "".join(secrets.choice("0123456789") for _ in range(15)),
            token="sk_live_" + secrets.token_urlsafe(18),
            ipv4=f"203.0.113.{secrets.randbelow(250) + 2}",
            ipv6=f"2001:db8::{secrets.token_hex(2)}:{secrets.token_hex(2)}",
            cookie="sess" + secrets.token_hex(12),
            bearer="bearer" + secrets.token_hex(14),
            ua_marker=marker,
            unicode_ua=f"Mozilla/5.0 (X11; Ünïcødé 日本語 {marker}) Gecko/20100101 Firefox/128.0",
            long_ua=f"Mozilla/5.0 (X11; Linux x86_64; {marker}) Firefox/128.0 " + "A" * 7900,
            bot_ua=f"Mozilla/5.0 (compatible; Googlebot/2.1; {marker}; +http://www.google.com/bot.html)",
        )

    def values(self) -> dict[str, str]:
        return {
            "email": self.email,
            "uuid": self.uuid,
            "long_number": self.long_number,
            "token": self.token,
            "ipv4": self.ipv4,
            "ipv6": self.ipv6,
            "cookie": self.cookie,
            "bearer": self.bearer,
            "ua_marker": self.ua_marker,
            "unicode_ua": self.unicode_ua,
            "long_ua": self.long_ua,
            "bot_ua": self.bot_ua,
        }

    def needles(self) -> dict[str, bytes]:
        """Every form in which a leaked value could be written: as is, percent-encoded,
        and as the hex of its SHA-256 and MD5 (a "pseudonymised" identifier is still
        one). Compared case-insensitively."""
        found: dict[str, bytes] = {}
        for name, value in self.values().items():
            raw = value.encode("utf-8")
            found[name] = raw.lower()
            found[f"{name} (percent-encoded)"] = quote(value, safe="").encode("ascii").lower()
            found[f"{name} (sha256)"] = hashlib.sha256(raw).hexdigest().encode("ascii")
            found[f"{name} (md5)"] = hashlib.md5(raw).hexdigest().encode("ascii")
        return found


def leaks(identifiers: Identifiers, haystack: bytes) -> list[str]:
    """The names of the injected values that ``haystack`` contains in any form."""
    lowered = haystack.lower()
    return [name for name, needle in identifiers.needles().items() if needle in lowered]
