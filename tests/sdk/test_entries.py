"""What counts as an entry: the first pageview of a visit when visits are linked, else a
pageview whose referrer is not internal."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from headcount import Tracker
from headcount.wire import Pageview

from .conftest import accepting_transport, page

REDIS_URL = os.environ.get("HEADCOUNT_TEST_REDIS", "redis://127.0.0.1:6379/0")
INTERNAL = {"referer": "https://shop.example/", "sec_fetch_site": "same-origin"}
EXTERNAL = {"referer": "https://news.example.net/story", "sec_fetch_site": "cross-site"}
TYPED = {"referer": None, "sec_fetch_site": "none"}  # a bookmark or a typed URL


def send_visits(tracker: Tracker) -> None:
    """Two browsers: one arrives from a link, navigates, then opens a bookmark mid-visit;
    the other arrives from the same link and reads one page."""
    first = {"client_addr": "198.51.100.7"}
    second = {"client_addr": "198.51.100.8"}
    tracker.record_request(page(route="/", **EXTERNAL, **first))
    tracker.record_request(page(route="/pricing", **INTERNAL, **first))
    tracker.record_request(page(route="/docs", **TYPED, **first))
    tracker.record_request(page(route="/docs", **EXTERNAL, **first))
    tracker.record_request(page(route="/", **EXTERNAL, **second))


def browse(tracker: Tracker) -> dict[tuple[str, bool], int]:
    send_visits(tracker)
    return pageviews_by_entry(tracker)


def pageviews_by_entry(tracker: Tracker) -> dict[tuple[str, bool], int]:
    counts: dict[tuple[str, bool], int] = {}
    for record in tracker.peek():
        if isinstance(record, Pageview):
            key = (record.route, record.entry)
            counts[key] = counts.get(key, 0) + record.n
    return counts


def make_tracker(**options: Any) -> Tracker:
    return Tracker(
        "http://collector.test", "entries-token", flush_interval=86400,
        transport=accepting_transport(),
        visits_secret="entries-test-secret-shared-by-workers-0001",
        **options,
    )  # fmt: skip


def test_with_visits_in_memory_an_entry_is_the_first_pageview_of_a_visit() -> None:
    tracker = make_tracker()
    try:
        counts = browse(tracker)
    finally:
        tracker.shutdown(1)
    # Two visits, two entries: the bookmark and the second outside link of the first
    # visit continue it.
    assert counts == {("/", True): 2, ("/pricing", False): 1, ("/docs", False): 2}


def test_with_visits_off_an_entry_is_a_pageview_from_outside_the_site() -> None:
    tracker = make_tracker(visits=False)
    try:
        counts = browse(tracker)
    finally:
        tracker.shutdown(1)
    assert counts == {("/", True): 2, ("/pricing", False): 1, ("/docs", True): 2}


def test_an_unlinkable_pageview_keeps_the_referrer_rule() -> None:
    tracker = make_tracker()
    try:
        tracker.record_request(page(route="/", client_addr=None, **EXTERNAL))
        tracker.record_request(page(route="/", client_addr=None, **INTERNAL))
        entries = {(r.route, r.entry): r.n for r in tracker.peek() if isinstance(r, Pageview)}
    finally:
        tracker.shutdown(1)
    assert entries == {("/", True): 1, ("/", False): 1}


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis at {REDIS_URL} is unreachable: {exc}")
    name = f"headcount-test:{uuid.uuid4().hex}:"
    yield name
    keys = list(client.scan_iter(match=name + "*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.mark.redis
def test_with_visits_in_redis_an_entry_is_the_first_pageview_of_a_visit(
    redis_prefix: str,
) -> None:
    tracker = make_tracker(visits_store=REDIS_URL, visits_redis_prefix=redis_prefix)
    try:
        counts = browse(tracker)
    finally:
        tracker.shutdown(2)
    assert counts == {("/", True): 2, ("/pricing", False): 1, ("/docs", False): 2}


@pytest.mark.redis
def test_in_an_asyncio_app_with_redis_entries_are_still_visit_starts(redis_prefix: str) -> None:
    """There the link is made on a worker thread, which then counts the pageview."""
    tracker = make_tracker(visits_store=REDIS_URL, visits_redis_prefix=redis_prefix)

    async def serve() -> None:
        send_visits(tracker)

    try:
        asyncio.run(serve())
        deadline = time.monotonic() + 5
        counts = pageviews_by_entry(tracker)
        while sum(counts.values()) < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
            counts = pageviews_by_entry(tracker)
        # Every request was counted at once; each pageview once its link was made.
        assert tracker.stats().recorded == 5
    finally:
        tracker.shutdown(2)
    assert counts == {("/", True): 2, ("/pricing", False): 1, ("/docs", False): 2}


def test_in_an_asyncio_app_with_redis_down_pageviews_keep_the_referrer_rule() -> None:
    tracker = make_tracker(
        visits_store="redis://127.0.0.1:1/0",  # nothing listens there: refused at once
        visits_redis_prefix="headcount-test-down:",
    )

    async def serve() -> None:
        send_visits(tracker)

    try:
        asyncio.run(serve())
        deadline = time.monotonic() + 5
        counts = pageviews_by_entry(tracker)
        while sum(counts.values()) < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
            counts = pageviews_by_entry(tracker)
    finally:
        tracker.shutdown(2)
    # No pageview is lost with the links: all five, entries by the referrer rule.
    assert counts == {("/", True): 2, ("/pricing", False): 1, ("/docs", True): 2}
