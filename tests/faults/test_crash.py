"""kill -9 of a real collector mid-load, then a restart on the same file and port.

What a user relies on: a 2xx means the counts are on disk; a retry of the same batch is
never counted twice; an SDK that kept sending through the crash delivers all it recorded.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

import headcount
from headcount import RequestInfo
from tests._servers import CollectorProcess, free_port, start_collector
from tests.collector.conftest import batch_body, request_record
from tests.conftest import SHOP_WRITE_TOKEN
from tests.faults.conftest import stored_total

pytestmark = pytest.mark.slow

HEADERS = {"Authorization": f"Bearer {SHOP_WRITE_TOKEN}", "Content-Type": "application/json"}


def kill_9(server: CollectorProcess) -> None:
    # One worker: uvicorn serves from the process we started, so this is the whole server.
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait(timeout=10)


class Ledger:
    """What each sender knows: batches answered 2xx, and batches whose fate is unknown."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.acked: dict[str, int] = {}
        self.unknown: dict[str, tuple[bytes, int]] = {}

    def acked_total(self) -> int:
        with self.lock:
            return sum(self.acked.values())


def test_acknowledged_counts_survive_kill_9_and_resent_batches_count_once(
    tmp_path: Path, site_file: Path
) -> None:
    port = free_port()
    server = start_collector(tmp_path, site_file, port=port, extra=())
    ledger = Ledger()
    killed = threading.Event()
    restarted = threading.Event()
    acked_at_kill = 0

    def sender(number: int) -> None:
        rng = random.Random(number)
        with httpx.Client(timeout=5) as client:
            for _ in range(150):
                n = rng.randint(1, 9)
                body = batch_body([request_record(f"/crash/s{number}", n=n)])
                batch_id = body.split(b'"batch_id":"', 1)[1][:32].decode()
                try:
                    answer = client.post(f"{server_url}/v1/ingest", content=body, headers=HEADERS)
                    ok = answer.status_code in (200, 202)
                except httpx.TransportError:
                    ok = False
                with ledger.lock:
                    if ok:
                        ledger.acked[batch_id] = n
                    else:
                        ledger.unknown[batch_id] = (body, n)
                if not ok and not restarted.is_set():
                    restarted.wait(20)

    server_url = server.url
    try:
        with ThreadPoolExecutor(6) as pool:
            futures = [pool.submit(sender, i) for i in range(6)]
            deadline = time.monotonic() + 30
            while ledger.acked_total() < 300 and time.monotonic() < deadline:
                time.sleep(0.005)
            kill_9(server)
            killed.set()
            acked_at_kill = ledger.acked_total()
            # Every count acknowledged before the crash is in the file, with the server dead.
            on_disk = stored_total(server.db_path)
            assert on_disk >= acked_at_kill > 0
            server = start_collector(tmp_path, site_file, port=port, extra=())
            restarted.set()
            for future in futures:
                future.result(timeout=60)
        assert ledger.unknown, "the crash should have left some batches unanswered"
        # Retries carry the same batch_id: a batch stored just before the crash answers 200.
        with httpx.Client(timeout=10) as client:
            for batch_id, (body, n) in list(ledger.unknown.items()):
                answer = client.post(f"{server.url}/v1/ingest", content=body, headers=HEADERS)
                assert answer.status_code in (200, 202), answer.text
                ledger.acked[batch_id] = n
        assert stored_total(server.db_path) == sum(ledger.acked.values())
    finally:
        server.stop()


def test_trackers_sending_through_a_crash_deliver_exactly_what_they_recorded(
    tmp_path: Path, site_file: Path
) -> None:
    port = free_port()
    server = start_collector(tmp_path, site_file, port=port, extra=())
    trackers = [
        headcount.Tracker(
            f"http://127.0.0.1:{port}",
            SHOP_WRITE_TOKEN,
            flush_interval=0.1,
            send_schedule="immediate",
            backoff_initial=0.05,
            backoff_max=0.3,
            request_timeout=3,
        )
        for _ in range(3)
    ]
    stop = threading.Event()

    def record(index: int, tracker: headcount.Tracker) -> None:
        infos = [
            RequestInfo("POST", f"/api/t{index}/r{route}", 201, 0.01 * route) for route in range(8)
        ]
        count = 0
        while not stop.is_set():
            tracker.record_request(infos[count % len(infos)])
            count += 1
            if count % 20 == 0:
                time.sleep(0.002)

    try:
        with ThreadPoolExecutor(3) as pool:
            futures = [pool.submit(record, i, t) for i, t in enumerate(trackers)]
            time.sleep(1.0)
            kill_9(server)
            time.sleep(1.0)  # senders hit a dead port and back off, buffers fill
            server = start_collector(tmp_path, site_file, port=port, extra=())
            time.sleep(1.0)
            stop.set()
            for future in futures:
                future.result(timeout=10)
        for tracker in trackers:
            assert tracker.flush(timeout=20)
        stats = [tracker.stats() for tracker in trackers]
        recorded = sum(s.recorded for s in stats)
        assert recorded > 1000
        assert sum(s.retried for s in stats) > 0, "the crash should have forced retries"
        assert all(s.dropped == 0 and s.buffered == 0 and s.errors == 0 for s in stats), stats
        assert stored_total(server.db_path) == recorded
    finally:
        stop.set()
        for tracker in trackers:
            tracker.shutdown(1)
        server.stop()
