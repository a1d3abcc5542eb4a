"""Several real collectors on one PostgreSQL database, under concurrent load and a crash.

Senders are threads posting with httpx, like the SDK's background sender: a batch that
fails is resent unchanged, possibly to another collector. Totals must come out exact.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import pytest

from headcount_collector.stores.base import BATCH_ID_SECRET_NAME, stored_batch_id
from tests._servers import CollectorProcess, start_collector
from tests.collector.conftest import _wipe_postgres, auth, batch_body, pageview, read_auth
from tests.conftest import SHOP_READ_TOKEN, SHOP_WRITE_TOKEN

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(60)]

ROUTES = [f"/p/{i}" for i in range(8)]
COLLECTORS = 3


@pytest.fixture
def pg_url(postgres_database: str) -> Iterator[str]:
    _wipe_postgres(postgres_database)
    yield postgres_database
    _wipe_postgres(postgres_database)


@pytest.fixture
def collectors(pg_url: str, tmp_path: Path, site_file: Path) -> Iterator[list[CollectorProcess]]:
    with ThreadPoolExecutor(COLLECTORS) as pool:
        started = list(
            pool.map(
                lambda i: start_collector(
                    tmp_path, site_file, workers=2, db_url=pg_url, log_name=f"collector-{i}.log"
                ),
                range(COLLECTORS),
            )
        )
    yield started
    for collector in started:
        collector.stop()


@dataclass
class Ledger:
    """What the senders know: every batch they made and which were acknowledged."""

    expected: Counter[str] = field(default_factory=Counter)
    acked: set[str] = field(default_factory=set)
    duplicates: int = 0
    failures: int = 0
    # Bodies the crashed collector acknowledged before it died.
    acked_by_victim: list[bytes] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def make_batch(rng: random.Random) -> tuple[str, bytes, Counter[str]]:
    batch_id = secrets.token_hex(16)
    counts: Counter[str] = Counter()
    records = []
    for route in rng.sample(ROUTES, rng.randint(1, 4)):
        n = rng.randint(1, 5)
        records.append(pageview(route, n=n))
        counts[route] += n
    return batch_id, batch_body(records, batch_id), counts


def post(client: httpx.Client, server: CollectorProcess, body: bytes) -> httpx.Response | None:
    try:
        return client.post(
            f"{server.url}/v1/ingest", content=body, headers=auth(SHOP_WRITE_TOKEN), timeout=10
        )
    except httpx.TransportError:
        return None


def stored_routes(url: str) -> Counter[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT route, SUM(n)::bigint FROM hc_pageview WHERE site = 'shop' AND res = 'h' GROUP BY route"
        ).fetchall()
    return Counter({route: int(n) for route, n in rows})


def stored_batch_ids(url: str) -> set[str]:
    """The digests under which the collector remembers batch ids (never the ids)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT batch_id FROM hc_batch WHERE site = 'shop'").fetchall()
    return {batch_id for (batch_id,) in rows}


def expected_batch_ids(url: str, batch_ids: set[str]) -> set[str]:
    """The digests the collectors' shared secret makes of ``batch_ids``."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT value FROM hc_meta WHERE key = %s", (BATCH_ID_SECRET_NAME,)
        ).fetchone()
    assert row is not None
    secret = bytes.fromhex(str(row[0]))
    return {stored_batch_id("shop", batch_id, secret) for batch_id in batch_ids}


def reported_routes(server: CollectorProcess) -> Counter[str]:
    response = httpx.get(
        f"{server.url}/v1/stats",
        params={"metric": "pageviews", "by": "route", "interval": "total"},
        headers=read_auth(SHOP_READ_TOKEN),
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return Counter({row["route"]: row["count"] for row in response.json()["rows"]})


def test_three_collectors_count_exactly_with_retries_across_them(
    collectors: list[CollectorProcess], pg_url: str
) -> None:
    ledger = Ledger()
    senders, batches_per_sender = 9, 30

    def sender(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client() as client, ThreadPoolExecutor(2) as racing:
            for i in range(batches_per_sender):
                batch_id, body, counts = make_batch(rng)
                first = collectors[(seed + i) % COLLECTORS]
                other = collectors[(seed + i + 1) % COLLECTORS]
                if rng.random() < 0.15:
                    # The same batch reaches two collectors at the same moment (a retry
                    # after a timeout that was in fact still being processed).
                    answers = list(racing.map(post, [client] * 2, (first, other), [body] * 2))
                    statuses = sorted(a.status_code for a in answers if a is not None)
                    assert statuses == [200, 202], statuses
                    with ledger.lock:
                        ledger.duplicates += 1
                else:
                    answer = post(client, first, body)
                    assert answer is not None
                    assert answer.status_code == 202, answer.text
                    if rng.random() < 0.25:
                        again = post(client, other, body)
                        assert again is not None
                        assert again.json() == {"duplicate": True}
                        with ledger.lock:
                            ledger.duplicates += 1
                with ledger.lock:
                    ledger.expected.update(counts)
                    ledger.acked.add(batch_id)

    with ThreadPoolExecutor(senders) as pool:
        list(pool.map(sender, range(senders)))

    assert ledger.duplicates > 0
    assert len(ledger.acked) == senders * batches_per_sender
    assert stored_batch_ids(pg_url) == expected_batch_ids(pg_url, ledger.acked)
    assert stored_routes(pg_url) == ledger.expected
    for server in collectors:
        assert reported_routes(server) == ledger.expected


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants, read from /proc (uvicorn's workers are children)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8") as stat:
                # The command name may contain spaces; the fields after ')' do not.
                ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(parents.get(pid, []))
    return tree


def kill_hard(server: CollectorProcess) -> None:
    pids = process_tree(server.process.pid)
    assert len(pids) >= 3, "expected a main process and two workers"
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):  # exited on its own meanwhile
            os.kill(pid, signal.SIGKILL)
    server.process.wait(timeout=10)


def test_crash_of_one_collector_loses_nothing_and_double_counts_nothing(
    collectors: list[CollectorProcess], pg_url: str
) -> None:
    ledger = Ledger()
    senders, batches_per_sender, kill_after = 9, 40, 80
    killed = threading.Event()

    def deliver(client: httpx.Client, body: bytes, start: int) -> None:
        # Like the SDK: on a connection error or a 5xx, resend the same batch, here to
        # the next collector (a naive round-robin balancer that still lists the dead one).
        for attempt in range(3 * COLLECTORS):
            target = (start + attempt) % COLLECTORS
            answer = post(client, collectors[target], body)
            if answer is not None and answer.status_code < 500:
                assert answer.status_code in (200, 202), answer.text
                if target == 0 and answer.status_code == 202:
                    with ledger.lock:
                        ledger.acked_by_victim.append(body)
                if answer.status_code == 200:
                    assert answer.json() == {"duplicate": True}
                    with ledger.lock:
                        ledger.duplicates += 1
                return
            with ledger.lock:
                ledger.failures += 1
            time.sleep(0.05)
        raise AssertionError("no collector took the batch")

    def sender(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client() as client:
            for i in range(batches_per_sender):
                batch_id, body, counts = make_batch(rng)
                deliver(client, body, seed + i)
                with ledger.lock:
                    ledger.expected.update(counts)
                    ledger.acked.add(batch_id)

    def killer() -> None:
        deadline = time.monotonic() + 30
        while len(ledger.acked) < kill_after and time.monotonic() < deadline:
            time.sleep(0.005)
        kill_hard(collectors[0])
        killed.set()

    with ThreadPoolExecutor(senders + 1) as pool:
        kill = pool.submit(killer)
        list(pool.map(sender, range(senders)))
        kill.result()

    assert killed.is_set()
    print(f"failed requests: {ledger.failures}, duplicates on resend: {ledger.duplicates}")
    assert len(ledger.acked) == senders * batches_per_sender
    # The dead collector stayed in rotation, so some requests failed and were resent.
    assert ledger.failures > 0
    assert stored_batch_ids(pg_url) == expected_batch_ids(pg_url, ledger.acked)
    assert stored_routes(pg_url) == ledger.expected
    # A sender that lost the dead collector's answers resends: the survivors know them.
    assert ledger.acked_by_victim
    with httpx.Client() as client:
        for body in ledger.acked_by_victim[-10:]:
            answer = post(client, collectors[1], body)
            assert answer is not None
            assert answer.json() == {"duplicate": True}
    assert stored_routes(pg_url) == ledger.expected
    for server in collectors[1:]:
        assert reported_routes(server) == ledger.expected
