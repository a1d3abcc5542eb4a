"""The real collector under concurrency, restarts and several workers sharing one SQLite file."""

from __future__ import annotations

import secrets
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from headcount_collector.stores.base import BATCH_ID_SECRET_NAME, stored_batch_id
from tests._servers import CollectorProcess, start_collector
from tests.collector.conftest import auth, batch_body, pageview, read_auth, sqlite_snapshot
from tests.conftest import SHOP_READ_TOKEN, SHOP_WRITE_TOKEN

pytestmark = pytest.mark.slow


def batch_is_stored(db_path: Path, batch_id: str) -> bool:
    conn = sqlite3.connect(db_path)
    try:
        (secret,) = conn.execute(
            "SELECT value FROM hc_meta WHERE key = ?", (BATCH_ID_SECRET_NAME,)
        ).fetchone()
        stored = stored_batch_id("shop", batch_id, bytes.fromhex(secret))
        row = conn.execute("SELECT 1 FROM hc_batch WHERE batch_id = ?", (stored,)).fetchone()
    finally:
        conn.close()
    return row is not None


def hammer(server: CollectorProcess, senders: int, batches_each: int) -> tuple[int, list[str]]:
    """Concurrent senders; returns the number of counts sent and every acknowledged id."""

    def send(sender: int) -> tuple[int, list[str]]:
        sent = 0
        acked: list[str] = []
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for i in range(batches_each):
                batch_id = secrets.token_hex(16)
                n = 1 + (sender + i) % 3
                body = batch_body(
                    [pageview(route=f"/p{(sender + i) % 7}", n=n), pageview(route="/", n=1)],
                    batch_id=batch_id,
                )
                response = client.post("/v1/ingest", content=body, headers=auth(SHOP_WRITE_TOKEN))
                assert response.status_code == 202, response.text
                # 2xx means committed: another connection must see it right away.
                assert batch_is_stored(server.db_path, batch_id)
                sent += n + 1
                acked.append(batch_id)
        return sent, acked

    with ThreadPoolExecutor(senders) as pool:
        results = list(pool.map(send, range(senders)))
    return sum(r[0] for r in results), [i for r in results for i in r[1]]


def shop_total(server: CollectorProcess) -> int:
    response = httpx.get(
        f"{server.url}/v1/stats",
        params={"interval": "total"},
        headers=read_auth(SHOP_READ_TOKEN),
    )
    assert response.status_code == 200
    rows = response.json()["rows"]
    return int(rows[0]["count"]) if rows else 0


def test_group_commit_under_concurrency_is_exact(collector_server: CollectorProcess) -> None:
    sent, acked = hammer(collector_server, senders=16, batches_each=25)
    assert len(set(acked)) == 16 * 25
    assert shop_total(collector_server) == sent
    assert sqlite_snapshot(collector_server.db_path) == (sent, 16 * 25)


def test_counts_survive_a_restart(tmp_path: Path, site_file: Path) -> None:
    server = start_collector(tmp_path, site_file)
    try:
        sent, acked = hammer(server, senders=4, batches_each=10)
    finally:
        server.stop()
    server = start_collector(tmp_path, site_file)
    try:
        assert shop_total(server) == sent
        # A retry that arrives after the restart is still recognised.
        replay = batch_body([pageview()], batch_id=acked[0])
        response = httpx.post(
            f"{server.url}/v1/ingest", content=replay, headers=auth(SHOP_WRITE_TOKEN)
        )
        assert response.status_code == 200
        assert response.json() == {"duplicate": True}
        assert shop_total(server) == sent
    finally:
        server.stop()


def test_several_workers_share_one_sqlite_file(tmp_path: Path, site_file: Path) -> None:
    server = start_collector(tmp_path, site_file, workers=2)
    try:
        sent, acked = hammer(server, senders=12, batches_each=20)
        # Duplicates resent concurrently land on either worker and are never re-applied.
        with ThreadPoolExecutor(8) as pool:
            replies = list(
                pool.map(
                    lambda batch_id: (
                        httpx.post(
                            f"{server.url}/v1/ingest",
                            content=batch_body([pageview(n=50)], batch_id=batch_id),
                            headers=auth(SHOP_WRITE_TOKEN),
                        ).status_code
                    ),
                    acked[:40],
                )
            )
        assert replies == [200] * 40
        assert shop_total(server) == sent
    finally:
        server.stop()


def test_access_log_has_no_address_query_or_token(collector_server: CollectorProcess) -> None:
    secret_path = "/v1/stats?from=2026-01-01&token=alice@example.com"
    httpx.get(collector_server.url + secret_path, headers=read_auth("hcr_guessed-token-zz"))
    httpx.post(
        f"{collector_server.url}/v1/ingest",
        content=batch_body([pageview(route="/u/bob@example.com")]),
        headers={**auth(), "X-Forwarded-For": "198.51.100.23", "User-Agent": "CanaryUA/9.9"},
    )
    # The access line is written just after the answer is sent: give it a moment.
    deadline = time.monotonic() + 5
    while "POST /v1/ingest 422" not in collector_server.log_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    # The server's own listening address is no client's; every other line is checked.
    log = "\n".join(
        line
        for line in collector_server.log_text().splitlines()
        if "Uvicorn running on" not in line
    )
    assert "GET /v1/stats 401" in log
    assert "POST /v1/ingest 422" in log
    for canary in (
        "alice@example.com",
        "bob@example.com",
        "198.51.100.23",
        "CanaryUA",
        "hcr_guessed-token-zz",
        "token=",
        "127.0.0.1:",
    ):
        assert canary not in log, canary
