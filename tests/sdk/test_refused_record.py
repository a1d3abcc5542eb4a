"""One record the collector refuses costs that record, not the whole batch it came in."""

from __future__ import annotations

from pathlib import Path

import httpx
from starlette.testclient import TestClient

from headcount import RequestInfo, Tracker
from headcount_collector.app import create_app
from headcount_collector.config import Settings, load_sites
from headcount_collector.stores.sqlite import SQLiteStore
from tests.collector.conftest import sqlite_snapshot
from tests.conftest import SHOP_WRITE_TOKEN, WRITE_TOKEN

from .conftest import ClientTransport

BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"


def test_an_undeclared_event_is_dropped_and_the_rest_delivered(
    tmp_path: Path, site_file: Path
) -> None:
    db = tmp_path / "c.sqlite3"
    app = create_app(Settings(config_path=str(site_file)), SQLiteStore(db), load_sites(site_file))
    with TestClient(app) as client:
        tracker = Tracker(
            "http://testserver",
            WRITE_TOKEN,
            transport=ClientTransport(client),
            flush_interval=86400,
            visits=False,
        )
        for _ in range(4):
            tracker.record_request(RequestInfo("GET", "/a", 200, 0.01, user_agent=BROWSER))
        tracker.event("purchase", route="/buy")  # the site "blog" never declared it
        tracker.event("signup", route="/join", plan="pro")  # declared
        # False: not everything counted reached the collector (one record was refused).
        assert tracker.flush(10) is False
        stats = tracker.stats()
        tracker.shutdown(1)
    assert stats.dropped == 1  # the one refused record
    assert stats.sent == 1
    total, batches = sqlite_snapshot(db)
    # 4 request counts + the declared event; the undeclared one is gone.
    assert total == 5
    assert batches == 1


def test_a_refused_batch_without_a_record_path_is_dropped_whole() -> None:
    def collector(request: httpx.Request) -> httpx.Response:
        return httpx.Response(422, json={"error": "a string contains a JSON escape", "path": "$"})

    tracker = Tracker(
        "http://c.invalid",
        SHOP_WRITE_TOKEN,
        transport=httpx.MockTransport(collector),
        flush_interval=86400,
    )
    tracker.record_request(RequestInfo("GET", "/a", 200, 0.01, user_agent=BROWSER))
    assert tracker.flush(5) is False
    assert tracker.stats().dropped == 1
    assert tracker.stats().sent == 0
    tracker.shutdown(1)


def test_counts_for_a_sealed_hour_are_stored_and_reported_as_late(tmp_path: Path) -> None:
    import time

    from tests.conftest import site_file_text

    sites = tmp_path / "sites.toml"
    sites.write_text(site_file_text(noise=True), encoding="utf-8")
    store = SQLiteStore(tmp_path / "c.sqlite3")
    # The collector lives a day ahead, so the hour the app counts in is long sealed.
    app = create_app(
        Settings(config_path=str(sites)),
        store,
        load_sites(sites),
        clock=lambda: time.time() + 86400,
    )
    with TestClient(app) as client:
        for _ in range(500):  # the first sealing pass sets the watermark as the app starts
            if "h" in store.seal_state("blog"):
                break
            time.sleep(0.01)
        tracker = Tracker(
            "http://testserver",
            WRITE_TOKEN,
            transport=ClientTransport(client),
            flush_interval=86400,
            visits=False,
        )
        for _ in range(3):
            tracker.record_request(
                RequestInfo("GET", "/a", 200, 0.01, user_agent=BROWSER, content_type="text/html")
            )
        assert tracker.flush(10) is True  # nothing is lost: stored, and counted as late
        stats = tracker.stats()
        tracker.shutdown(1)
    assert stats.sent == 1
    assert stats.dropped == 0
    assert stats.late == 6  # three requests and their three pageviews
    total, _ = sqlite_snapshot(tmp_path / "c.sqlite3")
    assert total == 6
