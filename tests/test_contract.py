"""The golden payload: what the SDK sends is pinned, and the collector accepts exactly that.

If the SDK's wire output changes, ``tests/golden/batch.json`` must change with it in the
same commit, and the collector must still accept it: the two halves cannot drift apart.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable
from pathlib import Path

import httpx
import msgspec
from starlette.testclient import TestClient

from headcount import RequestInfo, Tracker, wire
from headcount_collector.app import create_app
from headcount_collector.config import Settings, load_sites
from headcount_collector.stores.sqlite import SQLiteStore
from tests.collector.conftest import current_hour, sqlite_snapshot
from tests.conftest import WRITE_TOKEN

GOLDEN = Path(__file__).parent / "golden" / "batch.json"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
HOUR = 1_796_000_400  # a fixed UTC hour in the golden file


def capture_sdk_batch() -> dict[str, object]:
    sent: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = request.content
        if request.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        sent.append(body)
        return httpx.Response(202, json={"accepted": 1})

    tracker = Tracker(
        "http://collector.invalid",
        WRITE_TOKEN,
        transport=httpx.MockTransport(handler),
        flush_interval=3600,
        # One moment for every request: on the real clock, two requests at hh:59:59.9 and
        # hh:00:00.0 would be two hours, two records where the golden payload has one.
        clock=lambda: HOUR + 1800.0,
    )
    record: Callable[..., None] = lambda **kw: tracker.record_request(  # noqa: E731
        RequestInfo(user_agent=kw.pop("ua", BROWSER), **kw)
    )
    record(
        method="GET",
        route="/users/<int:id>",
        status=200,
        elapsed=0.03,
        host="blog.example",
        referer="https://www.news.example.org/a?b=c",
        content_type="text/html; charset=utf-8",
        query_string="utm_source=Newsletter&utm_medium=email&ref=alice@example.com",
        client_addr="203.0.113.7",
    )
    record(
        method="GET",
        route="/users/<int:id>",
        status=200,
        elapsed=0.031,
        host="blog.example",
        referer="https://blog.example/",
        content_type="text/html",
        client_addr="203.0.113.7",
    )
    record(method="POST", route="/contact", status=302, elapsed=0.2, host="blog.example")
    record(method="GET", route=None, status=404, elapsed=0.001, host="blog.example")
    record(
        method="GET",
        route="/",
        status=200,
        elapsed=0.002,
        host="blog.example",
        ua="Googlebot/2.1 (+http://www.google.com/bot.html)",
        content_type="text/html",
    )
    tracker.event("signup", route="/signup", plan="pro")
    # Shutdown, not flush: a flush leaves the open visit open, shutdown ends and sends it.
    assert tracker.shutdown(5)
    assert len(sent) == 1
    batch = msgspec.json.decode(sent[0])
    return normalise(batch)


def normalise(batch: dict[str, object]) -> dict[str, object]:
    """Replace what varies by run (id, version, hour) and order records canonically."""
    records = [dict(r, hour=HOUR) for r in batch["records"]]  # type: ignore[attr-defined]
    records.sort(key=lambda r: msgspec.json.encode(r, order="sorted"))
    return {**batch, "batch_id": "0" * 32, "sender_version": "X", "records": records}


def test_sdk_output_matches_the_golden_payload() -> None:
    produced = capture_sdk_batch()
    if os.environ.get("HEADCOUNT_UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_bytes(
            msgspec.json.format(msgspec.json.encode(produced, order="sorted")) + b"\n"
        )
    golden = msgspec.json.decode(GOLDEN.read_bytes())
    assert produced == golden
    # The SDK's payload is also valid against the schema object it claims to follow.
    msgspec.convert(produced, wire.Batch)


def test_collector_accepts_the_golden_payload(tmp_path: Path, site_file: Path) -> None:
    golden = msgspec.json.decode(GOLDEN.read_bytes())
    hour = current_hour()
    golden["records"] = [dict(r, hour=hour) for r in golden["records"]]
    store = SQLiteStore(tmp_path / "c.sqlite3")
    app = create_app(Settings(config_path=str(site_file)), store, load_sites(site_file))
    with TestClient(app) as client:
        response = client.post(
            "/v1/ingest",
            content=msgspec.json.encode(golden),
            headers={"Authorization": f"Bearer {WRITE_TOKEN}", "Content-Type": "application/json"},
        )
        assert response.status_code == 202, response.text
        assert response.json() == {"accepted": len(golden["records"])}
        kinds = {r["kind"] for r in golden["records"]}
        assert kinds == {"pageview", "request", "event", "bot", "visit"}
    total, batches = sqlite_snapshot(tmp_path / "c.sqlite3")
    assert total == sum(r["n"] for r in golden["records"])
    assert batches == 1
