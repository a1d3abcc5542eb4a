"""One write token cannot fill the database: distinct keys per site, table and hour are capped."""

from __future__ import annotations

import sqlite3
from itertools import product
from pathlib import Path

import httpx
import pytest

from tests.collector.conftest import auth, batch_body, current_hour, pageview, read_auth
from tests.conftest import start_collector

pytestmark = pytest.mark.slow

WORDS = ("apple", "river", "stone", "cloud", "green", "light", "table", "house", "paper", "music")
ROUTES = [f"/docs/{a}/{b}" for a, b in product(WORDS, WORDS)]  # 100 distinct templates


def _hourly_rows(db: Path, hour: int) -> list[tuple[str, int]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(
            "SELECT route, n FROM hc_pageview WHERE site = 'blog' AND res = 'h' AND bucket = ?",
            (hour,),
        ).fetchall()
    finally:
        conn.close()


def test_new_keys_past_the_cap_fold_into_other_and_no_count_is_lost(
    tmp_path: Path, site_file: Path
) -> None:
    server = start_collector(tmp_path, site_file, extra=("--max-keys-per-hour", "30"))
    try:
        hour = current_hour()
        # Three batches, each with new routes: the cap holds across batches too.
        for chunk in (ROUTES[:40], ROUTES[40:70], ROUTES[70:]):
            response = httpx.post(
                f"{server.url}/v1/ingest",
                content=batch_body([pageview(route=r, hour=hour, n=2) for r in chunk]),
                headers=auth(),
            )
            assert response.status_code == 202, response.text
        # A route seen before the cap was reached still counts under its own name.
        response = httpx.post(
            f"{server.url}/v1/ingest",
            content=batch_body([pageview(route=ROUTES[0], hour=hour, n=5)]),
            headers=auth(),
        )
        assert response.status_code == 202
        rows = dict(_hourly_rows(server.db_path, hour))
        assert len(rows) <= 30
        assert sum(rows.values()) == 2 * len(ROUTES) + 5
        assert rows["(other)"] >= 2 * (len(ROUTES) - 30)
        assert rows[ROUTES[0]] == 7
        stats = httpx.get(
            f"{server.url}/v1/stats",
            params={"by": "route", "interval": "total"},
            headers=read_auth(),
        ).json()
        assert "(other)" in {row["route"] for row in stats["rows"]}
        assert "reached max_keys_per_hour" in server.log_text()
    finally:
        server.stop()


def test_a_cap_below_ten_is_refused_at_start(tmp_path: Path, site_file: Path) -> None:
    with pytest.raises(RuntimeError, match="max_keys_per_hour"):
        start_collector(tmp_path, site_file, extra=("--max-keys-per-hour", "3"))
