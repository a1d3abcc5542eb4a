"""Shared fixtures: a real Tracker that never reaches the network, and record helpers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest

from headcount import Tracker
from headcount.wire import Pageview, Record, Request

# The example apps are imported as `examples.*` from the repository root (which pytest
# puts on sys.path, `tests` being a package), the way gunicorn and uvicorn import them.
REPO_ROOT = Path(__file__).resolve().parents[2]

# Test clients send no User-Agent (or their own name), which counts as a bot, never a
# pageview; tests that expect pageviews send this one.
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"

# Things a hostile or careless request carries that must never reach a record.
SECRETS = (
    "alice@example.com",
    "3f2b8c1e-9d4a-4b7e-8f1a-2c3d4e5f6a7b",
    "tok_9sd8f7g6h5j4k3l2",
    "203.0.113.77",
    "sessionid-cookie-value-77",
    "Bearer-secret-token-88",
    "Mozilla/5.0 (HostileBrowser/99.1)",
)
HOSTILE_HEADERS = {
    "Cookie": "sessionid=sessionid-cookie-value-77",
    "Authorization": "Bearer Bearer-secret-token-88",
    "X-Forwarded-For": "203.0.113.77",
    "User-Agent": "Mozilla/5.0 (HostileBrowser/99.1)",
    "Referer": "https://evil.example.net/reset?email=alice@example.com&token=tok_9sd8f7g6h5j4k3l2",
}
HOSTILE_QUERY = {
    "email": "alice@example.com",
    "id": "3f2b8c1e-9d4a-4b7e-8f1a-2c3d4e5f6a7b",
    "utm_source": "tok_9sd8f7g6h5j4k3l2",
}
HOSTILE_PATH_SEGMENTS = (
    "alice@example.com",
    "3f2b8c1e-9d4a-4b7e-8f1a-2c3d4e5f6a7b",
    "tok_9sd8f7g6h5j4k3l2",
)


FIXED_NOW = 1_800_001_800.0  # half past a UTC hour


def _accept_everything(request: httpx.Request) -> httpx.Response:
    return httpx.Response(204)


def make_tracker(**options: object) -> Tracker:
    """A real Tracker whose sends go to an in-process transport, never the network."""
    settings: dict[str, object] = {
        "endpoint": "http://collector.invalid",
        "write_token": "test-write-token",
        "flush_interval": 3600.0,
        "transport": httpx.MockTransport(_accept_everything),
        # A fixed moment: a test's requests all count in one hour, whenever it runs.
        "clock": lambda: FIXED_NOW,
    }
    settings.update(options)
    return Tracker(**settings)  # type: ignore[arg-type]


@pytest.fixture
def tracker() -> Iterator[Tracker]:
    tracker = make_tracker()
    yield tracker
    tracker.shutdown(timeout=1.0)


def requests_of(tracker: Tracker) -> dict[tuple[str, str, str], int]:
    """Counted requests by (route, method, status class)."""
    counts: dict[tuple[str, str, str], int] = {}
    for record in tracker.peek():
        if isinstance(record, Request):
            key = (record.route, record.method, record.status)
            counts[key] = counts.get(key, 0) + record.n
    return counts


def pageview_routes(tracker: Tracker) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in tracker.peek():
        if isinstance(record, Pageview):
            counts[record.route] = counts.get(record.route, 0) + record.n
    return counts


def assert_no_secrets(records: list[Record]) -> None:
    encoded = msgspec.json.encode(records)
    assert records, "nothing was counted, so nothing was checked"
    for secret in SECRETS:
        assert secret.encode() not in encoded, secret
    # Parts of the secrets, too: a coarsener that kept a prefix would still leak.
    for fragment in (b"alice", b"example.com", b"3f2b8c1e", b"9sd8f7", b"203.0.113", b"Hostile"):
        assert fragment not in encoded, fragment
