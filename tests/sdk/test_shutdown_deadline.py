"""Exit stays within shutdown_timeout even when the Redis visit store is a black hole."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from headcount import RequestInfo, Tracker

BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"


@pytest.fixture
def silent_redis() -> Iterator[str]:
    """A socket that accepts connections and never answers: Redis behind a dead network."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"redis://127.0.0.1:{sock.getsockname()[1]}/0"


def test_shutdown_is_bounded_when_redis_hangs(silent_redis: str) -> None:
    sent: list[bytes] = []

    def collector(request: httpx.Request) -> httpx.Response:
        sent.append(request.content)
        return httpx.Response(202, json={"accepted": 1})

    tracker = Tracker(
        "http://collector.invalid",
        "tok",
        transport=httpx.MockTransport(collector),
        flush_interval=86400,
        visits_store=silent_redis,
        visits_secret="test-visits-secret-0123456789abcdefghij",
    )
    tracker.record_request(
        RequestInfo("GET", "/", 200, 0.01, user_agent=BROWSER, client_addr="192.0.2.1")
    )
    started = time.monotonic()
    tracker.shutdown(1.0)
    assert time.monotonic() - started < 1.6
    assert sent  # what was counted still went out, within the deadline
