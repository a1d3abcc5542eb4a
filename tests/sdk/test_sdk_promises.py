"""Promises of the README and the privacy notes about the SDK, each held to what a user sees:
the key cap's secret fold point, Redis visits kept apart per site and the buffer's age
bound. (A 403 handled like a 401 is tested in test_sender_failures.py.)"""

from __future__ import annotations

import gzip
import time

import httpx
import msgspec
import pytest
import redis

from headcount import ConfigurationError, RequestInfo, Tracker
from headcount import _sender as sender_module
from headcount.wire import Batch, Request, Visit

from .conftest import BROWSER, NOW, REDIS_URL, page
from .test_sender import FakeCollector, alpha, make_tracker, record
from .test_visits_redis import ADDRESS, GAP, as_bytes
from .test_visits_redis import SECRET as VISITS_SECRET


def sent_batches(bodies: list[bytes]) -> list[Batch]:
    return [
        msgspec.json.decode(gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body, type=Batch)
        for body in bodies
    ]


# --- the key cap folds from a random point in every send window (docs/privacy.md) ----


def test_the_fold_point_is_random_per_send_window_between_half_the_cap_and_the_cap() -> None:
    max_keys = 200
    windows = 50
    bodies: list[bytes] = []

    def collect(request: httpx.Request) -> httpx.Response:
        bodies.append(request.content)
        return httpx.Response(202, json={"accepted": 1})

    tracker = Tracker(
        "http://collector.test",
        "write-token",
        max_keys=max_keys,
        send_schedule="immediate",  # the window's own cap, not the hourly hold's
        flush_interval=86400,
        transport=httpx.MockTransport(collect),
        clock=lambda: NOW,
    )
    try:
        kept_per_window: list[int] = []
        for window in range(windows):
            # More distinct keys than the cap: every window reaches its fold point.
            for i in range(max_keys + 20):
                tracker.record_request(
                    RequestInfo("GET", f"/w{alpha(window)}/{alpha(i)}", 200, 0.02,
                                user_agent=BROWSER, content_type="application/json")
                )  # fmt: skip
            assert tracker.flush(2) is True
            (batch,) = sent_batches(bodies[window:])
            requests = [r for r in batch.records if isinstance(r, Request)]
            assert sum(r.n for r in requests) == max_keys + 20  # folded, never lost
            kept_per_window.append(sum(1 for r in requests if r.route != "(other)"))
    finally:
        tracker.shutdown(1)
    assert len(bodies) == windows
    assert min(kept_per_window) >= max_keys // 2
    assert max(kept_per_window) <= max_keys
    # Drawn anew for each window: many distinct points, over the whole range. 50 draws of
    # 100 equally likely values give about 40 distinct ones.
    assert len(set(kept_per_window)) >= 20, kept_per_window
    assert min(kept_per_window) < max_keys * 3 // 4 < max(kept_per_window), kept_per_window


# --- Redis visit keys carry a tag of the write token (README, visits_redis_prefix) ----


def redis_dump(client: redis.Redis, prefix: str) -> tuple[list[bytes], bytes]:
    """Every key under ``prefix``, and its names and values as one byte string."""
    names = list(client.scan_iter(match=prefix + "*", count=1000))
    parts = list(names)
    for name in names:
        kind = client.type(name)
        if kind == b"string":
            parts.append(as_bytes(client.get(name) or b""))
        elif kind == b"hash":
            parts.extend(as_bytes(b) for kv in client.hgetall(name).items() for b in kv)
        elif kind == b"zset":
            parts.extend(as_bytes(member) for member in client.zrange(name, 0, -1))
        elif kind == b"set":
            parts.extend(as_bytes(member) for member in client.smembers(name))
        else:
            raise AssertionError(f"unexpected Redis type {kind!r} at {name!r}")
    return names, b" ".join(parts)


class Site:
    """One site's tracker on the shared Redis, with the bodies its collector received."""

    def __init__(self, write_token: str, prefix: str) -> None:
        self.bodies: list[bytes] = []
        self.tracker = Tracker(
            "http://collector.test",
            write_token,
            flush_interval=86400,
            transport=httpx.MockTransport(self._collect),
            visits_store=REDIS_URL,
            visits_redis_prefix=prefix,
            visits_secret=VISITS_SECRET,
            visit_gap=GAP,
        )

    def _collect(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(request.content)
        return httpx.Response(202, json={"accepted": 1})

    def visits(self) -> list[tuple[str, str]]:
        return sorted(
            (r.route, r.pages)
            for batch in sent_batches(self.bodies)
            for r in batch.records
            if isinstance(r, Visit)
        )


@pytest.mark.redis
def test_sites_sharing_one_redis_prefix_and_secret_never_mix_their_visits(
    redis_client: redis.Redis, prefix: str
) -> None:
    blog_token = "hcw_blog-site-write-token-0001"
    shop_token = "hcw_shop-site-write-token-0002"
    blog = Site(blog_token, prefix)
    shop = Site(shop_token, prefix)
    try:
        # One browser reads two pages on each site; peek() waits for each link.
        for site, host, routes in ((blog, "blog.example", ("/b-in", "/b-on")),
                                   (shop, "shop.example", ("/s-in", "/s-on"))):  # fmt: skip
            for route in routes:
                site.tracker.record_request(page(route=route, host=host, client_addr=ADDRESS))
                site.tracker.peek()
        names, dump = redis_dump(redis_client, prefix)
        # Each site's keys live under a tag of its own write token...
        tags = {name[len(prefix) :].split(b":", 1)[0] for name in names}
        assert len(tags) == 2, names
        # ...which is not the token itself.
        for token in (blog_token, shop_token):
            assert token.encode() not in dump
        time.sleep(GAP + 0.1)  # the visits end on Redis's clock
        # Each site's sweep claims its own visits only, whichever sweeps first.
        assert blog.tracker.shutdown(5) is True
        assert shop.tracker.shutdown(5) is True
        assert blog.visits() == [("/b-in", "2")]
        assert shop.visits() == [("/s-in", "2")]
        for site in (blog, shop):
            assert site.tracker.stats().errors == 0
        _, dump = redis_dump(redis_client, prefix)
        for token in (blog_token, shop_token):
            assert token.encode() not in dump
    finally:
        blog.tracker.shutdown(1)
        shop.tracker.shutdown(1)


# --- max_buffer_age drops batches older than the limit (README, buffer options) -------


class SenderClock:
    """The sender's clock (its ``time`` module) with a hand the test moves forward, so
    that a day passes without waiting for it."""

    def __init__(self) -> None:
        self.skipped = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.skipped

    def time(self) -> float:
        return time.time() + self.skipped

    def advance(self, seconds: float) -> None:
        self.skipped += seconds


@pytest.fixture
def sender_clock(monkeypatch: pytest.MonkeyPatch) -> SenderClock:
    # The sender takes no clock argument: its module's view of time is swapped instead.
    clock = SenderClock()
    monkeypatch.setattr(sender_module, "time", clock)
    return clock


def test_max_buffer_age_defaults_to_a_day_and_is_capped_at_48_hours() -> None:
    assert Tracker("http://collector.test", "t").settings.max_buffer_age == 24 * 3600
    longest = Tracker("http://collector.test", "t", max_buffer_age=48 * 3600)
    assert longest.settings.max_buffer_age == 48 * 3600
    with pytest.raises(ConfigurationError, match="max_buffer_age"):
        Tracker("http://collector.test", "t", max_buffer_age=48 * 3600 + 1)


@pytest.mark.parametrize(
    ("options", "limit"),
    [({}, 24 * 3600.0), ({"max_buffer_age": 3600.0}, 3600.0)],
    ids=["default", "one-hour"],
)
def test_batches_older_than_max_buffer_age_are_dropped_and_counted(
    sender_clock: SenderClock, options: dict[str, float], limit: float
) -> None:
    down = True

    def maybe_down(attempt: int, batch: Batch) -> httpx.Response | None:
        if down:
            raise httpx.ConnectError("collector down")
        return None

    collector = FakeCollector(maybe_down)
    tracker = make_tracker(collector, **options)
    try:
        record(tracker, 3, route="/stale")
        assert tracker.flush(0.5) is False
        assert tracker.stats().buffered == 1
        # The collector stays down past the limit; the next send drops the batch.
        sender_clock.advance(limit + 1)
        down = False
        # Counts that never reached the collector: flush() says so.
        assert tracker.flush(2) is False
        stats = tracker.stats()
        assert (stats.dropped, stats.buffered, stats.sent) == (1, 0, 0)
        assert collector.applied == {}

        # A batch just under the limit is still sent when the collector comes back.
        down = True
        record(tracker, 2, route="/kept")
        assert tracker.flush(0.5) is False
        sender_clock.advance(limit - 60)
        down = False
        assert tracker.flush(2) is True
        stats = tracker.stats()
        assert (stats.dropped, stats.buffered, stats.sent) == (1, 0, 1)
        assert collector.routes() == {"/kept"}
        assert collector.total() == 2

        # A stale batch is dropped, and a fresh one behind it sent, in one flush.
        down = True
        record(tracker, 4, route="/old")
        assert tracker.flush(0.5) is False
        sender_clock.advance(limit + 1)
        down = False
        record(tracker, 5, route="/fresh")
        assert tracker.flush(2) is False  # "/old" never arrived
        assert tracker.flush(2) is True  # nothing counted since was lost
        stats = tracker.stats()
        assert (stats.dropped, stats.buffered, stats.sent) == (2, 0, 2)
        assert collector.routes() == {"/kept", "/fresh"}
        assert collector.total() == 7
    finally:
        tracker.shutdown(1)
