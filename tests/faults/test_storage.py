"""Storage that cannot take a write: a locked database, a full disk.

The collector answers 503 with Retry-After, never a 2xx it cannot keep, and keeps
serving; the SDK retries later and delivers everything once storage is back.
"""

from __future__ import annotations

import contextlib
import errno
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import headcount
from headcount import RequestInfo, wire
from tests._servers import start_collector
from tests.collector.conftest import batch_body, request_record
from tests.conftest import SHOP_WRITE_TOKEN
from tests.faults.conftest import stored_total

pytestmark = pytest.mark.slow

HEADERS = {"Authorization": f"Bearer {SHOP_WRITE_TOKEN}", "Content-Type": "application/json"}
# How long the collector's writes wait for a lock (the sqlite URL's busy_timeout option).
BUSY_TIMEOUT = 2.0


def tracker_for(url: str) -> headcount.Tracker:
    return headcount.Tracker(
        url,
        SHOP_WRITE_TOKEN,
        flush_interval=0.2,
        send_schedule="immediate",
        backoff_initial=0.1,
        backoff_max=1,
        # Longer than the collector's lock wait, so the SDK sees the 503, not a timeout.
        request_timeout=BUSY_TIMEOUT + 10,
    )


def test_locked_database_answers_503_and_the_sdk_retries(tmp_path: Path, site_file: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'headcount.sqlite3'}?busy_timeout={BUSY_TIMEOUT}"
    server = start_collector(tmp_path, site_file, db_url=db_url, extra=())
    tracker = tracker_for(server.url)
    locker = sqlite3.connect(server.db_path, isolation_level=None, timeout=1)
    answers: list[httpx.Response] = []

    def post(number: int) -> None:
        answers.append(
            httpx.post(
                server.url + wire.INGEST_PATH,
                content=batch_body([request_record(f"/locked/w{number}", n=4)]),
                headers=HEADERS,
                timeout=3 * BUSY_TIMEOUT,
            )
        )

    try:
        locker.execute("BEGIN EXCLUSIVE")
        for _ in range(5):
            tracker.record_request(RequestInfo("POST", "/locked/sdk", 201, 0.01))
        writers = [threading.Thread(target=post, args=(i,)) for i in range(4)]
        for writer in writers:
            writer.start()
        # Hold the lock until every writer and the SDK have been told to come back later.
        # Each group commit waits out the busy timeout, so this takes one or two of them.
        deadline = time.monotonic() + 6 * BUSY_TIMEOUT
        while time.monotonic() < deadline and (
            len(answers) < len(writers) or tracker.stats().retried == 0
        ):
            time.sleep(0.1)
            # Still serving other endpoints while storage is stuck.
        assert httpx.get(server.url + "/healthz", timeout=2).status_code == 200
        assert [a.status_code for a in answers] == [503] * len(writers)
        assert all(int(a.headers["Retry-After"]) > 0 for a in answers)
        assert tracker.stats().retried >= 1
        assert tracker.stats().sent == 0
        assert stored_total(server.db_path) == 0
        locker.execute("ROLLBACK")
        assert tracker.flush(timeout=BUSY_TIMEOUT + 15)
        stats = tracker.stats()
        assert stats.dropped == 0
        assert stored_total(server.db_path) == stats.recorded == 5
    finally:
        with contextlib.suppress(sqlite3.Error):
            locker.close()
        tracker.shutdown(1)
        server.stop()


@pytest.fixture
def small_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs, so the disk can really fill up; needs root (CI runs as root)."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        if subprocess.run(["umount", str(mount_point)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(directory: Path) -> Path:
    """Write a file until the filesystem is full; return it (delete it to free the space)."""
    filler = directory / "filler"
    # Unbuffered, so the ENOSPC surfaces in write() and not later in close().
    with filler.open("wb", buffering=0) as handle:
        block = b"\0" * 4096
        while True:
            try:
                handle.write(block)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
    return filler


def test_full_disk_answers_503_never_2xx_and_the_sdk_delivers_later(
    tmp_path: Path, site_file: Path, small_filesystem: Path
) -> None:
    db_path = small_filesystem / "headcount.sqlite3"
    server = start_collector(tmp_path, site_file, db_url=f"sqlite:///{db_path}", extra=())
    tracker = tracker_for(server.url)
    acknowledged = 0
    try:
        filler = fill(small_filesystem)
        # Batches of new keys need new pages, which the full disk cannot give.
        answers: list[httpx.Response] = []
        with httpx.Client(timeout=20) as client:
            for number in range(30):
                records = [request_record(f"/full/b{number}/k{i}") for i in range(1000)]
                answer = client.post(
                    server.url + wire.INGEST_PATH, content=batch_body(records), headers=HEADERS
                )
                answers.append(answer)
                assert answer.status_code in (202, 503), answer.text
                if answer.status_code == 202:
                    acknowledged += 1000
                else:
                    assert int(answer.headers["Retry-After"]) > 0
                    break
        assert answers[-1].status_code == 503, "the disk never filled up"
        # The SDK's batches meet the same full disk, and wait.
        for _ in range(6):
            tracker.record_request(RequestInfo("POST", "/full/sdk", 201, 0.01))
        deadline = time.monotonic() + 10
        while tracker.stats().retried == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert tracker.stats().retried > 0
        assert tracker.stats().sent == 0
        assert httpx.get(server.url + "/healthz", timeout=2).status_code == 200
        filler.unlink()
        assert tracker.flush(timeout=20)
        assert tracker.stats().dropped == 0
        assert stored_total(db_path) == acknowledged + 6
    finally:
        tracker.shutdown(1)
        server.stop()
