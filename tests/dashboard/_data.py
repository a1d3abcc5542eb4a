"""A small, varied week of traffic for the dashboard tests, sent through the real ingest."""

from __future__ import annotations

import secrets
import time
from typing import Any

import httpx

from headcount import wire


def week_of_records(now: float | None = None, *, events: bool = True) -> list[dict[str, Any]]:
    hour = int(now if now is not None else time.time()) // 3600 * 3600
    records: list[dict[str, Any]] = []
    for back in range(0, 72, 5):
        at = hour - back * 3600
        for index, route in enumerate(("/", "/blog/{slug}", "/about", "/pricing")):
            records.append(
                {
                    "kind": "pageview",
                    "hour": at,
                    "route": route,
                    "referrer": ("(direct)", "ycombinator.com", "google.com")[index % 3],
                    "entry": index % 2 == 0,
                    "n": 20 + 3 * index + back,
                    **({"utm_source": "newsletter", "utm_medium": "email"} if index == 1 else {}),
                }
            )
            records.append(
                {
                    "kind": "request",
                    "hour": at,
                    "route": route,
                    "method": "GET",
                    "status": ("2xx", "2xx", "4xx", "5xx")[index],
                    "latency": wire.LATENCY_LABELS[index + 1],
                    "n": 30 + index + back,
                }
            )
        records.append({"kind": "bot", "hour": at, "category": "search", "n": 9 + back})
        if events:
            records.append(
                {
                    "kind": "event",
                    "hour": at,
                    "name": "signup",
                    "route": "/pricing",
                    "props": {"plan": "pro"},
                    "n": 6,
                }
            )
        for duration, pages, n in (
            (wire.DURATION_LABELS[0], wire.PAGES_LABELS[0], 12),
            (wire.DURATION_LABELS[3], wire.PAGES_LABELS[2], 8),
        ):
            records.append(
                {
                    "kind": "visit",
                    "hour": at,
                    "route": "/",
                    "duration": duration,
                    "pages": pages,
                    "n": n,
                }
            )
    return records


def send(url: str, write_token: str, records: list[dict[str, Any]]) -> None:
    body = {
        "batch_id": secrets.token_hex(16),
        "sender": "tests",
        "sender_version": "1.0",
        "records": records,
    }
    answer = httpx.post(
        f"{url}/v1/ingest", json=body, headers={"Authorization": f"Bearer {write_token}"}
    )
    assert answer.status_code == 202, answer.text
