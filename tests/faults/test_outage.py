"""The collector is down for a while: the SDK stays bounded, then recovers.

Shorter than the buffer: every count arrives, exactly. Longer: the oldest batches are
dropped, and stats() says so; counting resumes normally afterwards.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

import headcount
from headcount import RequestInfo
from tests._servers import free_port, start_collector
from tests.conftest import SHOP_WRITE_TOKEN
from tests.faults.conftest import stored_total

pytestmark = pytest.mark.slow


def tracker_for(port: int, max_buffer_batches: int) -> headcount.Tracker:
    return headcount.Tracker(
        f"http://127.0.0.1:{port}",
        SHOP_WRITE_TOKEN,
        flush_interval=0.1,
        send_schedule="immediate",
        backoff_initial=0.05,
        backoff_max=0.2,
        request_timeout=2,
        max_buffer_batches=max_buffer_batches,
    )


def record_during_outage(tracker: headcount.Tracker, seconds: float) -> int:
    """Record steadily while nothing listens; return the most batches ever buffered."""
    most_buffered = 0
    deadline = time.monotonic() + seconds
    route = 0
    while time.monotonic() < deadline:
        for _ in range(10):
            tracker.record_request(RequestInfo("GET", f"/outage/r{route % 5}", 200, 0.02))
            route += 1
        most_buffered = max(most_buffered, tracker.stats().buffered)
        time.sleep(0.05)
    return most_buffered


def test_outage_shorter_than_the_buffer_loses_nothing(tmp_path: Path, site_file: Path) -> None:
    port = free_port()
    tracker = tracker_for(port, max_buffer_batches=100)
    server = None
    try:
        most_buffered = record_during_outage(tracker, 2.0)
        assert most_buffered >= 5, "batches should have piled up while the collector was down"
        assert tracker.stats().sent == 0
        server = start_collector(tmp_path, site_file, port=port, extra=())
        assert tracker.flush(timeout=20)
        stats = tracker.stats()
        assert stats.dropped == 0
        assert stats.buffered == 0
        assert stats.retried > 0
        assert stored_total(server.db_path) == stats.recorded
    finally:
        tracker.shutdown(1)
        if server is not None:
            server.stop()


def test_outage_longer_than_the_buffer_drops_oldest_and_reports_it(
    tmp_path: Path, site_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    tracker = tracker_for(port, max_buffer_batches=3)
    server = None
    caplog.set_level(logging.WARNING, logger="headcount")
    try:
        most_buffered = record_during_outage(tracker, 2.0)
        # Memory stays bounded however long the outage lasts.
        assert most_buffered <= 3
        during = tracker.stats()
        assert during.dropped > 0
        assert any("dropped" in r.getMessage() for r in caplog.records)
        server = start_collector(tmp_path, site_file, port=port, extra=())
        assert tracker.flush(timeout=20)
        after = tracker.stats()
        assert after.buffered == 0
        stored = stored_total(server.db_path)
        # The three newest batches (and whatever came after) arrive; the dropped ones don't.
        assert 0 < stored < after.recorded
        # Counting and sending resume normally after the outage.
        for _ in range(7):
            tracker.record_request(RequestInfo("GET", "/after", 200, 0.01))
        assert tracker.flush(timeout=10)
        assert stored_total(server.db_path) == stored + 7
        assert tracker.stats().dropped == after.dropped
    finally:
        tracker.shutdown(1)
        if server is not None:
            server.stop()
