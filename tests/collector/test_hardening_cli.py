"""The hardening review's smaller items, against a collector started through the CLI."""

from __future__ import annotations

import sqlite3
import time

import httpx

from tests._servers import CollectorProcess
from tests.collector.conftest import auth, batch_body, current_hour, pageview, read_auth


def test_hundreds_of_filters_are_a_400_not_a_storage_error(
    collector_server: CollectorProcess,
) -> None:
    params: list[tuple[str, str | int | float | bool | None]] = [
        ("filter", f"route:/p{i}") for i in range(300)
    ]
    response = httpx.get(f"{collector_server.url}/v1/stats", params=params, headers=read_auth())
    assert response.status_code == 400
    assert response.json()["parameter"] == "filter"
    assert "at most 8" in response.json()["error"]
    # A thousand make a request line over the 16 KiB that request line and headers get.
    params = [("filter", f"route:/p{i}") for i in range(1000)]
    response = httpx.get(f"{collector_server.url}/v1/stats", params=params, headers=read_auth())
    assert response.status_code == 431


def test_the_privacy_pages_name_only_the_site_asked_for(
    collector_server: CollectorProcess,
) -> None:
    common = httpx.get(f"{collector_server.url}/privacy")
    assert common.status_code == 200
    for site_detail in ("blog", "shop", "signup", "Europe/Berlin"):
        assert site_detail not in common.text
    blog = httpx.get(f"{collector_server.url}/privacy/blog")
    assert blog.status_code == 200
    assert "signup" in blog.text
    assert "shop" not in blog.text
    assert httpx.get(f"{collector_server.url}/privacy/nosuch").status_code == 404


def test_batches_are_remembered_by_digest_and_by_the_hour_only(
    collector_server: CollectorProcess,
) -> None:
    # The sender chooses the id: hex of an e-mail address must not end up at rest.
    covert = b"jdoe@example.com".hex().ljust(32, "0")
    sent_at = time.time()
    response = httpx.post(
        f"{collector_server.url}/v1/ingest",
        content=batch_body([pageview(hour=current_hour())], batch_id=covert),
        headers=auth(),
    )
    assert response.status_code == 202
    # A retry of the same id is still recognised.
    again = httpx.post(
        f"{collector_server.url}/v1/ingest",
        content=batch_body([pageview(hour=current_hour())], batch_id=covert),
        headers=auth(),
    )
    assert again.json() == {"duplicate": True}
    conn = sqlite3.connect(collector_server.db_path)
    try:
        rows = conn.execute("SELECT batch_id, received FROM hc_batch").fetchall()
    finally:
        conn.close()
    assert len(rows) == 1
    stored_id, received = rows[0]
    assert stored_id != covert
    assert covert not in stored_id
    assert received % 3600 == 0
    assert received == int(sent_at) // 3600 * 3600 or received == int(time.time()) // 3600 * 3600
    for path in collector_server.db_path.parent.glob("headcount.sqlite3*"):
        assert covert.encode() not in path.read_bytes()
