"""The sender against a scripted in-memory collector (httpx.MockTransport).

The fake collector dedupes by batch_id the way the real one does, so "exact totals and
no duplicates" is checked on what it applied, not on what the SDK believes it sent.
"""

from __future__ import annotations

import gzip
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import msgspec
import pytest

from headcount import RequestInfo, Tracker
from headcount.wire import MAX_BODY_BYTES, MAX_RECORDS, Batch, Request

from .conftest import BROWSER

Script = Callable[[int, Batch], httpx.Response | None]


class FakeCollector:
    """Applies each batch_id once; ``script(attempt, batch)`` may answer first.

    A script returning None lets the collector apply the batch and answer 202 (or 200
    duplicate); raising an httpx error simulates a failed connection.
    """

    def __init__(self, script: Script | None = None, *, apply_before_script: bool = False) -> None:
        self.script = script
        self.apply_before_script = apply_before_script
        self.attempts: list[tuple[float, str, bytes, httpx.Headers]] = []
        self.applied: dict[str, Batch] = {}
        self.lock = threading.Lock()

    def handle(self, request: httpx.Request) -> httpx.Response:
        raw = request.content
        body = gzip.decompress(raw) if request.headers.get("content-encoding") == "gzip" else raw
        batch = msgspec.json.decode(body, type=Batch)  # strict, as the collector is
        with self.lock:
            self.attempts.append((time.monotonic(), batch.batch_id, raw, request.headers))
            attempt = len(self.attempts)
            if self.apply_before_script:
                self.applied.setdefault(batch.batch_id, batch)
        if self.script is not None:
            answer = self.script(attempt, batch)
            if answer is not None:
                return answer
        with self.lock:
            if batch.batch_id in self.applied and not self.apply_before_script:
                return httpx.Response(200, json={"duplicate": True})
            self.applied[batch.batch_id] = batch
        return httpx.Response(202, json={"accepted": len(batch.records)})

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def total(self, kind: type = Request) -> int:
        return sum(r.n for b in self.applied.values() for r in b.records if isinstance(r, kind))

    def routes(self) -> set[str]:
        return {r.route for b in self.applied.values() for r in b.records if isinstance(r, Request)}


def alpha(i: int) -> str:
    """A distinct letters-only path segment per number (digit runs would become {id})."""
    letters = ""
    while True:
        i, rest = divmod(i, 26)
        letters += chr(97 + rest)
        if not i:
            return letters


def make_tracker(collector: FakeCollector, **options: Any) -> Tracker:
    settings: dict[str, Any] = {
        "flush_interval": 86400,  # only explicit flushes, unless a test says otherwise
        "backoff_initial": 0.01,
        "backoff_max": 0.05,
        "transport": collector.transport(),
        **options,
    }
    return Tracker("http://collector.test", "write-token", **settings)


def record(tracker: Tracker, n: int, route: str = "/api/items") -> None:
    for _ in range(n):
        tracker.record_request(RequestInfo("GET", route, 200, 0.02, user_agent=BROWSER))


def test_batch_ids_name_their_sender_and_count_up() -> None:
    """The layout the collector keeps side by side (wire.Batch): 6 digits naming this
    sender, 8 counting its batches, 18 random."""
    collector = FakeCollector()
    tracker = make_tracker(collector)
    for n in range(4):
        record(tracker, 1, route=f"/r{alpha(n)}")
        assert tracker.flush(2) is True
    ids = [batch_id for _, batch_id, _, _ in collector.attempts]
    assert len(ids) == 4
    assert all(len(i) == 32 for i in ids)
    assert len({i[:6] for i in ids}) == 1
    counts = [int(i[6:14], 16) for i in ids]
    assert counts == [(counts[0] + k) & 0xFFFFFFFF for k in range(4)]
    assert len({i[14:] for i in ids}) == 4
    other = FakeCollector()
    second = make_tracker(other)
    record(second, 1)
    assert second.flush(2) is True
    assert other.attempts[0][1][:6] != ids[0][:6]


def test_batches_are_well_formed_and_authenticated() -> None:
    collector = FakeCollector()
    tracker = make_tracker(collector)
    record(tracker, 3)
    assert tracker.flush(2) is True
    ((_, batch_id, _raw, headers),) = collector.attempts
    assert headers["authorization"] == "Bearer write-token"
    assert headers["content-type"] == "application/json"
    assert "content-encoding" not in headers  # small bodies are not compressed
    batch = collector.applied[batch_id]
    assert len(batch_id) == 32
    assert batch.sender == "headcount-python"
    assert collector.total() == 3
    assert tracker.stats().sent == 1
    assert tracker.peek() == []
    tracker.shutdown(1)


def test_large_bodies_are_gzipped_and_split_under_the_limits() -> None:
    collector = FakeCollector()
    tracker = make_tracker(collector, max_keys=30_000)
    routes = MAX_RECORDS + 5_000
    for i in range(routes):
        tracker.record_request(RequestInfo("POST", f"/r/{alpha(i)}", 201, 0.02, user_agent=BROWSER))
    assert tracker.flush(10) is True
    assert len(collector.attempts) >= 2
    for _, _, raw, headers in collector.attempts:
        assert headers["content-encoding"] == "gzip"
        assert len(gzip.decompress(raw)) <= MAX_BODY_BYTES
    assert all(len(b.records) <= MAX_RECORDS for b in collector.applied.values())
    assert collector.total() == routes
    tracker.shutdown(1)


def test_outage_then_recovery_gives_exact_totals_without_duplicates() -> None:
    def outage(attempt: int, batch: Batch) -> httpx.Response | None:
        if attempt <= 3:
            raise httpx.ConnectError("collector down")
        if attempt == 4:
            return httpx.Response(503)  # applied, but the answer is lost
        return None

    collector = FakeCollector(outage, apply_before_script=True)
    tracker = make_tracker(collector)
    record(tracker, 10)
    assert tracker.flush(5) is True
    ids = [batch_id for _, batch_id, _, _ in collector.attempts]
    bodies = {raw for _, _, raw, _ in collector.attempts}
    assert len(ids) == 5
    assert len(set(ids)) == 1
    assert len(bodies) == 1  # byte for byte
    assert collector.total() == 10
    stats = tracker.stats()
    assert (stats.sent, stats.retried, stats.dropped, stats.buffered) == (1, 4, 0, 0)

    record(tracker, 5)
    assert tracker.flush(5) is True
    assert collector.total() == 15
    assert len(collector.applied) == 2
    tracker.shutdown(1)


def test_duplicate_answer_counts_as_sent() -> None:
    def lost_answer(attempt: int, batch: Batch) -> httpx.Response | None:
        return httpx.Response(504) if attempt == 1 else None

    collector = FakeCollector(lost_answer, apply_before_script=True)
    tracker = make_tracker(collector)
    record(tracker, 2)
    assert tracker.flush(5) is True
    assert tracker.stats().sent == 1
    assert collector.total() == 2
    tracker.shutdown(1)


@pytest.mark.parametrize("status", [400, 404, 413, 422])
def test_client_errors_drop_the_batch_and_log_once(
    status: int, caplog: pytest.LogCaptureFixture
) -> None:
    def reject(attempt: int, batch: Batch) -> httpx.Response:
        return httpx.Response(status, json={"error": "wrong write token for this site"})

    collector = FakeCollector(reject)
    tracker = make_tracker(collector)
    with caplog.at_level(logging.WARNING, logger="headcount"):
        record(tracker, 4, route="/secret/<int:id>")
        assert tracker.flush(2) is False  # refused: not delivered
        record(tracker, 4)
        assert tracker.flush(2) is False
    assert len(collector.attempts) == 2  # never retried
    stats = tracker.stats()
    assert (stats.sent, stats.dropped, stats.buffered) == (0, 2, 0)
    messages = [r.getMessage() for r in caplog.records if r.name == "headcount"]
    assert len(messages) == 1  # rate-limited
    if status != 404:
        assert "wrong write token for this site" in messages[0]
    else:
        assert "base URL" in messages[0]
    assert f"HTTP {status}" in messages[0]
    assert "http://collector.test/v1/ingest" in messages[0]
    assert "/secret" not in messages[0]
    assert "Bearer" not in messages[0]
    tracker.shutdown(1)


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503])
def test_retryable_statuses_are_retried(status: int) -> None:
    collector = FakeCollector(lambda a, b: httpx.Response(status) if a == 1 else None)
    tracker = make_tracker(collector)
    record(tracker, 1)
    assert tracker.flush(5) is True
    assert len(collector.attempts) == 2
    assert tracker.stats().retried == 1
    tracker.shutdown(1)


def test_retry_after_is_honoured() -> None:
    def busy(attempt: int, batch: Batch) -> httpx.Response | None:
        if attempt == 1:
            return httpx.Response(429, headers={"Retry-After": "1"})
        return None

    collector = FakeCollector(busy)
    tracker = make_tracker(collector)  # its own backoff would retry after ~10 ms
    record(tracker, 1)
    assert tracker.flush(5) is True
    (first, *_), (second, *_) = collector.attempts
    assert second - first >= 1.0
    tracker.shutdown(1)


def test_flush_gives_up_at_its_deadline_when_retry_after_is_longer() -> None:
    collector = FakeCollector(lambda a, b: httpx.Response(503, headers={"Retry-After": "60"}))
    tracker = make_tracker(collector)
    record(tracker, 1)
    started = time.monotonic()
    assert tracker.flush(0.5) is False
    assert time.monotonic() - started < 0.5
    assert tracker.stats().buffered == 1
    tracker.shutdown(0.2)


def test_full_buffer_drops_the_oldest_and_reports_it() -> None:
    down = True

    def maybe_down(attempt: int, batch: Batch) -> httpx.Response | None:
        if down:
            raise httpx.ConnectError("down")
        return None

    collector = FakeCollector(maybe_down)
    tracker = make_tracker(collector, max_buffer_batches=3, backoff_initial=60, backoff_max=60)
    for round_number in range(5):
        record(tracker, 2, route=f"/round{alpha(round_number)}")
        assert tracker.flush(0.2) is False
    stats = tracker.stats()
    assert (stats.dropped, stats.buffered, stats.sent) == (2, 3, 0)

    down = False
    # The buffered batches are in backoff for a minute; shutdown tries them once more.
    assert tracker.shutdown(5) is True
    assert collector.routes() == {"/roundc", "/roundd", "/rounde"}  # oldest two dropped
    assert collector.total() == 6
    assert tracker.stats().sent == 3


def test_buffer_byte_bound_drops_the_oldest() -> None:
    collector = FakeCollector(lambda a, b: httpx.Response(503))
    tracker = make_tracker(collector, max_buffer_bytes=1024, max_keys=1000)
    for i in range(3):
        for j in range(400):
            tracker.record_request(RequestInfo("GET", f"/r{alpha(i)}/p{alpha(j)}",
                                               200, 0.02, user_agent=BROWSER))  # fmt: skip
        tracker.flush(0.1)
    stats = tracker.stats()
    assert stats.dropped >= 1
    assert stats.buffered + stats.dropped == 3
    tracker.shutdown(0.1)


def test_background_thread_sends_on_its_own() -> None:
    collector = FakeCollector()
    tracker = make_tracker(collector, flush_interval=0.2, send_schedule="immediate")
    record(tracker, 7)
    deadline = time.monotonic() + 5
    while collector.total() < 7 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert collector.total() == 7
    tracker.shutdown(1)


def test_the_transport_carries_every_send_and_is_closed_at_shutdown() -> None:
    collector = FakeCollector()

    class CountingTransport(httpx.MockTransport):
        closed = False

        def close(self) -> None:
            CountingTransport.closed = True

    transport = CountingTransport(collector.handle)
    tracker = Tracker("http://collector.test", "tok", transport=transport, flush_interval=86400)
    record(tracker, 1)
    assert tracker.flush(2) is True
    record(tracker, 1)
    assert tracker.flush(2) is True
    assert collector.total() == 2
    assert not CountingTransport.closed
    tracker.shutdown(1)
    assert CountingTransport.closed  # the tracker's client, and so its transport, closed


def test_unexpected_client_errors_are_swallowed_and_retried() -> None:
    def explode(attempt: int, batch: Batch) -> httpx.Response | None:
        if attempt == 1:
            raise RuntimeError("bug in a custom transport")
        return None

    collector = FakeCollector(explode)
    tracker = make_tracker(collector)
    record(tracker, 1)
    assert tracker.flush(2) is True
    assert tracker.stats().errors == 1
    assert collector.total() == 1
    tracker.shutdown(1)
