"""``headcount.testing.RecordingCollector``: what a user's own instrumentation tests rely on."""

from __future__ import annotations

import gzip
from collections import Counter

import httpx
import msgspec

import headcount.testing
from headcount import Tracker
from headcount.testing import RecordingCollector
from headcount.wire import INGEST_PATH, Batch, Pageview, Request

from .conftest import page

TOKEN = "hcw_test-token"


def tracker_for(transport: httpx.MockTransport | None = None, endpoint: str = "") -> Tracker:
    return Tracker(
        endpoint or "http://collector.test", TOKEN, transport=transport, flush_interval=86400
    )


def batch_body(batch_id: str, records: list[dict[str, object]]) -> bytes:
    return msgspec.json.encode(
        {"batch_id": batch_id, "sender": "test", "sender_version": "1", "records": records}
    )


def pageview(**fields: object) -> dict[str, object]:
    record: dict[str, object] = {
        "kind": "pageview", "hour": 1_796_000_400, "route": "/", "referrer": "(direct)",
        "entry": True, "n": 1,
    }  # fmt: skip
    record.update(fields)
    return record


def test_a_tracker_sends_to_it_and_its_counts_are_read_by_kind_and_field() -> None:
    collector = RecordingCollector(write_token=TOKEN)
    tracker = tracker_for(collector.transport())
    for _ in range(2):
        tracker.record_request(page(route="/articles/<int:id>"))
    tracker.record_request(page(route="/about", status=404, route_from_app=True))
    # A 404 under a route not from the app's router: the visitor's own path.
    tracker.record_request(page(route="/u/jane-doe", status=404))
    assert tracker.flush(5)
    tracker.shutdown(1)

    assert collector.rejected == []
    assert collector.counts(Pageview, "route") == Counter({("/articles/{id}",): 2})
    assert collector.counts(Request, "route", "status") == Counter(
        {("/articles/{id}", "2xx"): 2, ("/about", "4xx"): 1, ("(unmatched)", "4xx"): 1}
    )
    assert collector.total(Request) == 4
    assert all(isinstance(r, Pageview) for r in collector.records(Pageview))


def test_a_retried_batch_is_recorded_once_and_answered_as_a_duplicate() -> None:
    collector = RecordingCollector()
    body = gzip.compress(batch_body("a" * 32, [pageview(n=4)]))
    with httpx.Client(transport=collector.transport(), base_url="http://c.test") as client:
        headers = {"Content-Encoding": "gzip"}
        assert client.post(INGEST_PATH, content=body, headers=headers).status_code == 202
        again = client.post(INGEST_PATH, content=body, headers=headers)
    assert (again.status_code, again.json()) == (200, {"duplicate": True})
    assert collector.total(Pageview) == 4
    assert len(collector.batches) == 1


def test_what_the_collector_would_refuse_is_refused_with_its_reason() -> None:
    collector = RecordingCollector(write_token=TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    refused = {
        "an identifier in a route": (batch_body("b" * 32, [pageview(route="/u/ann@x.org")]), 422),
        "a host, not its registrable domain": (
            batch_body("c" * 32, [pageview(referrer="www.example.org")]),
            422,
        ),
        "a field the schema lacks": (batch_body("d" * 32, [pageview(ip="203.0.113.9")]), 422),
        "not JSON": (b"{", 422),
    }
    with httpx.Client(transport=collector.transport(), base_url="http://c.test") as client:
        for what, (body, status) in refused.items():
            assert client.post(INGEST_PATH, content=body, headers=auth).status_code == status, what
        wrong_token = client.post(INGEST_PATH, content=batch_body("e" * 32, [pageview()]))
        assert wrong_token.status_code == 401
        assert client.post("/v1/other", content=b"", headers=auth).status_code == 404
    assert collector.batches == []
    reasons = collector.rejected
    assert len(reasons) == len(refused) + 2
    assert "not a template" in reasons[0]
    assert "registrable domain" in reasons[1]
    assert "write token" in reasons[-2]


def test_served_over_http_it_records_what_a_tracker_in_any_process_sends() -> None:
    collector = RecordingCollector(write_token=TOKEN)
    with collector.serve() as url:
        tracker = tracker_for(endpoint=url)
        tracker.record_request(page(route="/pricing"))
        assert tracker.flush(5)
        tracker.shutdown(1)
    assert collector.rejected == []
    assert collector.counts(Pageview, "route") == Counter({("/pricing",): 1})
    (batch,) = collector.batches
    assert isinstance(batch, Batch)


def test_clear_forgets_batches_and_reasons() -> None:
    collector = RecordingCollector()
    with httpx.Client(transport=collector.transport(), base_url="http://c.test") as client:
        client.post(INGEST_PATH, content=batch_body("f" * 32, [pageview()]))
        client.post(INGEST_PATH, content=b"{")
    collector.clear()
    assert (collector.batches, collector.rejected) == ([], [])


def test_the_module_exports_exactly_the_recording_collector() -> None:
    assert headcount.testing.__all__ == ["RecordingCollector"]
