"""Shared helpers for SDK tests: a tracker whose collector is an in-memory mock."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import httpx
import pytest
import redis
from starlette.testclient import TestClient

import headcount
from headcount import RequestInfo

BROWSER = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Safari/605.1.15"
)


# The tracker fixture's clock: a fixed moment, so that every request of a test counts in
# one hour whenever the test runs (at 10:59:59.9 as well).
HOUR = 1_800_000_000  # the start of a UTC hour
NOW = HOUR + 1800.0


def accepting_transport() -> httpx.MockTransport:
    return httpx.MockTransport(lambda request: httpx.Response(202, json={"accepted": 1}))


class ClientTransport(httpx.BaseTransport):
    """Hands each request to Starlette's ``TestClient``, which runs the collector app in
    this process (it may be built on a fork of httpx, so the request is passed as data)."""

    def __init__(self, client: TestClient) -> None:
        self._client = client

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._client.request(
            request.method, str(request.url), content=request.read(), headers=dict(request.headers)
        )
        return httpx.Response(
            response.status_code, headers=list(response.headers.items()), content=response.content
        )


@pytest.fixture
def tracker() -> Iterator[headcount.Tracker]:
    """An enabled tracker that never sends on its own (a day-long interval)."""
    t = headcount.Tracker(
        "http://collector.test",
        "test-token",
        flush_interval=86400,
        transport=accepting_transport(),
        clock=lambda: NOW,
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


# The Redis the visit-store tests use (CI has one; unreachable is a failure, not a skip).
REDIS_URL = os.environ.get("HEADCOUNT_TEST_REDIS", "redis://127.0.0.1:6379/0")


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis at {REDIS_URL} is unreachable: {exc}")
    yield client
    client.close()


@pytest.fixture
def prefix(redis_client: redis.Redis) -> Iterator[str]:
    name = f"headcount-test:{uuid.uuid4().hex}:"
    yield name
    keys = list(redis_client.scan_iter(match=name + "*", count=1000))
    if keys:
        redis_client.delete(*keys)
