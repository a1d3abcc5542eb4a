"""SQLite's WAL goes back into the database file on a background thread: a commit runs a
checkpoint itself only when commits come too close together for that thread to catch up,
yet what was committed reaches the main file, the WAL stays bounded, and a store that is
closed and used again keeps checkpointing."""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
from pathlib import Path
from zoneinfo import ZoneInfo

from headcount_collector.config import Site
from headcount_collector.ingest import decode_batch, validate_batch
from headcount_collector.stores.sqlite import CHECKPOINT_EVERY, SQLiteStore
from tests.collector.conftest import batch_body, pageview

SITE = Site("shop", ZoneInfo("UTC"), b"", b"")
CHECKPOINT_THREAD = "headcount-sqlite-checkpoint"


def commit_batches(store: SQLiteStore, count: int) -> None:
    now = int(time.time())
    for _ in range(count):
        batch = validate_batch(decode_batch(batch_body([pageview()])), SITE, now)
        store.commit([batch], now)


def batches_in_main_file(db: Path, scratch: Path) -> int:
    """Batches recorded in the database file alone, as if its WAL were lost."""
    shutil.copyfile(db, scratch)
    conn = sqlite3.connect(scratch)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM hc_batch").fetchone()[0])
    finally:
        conn.close()


def wait_for_main_file(db: Path, scratch: Path, expected: int) -> None:
    deadline = time.monotonic() + 10
    seen: object = None
    while time.monotonic() < deadline:
        try:
            seen = batches_in_main_file(db, scratch)
        except sqlite3.DatabaseError as exc:  # copied mid-checkpoint: try again
            seen = exc
        if seen == expected:
            return
        time.sleep(0.05)
    raise AssertionError(f"the main file holds {seen!r} batches, expected {expected}")


def checkpoint_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == CHECKPOINT_THREAD]


def test_commits_leave_checkpoints_to_the_background_thread(tmp_path: Path) -> None:
    db = tmp_path / "collector.sqlite3"
    store = SQLiteStore(db)
    store.migrate()
    try:
        writer = store._connection()
        assert writer.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        commit_batches(store, CHECKPOINT_EVERY * 4 - 1)  # migrate() was one commit
        assert len(checkpoint_threads()) == 1
        # Everything committed is in the database file itself, not only in the WAL.
        wait_for_main_file(db, tmp_path / "copy.sqlite3", CHECKPOINT_EVERY * 4 - 1)
    finally:
        store.close()
    assert checkpoint_threads() == []


def test_a_store_used_again_after_close_checkpoints_again(tmp_path: Path) -> None:
    db = tmp_path / "collector.sqlite3"
    store = SQLiteStore(db)
    store.migrate()
    commit_batches(store, CHECKPOINT_EVERY - 1)  # with migrate(), one checkpoint's worth
    store.close()
    assert checkpoint_threads() == []
    try:
        commit_batches(store, CHECKPOINT_EVERY * 2)
        assert len(checkpoint_threads()) == 1
        wait_for_main_file(db, tmp_path / "copy.sqlite3", CHECKPOINT_EVERY * 3 - 1)
    finally:
        store.close()
    assert checkpoint_threads() == []


def _letters(number: int) -> str:
    return "".join(chr(97 + number // 26**place % 26) for place in range(4))


def test_back_to_back_commits_keep_the_wal_bounded(tmp_path: Path) -> None:
    # Commits that follow each other without a pause, as a backlog or an import makes
    # them: the background checkpoint alone never catches up, and SQLite starts the WAL
    # over only when a write begins with every frame copied back. Without the writer
    # catching up, this run's WAL passed 100 MB and kept growing.
    db = tmp_path / "collector.sqlite3"
    wal = Path(f"{db}-wal")
    store = SQLiteStore(db, key_cap=10**8)  # every key stored, none folded into (other)
    store.migrate()
    now = int(time.time()) // 3600 * 3600
    groups, keys = 1200, 400
    batches = [
        validate_batch(
            decode_batch(
                batch_body(
                    [pageview(f"/{_letters(g)}/{_letters(i)}", hour=now) for i in range(keys)]
                )
            ),
            SITE,
            now,
        )
        for g in range(groups)
    ]
    largest = 0
    try:
        for batch in batches:
            store.commit([batch], now)
            largest = max(largest, wal.stat().st_size)
        written = store._connection().execute("SELECT COUNT(*) FROM hc_pageview").fetchone()[0]
    finally:
        store.close()
    assert written == 2 * groups * keys  # each count's hour and, before any roll-up, its day
    assert largest <= 40 * 1024 * 1024, f"the WAL reached {largest / 1e6:.0f} MB"
