"""Shared helpers for SDK tests: a tracker whose collector is an in-memory mock."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

import headcount
from headcount import RequestInfo

BROWSER = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Safari/605.1.15"
)


def accepting_transport() -> httpx.MockTransport:
    return httpx.MockTransport(lambda request: httpx.Response(202, json={"accepted": 1}))


@pytest.fixture
def tracker() -> Iterator[headcount.Tracker]:
    """An enabled tracker that never sends on its own (a day-long interval)."""
    t = headcount.Tracker(
        "http://collector.test",
        "test-token",
        flush_interval=86400,
        transport=accepting_transport(),
    )
    yield t
    t.shutdown(1.0)


def page(**overrides: object) -> RequestInfo:
    """A browser navigation answered with HTML: a pageview unless overridden."""
    fields: dict[str, object] = {
        "method": "GET",
        "route": "/articles/<int:id>",
        "status": 200,
        "elapsed": 0.03,
        "host": "shop.example",
        "user_agent": BROWSER,
        "content_type": "text/html; charset=utf-8",
        "sec_fetch_dest": "document",
    }
    fields.update(overrides)
    method = fields.pop("method")
    route = fields.pop("route")
    status = fields.pop("status")
    elapsed = fields.pop("elapsed")
    return RequestInfo(method, route, status, elapsed, **fields)  # type: ignore[arg-type]
