"""Each example app under its real server, counted into a real collector.

Hostile traffic goes in (identifiers in paths, query strings, referrers, cookies,
headers and user agents); exact counts come out of ``/v1/stats``; and none of the
injected identifiers, nor their hashes, appear in the collector's database (WAL
included), the collector's log, the app server's output, or any byte the SDK sent.
Shutting the server down loses nothing it had counted.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import msgspec
import pytest

from headcount.wire import INGEST_PATH, Batch, Request
from tests._servers import CollectorProcess

from ._capture import CapturingProxy
from .conftest import (
    BROWSER,
    EXAMPLE_APPS,
    AppServer,
    AppServerFactory,
    ExampleApp,
    Identifiers,
    Stats,
    leaks,
)

pytestmark = pytest.mark.slow

Headers = Mapping[str, str | bytes]
Expected = dict[str, object]


@dataclass(frozen=True)
class Hit:
    """One request the test sends, and what Headcount must make of it."""

    path: str
    route: str
    status: str
    headers: Headers
    method: str = "GET"
    form: Mapping[str, str] = field(default_factory=dict)
    pageview: tuple[str, bool] | None = None  # (referrer, entry) when it is a pageview
    utm_source: str | None = None
    bot: bool = False


def hostile_headers(ids: Identifiers) -> dict[str, str | bytes]:
    """Headers that carry identifiers on every request: none may reach a count."""
    return {
        "Cookie": f"sessionid={ids.cookie}; email={ids.email}; uid={ids.uuid}",
        "Authorization": f"Bearer {ids.bearer}",
        "X-Forwarded-For": f"{ids.ipv4}, {ids.ipv6}",
        "X-Real-IP": ids.ipv4,
        "Forwarded": f'for="[{ids.ipv6}]";proto=https',
    }


def browsing(app: ExampleApp, base_url: str, ids: Identifiers) -> list[Hit]:
    hostile = hostile_headers(ids)
    browser = {**hostile, "User-Agent": BROWSER}
    page = app.route_of
    user = app.user_route
    return [
        # Pageviews, each with the referrer and entry it must be counted under.
        Hit("/", "/", "2xx", browser, pageview=("(direct)", True)),
        Hit("/", "/", "2xx", browser, pageview=("(direct)", True)),
        Hit(
            f"/?email={ids.email}&id={ids.uuid}&token={ids.token}&utm_source=newsletter"
            f"&utm_medium={ids.long_number}&utm_campaign={ids.uuid}",
            "/",
            "2xx",
            {
                **browser,
                "Referer": f"https://www.search.example.com/s?q={ids.email}&sid={ids.token}",
            },
            pageview=("example.com", True),
            utm_source="newsletter",
        ),
        Hit(
            app.about,
            page(app.about),
            "2xx",
            {
                **browser,
                "Sec-Fetch-Site": "same-origin",
                "Referer": f"{base_url}{app.user_path(ids.email)}?token={ids.token}",
            },
            pageview=("(internal)", False),
        ),
        *[
            Hit(
                app.user,
                user,
                "2xx",
                {**browser, "Referer": f"https://news.example.org/item?id={ids.long_number}"},
                pageview=("example.org", True),
            )
        ]
        * 2,
        Hit(
            app.about,
            page(app.about),
            "2xx",
            {**browser, "Referer": f"http://{ids.ipv4}/login?user={ids.email}"},
            pageview=("(other)", True),
        ),
        Hit(
            app.user,
            user,
            "2xx",
            {**browser, "Referer": f"https://jane:{ids.token}@forum.example.net/t/{ids.uuid}"},
            pageview=("example.net", True),
        ),
        Hit(
            "/",
            "/",
            "2xx",
            {**browser, "User-Agent": ids.unicode_ua.encode("utf-8")},
            pageview=("(direct)", True),
        ),
        Hit(
            app.about,
            page(app.about),
            "2xx",
            {**browser, "User-Agent": ids.long_ua, "Referer": f"http://[{ids.ipv6}]/"},
            pageview=("(other)", True),
        ),
        Hit(
            app.about,
            page(app.about),
            "2xx",
            {**browser, "Sec-Fetch-Site": "cross-site"},
            pageview=("(other)", True),
        ),
        # Bots: load on the app, never pageviews.
        Hit("/", "/", "2xx", {**hostile, "User-Agent": ""}, bot=True),
        Hit(
            "/",
            "/",
            "2xx",
            {**hostile, "User-Agent": ids.bot_ua, "Referer": f"https://spam.example/{ids.email}"},
            bot=True,
        ),
        Hit(app.user, user, "2xx", {**hostile, "User-Agent": "curl/8.5.0"}, bot=True),
        Hit(
            app.user_path(ids.email),
            "(unmatched)",
            "4xx",
            {**hostile, "User-Agent": f"python-requests/2.32.3 {ids.ua_marker}"},
            bot=True,
        ),
        # Requests that are not pageviews: errors, a form post, a CSV, speculative loads.
        Hit(f"/{ids.uuid}", "(unmatched)", "4xx", browser),
        Hit(f"/files/{ids.token}/{ids.email}", "(unmatched)", "4xx", browser),
        Hit(app.user_path(ids.long_number), user, "4xx", browser),
        Hit(app.user_path(ids.ipv4), "(unmatched)", "4xx", browser),
        Hit(
            app.contact,
            page(app.contact),
            app.contact_post_status,
            browser,
            method="POST",
            form={"name": ids.email, "card": ids.long_number, "note": ids.token},
        ),
        Hit(app.report, page(app.report), "2xx", browser),
        Hit(app.boom, page(app.boom), "5xx", browser),
        Hit("/", "/", "2xx", {**browser, "Purpose": "prefetch"}),
        Hit(app.about, page(app.about), "2xx", {**browser, "Sec-Fetch-Dest": "image"}),
    ]


def last_moments(app: ExampleApp, ids: Identifiers) -> list[Hit]:
    """Traffic sent just before the server is told to stop: one of each kind."""
    hostile = hostile_headers(ids)
    return [
        Hit("/", "/", "2xx", {**hostile, "User-Agent": BROWSER}, pageview=("(direct)", True)),
        Hit(
            app.about,
            app.route_of(app.about),
            "2xx",
            {**hostile, "User-Agent": ids.bot_ua},
            bot=True,
        ),
        Hit(f"/{ids.uuid}", "(unmatched)", "4xx", {**hostile, "User-Agent": BROWSER}),
    ]


def raw_headers(headers: Headers) -> list[tuple[bytes, bytes]]:
    # As bytes: a user agent in UTF-8 is legal on the wire but not as an httpx str.
    return [(k.encode(), v if isinstance(v, bytes) else v.encode()) for k, v in headers.items()]


def send(base_url: str, hits: Sequence[Hit]) -> None:
    with httpx.Client(base_url=base_url, timeout=20) as client:
        for hit in hits:
            if hit.status == "5xx":
                # On its own connection: uvicorn drops a keep-alive connection after an
                # application error.
                with httpx.Client(base_url=base_url, timeout=20) as own:
                    response = own.request(hit.method, hit.path, headers=raw_headers(hit.headers))
            else:
                response = client.request(
                    hit.method,
                    hit.path,
                    headers=raw_headers(hit.headers),
                    data=dict(hit.form) or None,
                )
            status = f"{response.status_code // 100}xx"
            assert status == hit.status, (hit.method, hit.path, response.status_code)


def expected(hits: Sequence[Hit]) -> Expected:
    pageviews = [h for h in hits if h.pageview is not None]
    return {
        "pageviews by route": dict(Counter((h.route,) for h in pageviews)),
        "pageviews by referrer": dict(Counter((h.pageview[0],) for h in pageviews if h.pageview)),
        "entries by route": dict(
            Counter((h.route,) for h in pageviews if h.pageview and h.pageview[1])
        ),
        "pageviews by utm_source": dict(Counter((h.utm_source or "(none)",) for h in pageviews)),
        "requests by route and status": dict(Counter((h.route, h.status) for h in hits)),
        "requests by method": dict(Counter((h.method,) for h in hits)),
        "bots": sum(h.bot for h in hits),
    }


def observed(stats: Stats) -> Expected:
    return {
        "pageviews by route": stats.counts("pageviews", "route"),
        "pageviews by referrer": stats.counts("pageviews", "referrer"),
        "entries by route": stats.counts("entries", "route"),
        "pageviews by utm_source": stats.counts("pageviews", "utm_source"),
        "requests by route and status": stats.counts("requests", "route", "status"),
        "requests by method": stats.counts("requests", "method"),
        "bots": stats.total("bots"),
    }


def send_then_terminate(
    server: AppServer, proxy: CapturingProxy, burst: Sequence[Hit]
) -> tuple[list[Hit], float]:
    """Send ``burst`` and SIGTERM the server while its counts are still unsent.

    Repeats the burst when a periodic send went out meanwhile, so that what the test
    checks afterwards can only have been delivered by the shutdown path.
    """
    sent: list[Hit] = []
    for _ in range(10):
        started = time.monotonic()
        send(server.base_url, burst)
        sent += burst
        last = proxy.last_sent_at()
        if last is None or last < started:
            return sent, server.terminate()
    pytest.fail("a periodic send overlapped every burst; cannot test the shutdown path")


def ingest_records(proxy: CapturingProxy, after: float = 0.0) -> dict[str, Batch]:
    """The batches the SDK sent to the ingest endpoint (by batch id: retries count once)."""
    batches: dict[str, Batch] = {}
    for message in proxy.requests():
        if message.arrived < after:
            continue
        assert message.start_line.startswith(f"POST {INGEST_PATH} ".encode()), message.start_line
        batch = msgspec.json.decode(message.body, type=Batch)
        batches[batch.batch_id] = batch
    return batches


def requests_in(batches: Mapping[str, Batch]) -> int:
    return sum(r.n for b in batches.values() for r in b.records if isinstance(r, Request))


def database_bytes(db_path: Path) -> bytes:
    """The SQLite database with its write-ahead log and shared-memory index."""
    parts = [db_path, Path(f"{db_path}-wal"), Path(f"{db_path}-shm")]
    return b"".join(path.read_bytes() for path in parts if path.exists())


def assert_nothing_leaked(ids: Identifiers, where: str, haystack: bytes, control: bytes) -> None:
    # The control is something that must be there: a scan of the wrong or an empty
    # file would otherwise pass.
    assert control.lower() in haystack.lower(), f"{where}: scanned the wrong bytes"
    found = leaks(ids, haystack)
    assert not found, f"{where} contains {found}"


@pytest.mark.parametrize("name", list(EXAMPLE_APPS))
def test_example_app_counts_exactly_leaks_nothing_and_loses_nothing_at_shutdown(
    name: str,
    serve: AppServerFactory,
    proxy: CapturingProxy,
    collector: CollectorProcess,
    stats: Stats,
) -> None:
    app = EXAMPLE_APPS[name]
    ids = Identifiers.fresh()
    server = serve(app)

    hits = browsing(app, server.base_url, ids)
    send(server.base_url, hits)
    stats.wait_for(observed, expected(hits), "counts sent while the app runs")

    final = last_moments(app, ids)
    burst, terminated_at = send_then_terminate(server, proxy, final)
    assert server.wait_for_exit() in app.clean_exit, server.log_bytes()
    hits += burst
    stats.wait_for(observed, expected(hits), "counts after shutdown")
    assert stats.total("requests") == len(hits)
    assert stats.total("pageviews") == sum(h.pageview is not None for h in hits)

    # The shutdown path delivered the last counts, and the proxy saw every batch.
    assert requests_in(ingest_records(proxy, after=terminated_at)) >= len(final)
    assert requests_in(ingest_records(proxy)) == len(hits)

    sdk_traffic = proxy.everything()
    assert_nothing_leaked(ids, "bytes between SDK and collector", sdk_traffic, b"/v1/ingest")
    assert_nothing_leaked(ids, "app server output", server.log_bytes(), app.startup_line)
    database_while_running = database_bytes(collector.db_path)
    collector.stop()
    for where, haystack in (
        ("database while running", database_while_running),
        ("database after stop", database_bytes(collector.db_path)),
    ):
        assert_nothing_leaked(ids, where, haystack, b"example.net")
    assert_nothing_leaked(ids, "collector log", collector.log_path.read_bytes(), b"/v1/ingest")
