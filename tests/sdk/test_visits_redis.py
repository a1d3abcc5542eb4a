"""Visits in a real Redis shared by several workers (HEADCOUNT_TEST_REDIS, default
redis://127.0.0.1:6379/0). Fails, never skips, when Redis is unreachable.

Each test uses its own key prefix and deletes everything under it afterwards. Gaps are
fractions of a second: the store runs on Redis's own clock, so time is real here.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from wsgiref.util import setup_testing_defaults

import httpx
import pytest
import redis

from headcount import Tracker
from headcount._log import RateLimitedLog
from headcount._settings import TrackerSettings
from headcount._stats import Counters
from headcount._table import VisitKey
from headcount._visits._redis import RedisVisits, day_key, key_prefix
from headcount.integrations.wsgi import HeadcountMiddleware
from headcount.wire import Pageview, Visit

from .conftest import BROWSER, REDIS_URL, page

pytestmark = pytest.mark.redis

GAP = 0.4
ADDRESS = "203.0.113.77"
SECRET = "test-visits-secret-0123456789abcdefghij"


def as_bytes(value: object) -> bytes:
    """This client (no decode_responses) returns bytes; redis-py's types allow more."""
    return value if isinstance(value, bytes) else str(value).encode()


class Emitted:
    def __init__(self) -> None:
        self.keys: list[VisitKey] = []
        self.lock = threading.Lock()

    def __call__(self, keys: Sequence[VisitKey]) -> None:
        with self.lock:
            self.keys.extend(keys)

    def summary(self) -> Counter[tuple[str, str, str]]:
        with self.lock:
            return Counter((route, duration, pages) for _, _, route, duration, pages in self.keys)


Worker = tuple[RedisVisits, Counters]


def settings_for(prefix: str, **options: object) -> TrackerSettings:
    return TrackerSettings.build(
        {
            "endpoint": "http://collector.test",
            "write_token": "test-token",
            "visits_store": REDIS_URL,
            "visits_redis_prefix": prefix,
            "visit_gap": GAP,
            "visits_secret": SECRET,
            **options,
        }
    )


@pytest.fixture
def worker(prefix: str) -> Iterator[Callable[..., Worker]]:
    """Builds stores as separate workers of one site would: one settings, one Redis."""
    made: list[RedisVisits] = []

    def make(emitted: Emitted, **options: object) -> Worker:
        settings = settings_for(prefix, **options)
        counters = Counters()
        store = RedisVisits(settings, emitted, counters, RateLimitedLog())
        made.append(store)
        return store, counters

    yield make
    for store in made:
        store.close()


def view(
    store: RedisVisits,
    route: str = "/",
    address: str = ADDRESS,
    *,
    settle: bool = True,
    **kw: str | None,
) -> None:
    """One pageview, as the tracker hands it over; by default its link is then made (on
    the store's link thread) before the test goes on."""
    store.record(
        address, kw.get("forwarded_for"), kw.get("user_agent", BROWSER), "shop.example", route
    )
    if settle:
        store.settle(5)


def test_workers_share_one_visit_and_exactly_one_emits_it(
    worker: Callable[..., Worker],
) -> None:
    emitted = Emitted()
    a, a_counters = worker(emitted)
    b, b_counters = worker(emitted)
    view(a, "/entry")
    view(b, "/second")
    view(a, "/third")
    view(b, "/other", address="198.51.100.9")
    a.sweep()
    b.sweep()
    assert emitted.summary() == {}  # both still open
    time.sleep(GAP + 0.1)
    sweeps = [threading.Thread(target=s.sweep) for s in (a, b, a, b)]
    for t in sweeps:
        t.start()
    for t in sweeps:
        t.join()
    assert emitted.summary() == {("/entry", "<10s", "3-4"): 1, ("/other", "0s", "1"): 1}
    assert a_counters.errors == b_counters.errors == 0


def test_many_visits_claimed_by_racing_sweepers_are_each_emitted_once(
    worker: Callable[..., Worker],
) -> None:
    emitted = Emitted()
    stores = [worker(emitted)[0] for _ in range(3)]
    for i in range(1200):
        view(stores[i % 3], "/", address=f"10.1.{i // 250}.{i % 250}")
        if i % 2:
            view(stores[(i + 1) % 3], "/next", address=f"10.1.{i // 250}.{i % 250}")
    time.sleep(GAP + 0.1)
    sweeps = [threading.Thread(target=s.sweep) for s in stores * 2]
    for t in sweeps:
        t.start()
    for t in sweeps:
        t.join()
    assert emitted.summary() == {("/", "0s", "1"): 600, ("/", "<10s", "2"): 600}


def test_a_pageview_after_the_gap_starts_a_new_visit(worker: Callable[..., Worker]) -> None:
    emitted = Emitted()
    store, _ = worker(emitted)
    view(store, "/a")
    time.sleep(GAP + 0.1)
    view(store, "/b")  # the old visit is over even though no sweep has claimed it yet
    store.sweep()
    assert emitted.summary() == {("/a", "0s", "1"): 1}
    time.sleep(GAP + 0.1)
    store.sweep()
    assert emitted.summary() == {("/a", "0s", "1"): 1, ("/b", "0s", "1"): 1}


def test_redis_holds_only_keyed_hashes_that_expire_with_the_gap(
    worker: Callable[..., Worker], redis_client: redis.Redis, prefix: str
) -> None:
    emitted = Emitted()
    store, _ = worker(emitted, visit_gap=30)
    view(store, "/a")
    names = list(redis_client.scan_iter(match=prefix + "*"))
    dump = b" ".join(names)
    for name in names:
        kind = redis_client.type(name)
        if kind == b"string":
            dump += as_bytes(redis_client.get(name) or b"")
        elif kind == b"hash":
            dump += b" ".join(as_bytes(b) for kv in redis_client.hgetall(name).items() for b in kv)
        elif kind == b"zset":
            dump += b" ".join(as_bytes(member) for member in redis_client.zrange(name, 0, -1))
        elif kind == b"set":
            dump += b" ".join(as_bytes(member) for member in redis_client.smembers(name))
    lowered = dump.lower()
    for secret in (ADDRESS, BROWSER, "shop.example"):
        raw = secret.encode()
        assert raw.lower() not in lowered
        assert hashlib.sha256(raw).hexdigest().encode() not in lowered
        assert hashlib.md5(raw).hexdigest().encode() not in lowered
    links = [n for n in names if b":link:" in n]
    assert len(links) == 1
    assert 0 < redis_client.pttl(links[0]) <= 30_000
    # The link secret is derived in the app from visits_secret and the day; Redis holds
    # neither, nor the day's key, only a one-way tag of it.
    now = int(redis_client.time()[0])
    epoch, day_secret = day_key(SECRET, now // 86400)
    for held in (SECRET.encode(), day_secret.hex().encode(), day_secret):
        assert held not in dump
    assert redis_client.get(key_prefix(settings_for(prefix)) + "key") == (
        f"{epoch}:{now // 86400}".encode()
    )
    key_ttl = redis_client.pttl(key_prefix(settings_for(prefix)) + "key")
    assert key_ttl <= (86400 - now % 86400 + 30 + 3600) * 1000
    # Times in whole seconds: what a 30-minute gap and the duration ranges need.
    (data,) = [n for n in names if b":visit:" in n]
    first = int(redis_client.hget(data, "first") or 0)
    assert abs(first - now) <= 2


class NextDay(RedisVisits):
    """A worker whose clock says tomorrow: the day's key rotates under the others."""

    day_offset = 0

    def day_of(self, seconds: int) -> int:
        return super().day_of(seconds) + self.day_offset


def test_the_days_key_is_shared_and_the_next_days_ends_every_visit(
    prefix: str, redis_client: redis.Redis
) -> None:
    emitted = Emitted()
    settings = settings_for(prefix, visit_gap=60)
    a = NextDay(settings, emitted, Counters(), RateLimitedLog())
    b = NextDay(settings, emitted, Counters(), RateLimitedLog())
    try:
        view(a, "/a")
        view(b, "/a2")  # same browser, other worker, same day's key: one visit
        assert len(list(redis_client.scan_iter(match=prefix + "*:link:*"))) == 1
        secret_key = key_prefix(settings) + "key"
        old = redis_client.get(secret_key)
        # Deleting the key changes nothing: every worker derives the same day's key.
        redis_client.delete(secret_key)
        view(a, "/a3")
        assert redis_client.get(secret_key) == old
        a.sweep()
        assert emitted.summary() == {}
        # Midnight: b moves to the next day, whose key a derives too.
        b.day_offset = 1
        b._link_key = None  # its cached key would otherwise last until its own midnight
        view(b, "/b")
        assert redis_client.get(secret_key) != old
        a.sweep()  # the old day's visits all end, idle or not, and their links go
        assert emitted.summary() == {("/a", "<10s", "3-4"): 1}
        assert len(list(redis_client.scan_iter(match=prefix + "*:link:*"))) == 1
        a._link_key = None
        a.day_offset = 1
        view(a, "/b2")  # the same browser continues under the new day's key
    finally:
        b.close()
        a.close()
    assert emitted.summary() == {("/a", "<10s", "3-4"): 1}  # /b is still open, not idle
    assert len(redis_client.smembers(key_prefix(settings) + "epochs")) == 1


def test_workers_with_different_secrets_are_told_apart_and_link_nothing(
    worker: Callable[..., Worker], caplog: pytest.LogCaptureFixture, redis_client: redis.Redis
) -> None:
    emitted = Emitted()
    a, _ = worker(emitted)
    b, b_counters = worker(emitted, visits_secret="another-secret-0123456789abcdefghijkl")
    view(a, "/a")
    with caplog.at_level("WARNING", logger="headcount"):
        view(b, "/a2")
    assert b_counters.errors == 1
    (warned,) = [
        r.getMessage() for r in caplog.records if "another visits_secret" in r.getMessage()
    ]
    assert SECRET not in caplog.text
    # A deliberate change of secret: the message names the key to delete and when it
    # would expire; once it is deleted the new secret links at once.
    assert f"delete the Redis key {b._secret_key!r}" in warned
    assert re.search(r"expires at \d{4}-\d\d-\d\d \d\d:\d\d UTC", warned)
    redis_client.delete(b._secret_key)
    view(b, "/a3")
    assert b_counters.errors == 1  # no new mismatch: linked under the new secret


def test_a_redis_store_needs_an_app_side_secret() -> None:
    from headcount import ConfigurationError

    with pytest.raises(ConfigurationError, match="visits_secret"):
        TrackerSettings.build(
            {"endpoint": "http://c.test", "write_token": "t", "visits_store": REDIS_URL}
        )
    with pytest.raises(ConfigurationError, match="at least 32") as short:
        TrackerSettings.build(
            {
                "endpoint": "http://c.test",
                "write_token": "t",
                "visits_store": REDIS_URL,
                "visits_secret": "too-short-secret",
            }
        )
    assert "too-short-secret" not in str(short.value)


def test_close_emits_idle_visits_and_leaves_live_ones_to_the_other_workers(
    worker: Callable[..., Worker],
) -> None:
    emitted = Emitted()
    leaving, _ = worker(emitted)
    staying, _ = worker(emitted)
    view(leaving, "/idle", address="198.51.100.1")
    time.sleep(GAP + 0.1)
    view(leaving, "/live", address="198.51.100.2")
    leaving.close()
    assert emitted.summary() == {("/idle", "0s", "1"): 1}
    view(staying, "/live-2", address="198.51.100.2")
    time.sleep(GAP + 0.1)
    staying.sweep()
    assert emitted.summary() == {("/idle", "0s", "1"): 1, ("/live", "<10s", "2"): 1}


def test_data_that_is_not_ours_is_dropped_and_counted(
    worker: Callable[..., Worker], redis_client: redis.Redis, prefix: str
) -> None:
    emitted = Emitted()
    store, counters = worker(emitted)
    view(store, "/a")
    visit_keys = list(redis_client.scan_iter(match=key_prefix(settings_for(prefix)) + "visit:*"))
    assert len(visit_keys) == 1
    redis_client.hset(visit_keys[0], "route", "/users/4242424242")  # an identifier
    time.sleep(GAP + 0.1)
    store.sweep()
    assert emitted.summary() == {}
    assert counters.errors == 1


def test_an_unreachable_redis_fails_open_quickly(prefix: str) -> None:
    emitted = Emitted()
    settings = TrackerSettings.build(
        {
            "endpoint": "http://collector.test",
            "write_token": "t",
            # A port nothing listens on, and an address that never answers.
            "visits_store": "redis://127.0.0.1:1/0",
            "visits_redis_prefix": prefix,
            "visits_secret": SECRET,
        }
    )
    counters = Counters()
    store = RedisVisits(settings, emitted, counters, RateLimitedLog())
    started = time.perf_counter()
    for _ in range(100):
        view(store)
    store.sweep()
    store.close()
    assert time.perf_counter() - started < 2
    # One failure pauses Redis use: not one error (or one timeout) per pageview.
    assert 1 <= counters.errors <= 3
    assert emitted.summary() == {}


def test_a_pause_holds_whatever_clock_the_caller_read(prefix: str) -> None:
    # The tracker hands the store its wall-clock reading of the request; the pause after
    # a failure runs on the store's own clock and must not end early because of it.
    settings = TrackerSettings.build(
        {
            "endpoint": "http://collector.test",
            "write_token": "t",
            "visits_store": "redis://127.0.0.1:1/0",  # refuses at once
            "visits_redis_prefix": prefix,
            "visits_secret": SECRET,
        }
    )
    counters = Counters()
    store = RedisVisits(settings, Emitted(), counters, RateLimitedLog())
    for _ in range(50):
        linked = store.record(ADDRESS, None, BROWSER, "shop.example", "/", None, time.time())
        assert linked is None  # not linked: the caller counts the pageview itself
    store.close()
    assert 1 <= counters.errors <= 3


def test_a_tracker_keeps_counting_pageviews_when_redis_is_down(prefix: str) -> None:
    sent: list[bytes] = []

    def collect(request: httpx.Request) -> httpx.Response:
        sent.append(request.content)
        return httpx.Response(202, json={"accepted": 1})

    # A loopback port that takes connections and never answers: every command times out.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        tracker = Tracker(
            "http://collector.test",
            "t",
            transport=httpx.MockTransport(collect),
            flush_interval=86400,
            visits_store=f"redis://127.0.0.1:{silent.getsockname()[1]}/0",
            visits_redis_timeout=0.05,
            visits_redis_prefix=prefix,
            visits_secret=SECRET,
        )
        started = time.perf_counter()
        for _ in range(50):
            tracker.record_request(page(client_addr=ADDRESS))
        elapsed = time.perf_counter() - started
        assert tracker.shutdown(5)
    assert elapsed < 1.0  # one 50 ms timeout, then a pause
    assert tracker.stats().errors >= 1
    assert b'"visits":"redis"' in b"".join(sent)
    assert b'"kind":"pageview"' in b"".join(sent)


class ThreadRecordingRedis(redis.Redis):
    """A real client that notes which thread sends each command."""

    threads: set[str] = set()

    def execute_command(self, *args: Any, **options: Any) -> Any:
        ThreadRecordingRedis.threads.add(threading.current_thread().name)
        # redis-py leaves this one method unannotated.
        return super().execute_command(*args, **options)  # type: ignore[no-untyped-call]


def test_under_wsgi_the_request_thread_never_waits_on_redis(
    prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    connect = redis.Redis.from_url

    def recording_client(url: str, **options: Any) -> redis.Redis:
        return connect.__func__(ThreadRecordingRedis, url, **options)  # type: ignore[attr-defined,no-any-return]

    monkeypatch.setattr(redis.Redis, "from_url", recording_client)
    tracker = Tracker(
        "http://collector.test",
        "t",
        transport=httpx.MockTransport(lambda request: httpx.Response(202, json={})),
        flush_interval=86400,
        visits_store=REDIS_URL,
        visits_redis_prefix=prefix,
        visit_gap=GAP,
        visits_secret=SECRET,
    )

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/html")])
        return [b"<p>hello</p>"]

    served = HeadcountMiddleware(app, tracker)
    ThreadRecordingRedis.threads.clear()
    for route, address in [("/in", ADDRESS), ("/on", ADDRESS), ("/in", "198.51.100.9")]:
        environ: dict[str, Any] = {"headcount.route": route, "REMOTE_ADDR": address,
                                   "HTTP_USER_AGENT": BROWSER, "HTTP_HOST": "shop.example"}  # fmt: skip
        setup_testing_defaults(environ)
        served(environ, lambda status, headers, exc_info=None: lambda data: None)
    try:
        pageviews = {(r.route, r.entry): r.n for r in tracker.peek() if isinstance(r, Pageview)}
    finally:
        tracker.shutdown(5)
    # Every pageview counted, the entries decided by the links Redis made...
    assert pageviews == {("/in", True): 2, ("/on", False): 1}
    # ...none of them on the thread that served the requests.
    assert ThreadRecordingRedis.threads
    assert threading.current_thread().name not in ThreadRecordingRedis.threads


def _recording_options(prefix: str) -> tuple[list[bytes], dict[str, Any]]:
    """Tracker options for Redis visits whose sent bodies land in the returned list."""
    sent: list[bytes] = []

    def collect(request: httpx.Request) -> httpx.Response:
        sent.append(request.content)
        return httpx.Response(202, json={"accepted": 1})

    return sent, {
        "transport": httpx.MockTransport(collect),
        "flush_interval": 86400,
        "visits_store": REDIS_URL,
        "visits_redis_prefix": prefix,
        "visit_gap": GAP,
        "visits_secret": SECRET,
    }


def one_visit_sent(workers: list[Tracker], sent: list[bytes]) -> bytes:
    """Once the visit went idle and the workers stopped: the one visit they sent, as its
    route, duration and pages fields."""
    time.sleep(GAP + 0.1)
    for tracker in workers:
        assert tracker.shutdown(5)
        assert tracker.stats().errors == 0
    visits = re.findall(rb'"kind":"visit",[^}]*?("route":[^}]*?"pages":"[^"]*")', b"".join(sent))
    assert len(visits) == 1, visits
    return bytes(visits[0])


def test_a_tracker_with_redis_sends_the_visits_its_sweeps_claim(prefix: str) -> None:
    sent, options = _recording_options(prefix)
    workers = [Tracker("http://collector.test", "t", **options) for _ in range(2)]
    workers[0].record_request(page(route="/in", client_addr=ADDRESS))
    # The browser's next page comes after this one was served and linked (peek waits for
    # the link); each worker links on its own thread, so back-to-back calls could race.
    workers[0].peek()
    workers[1].record_request(page(route="/on", client_addr=ADDRESS))
    assert one_visit_sent(workers, sent) == b'"route":"/in","duration":"<10s","pages":"2"'


def test_the_entry_is_the_page_asked_for_first_when_its_worker_records_it_last(
    prefix: str,
) -> None:
    # A worker records a request once its response is out: the browser may already have
    # asked another worker for its next page, and that one may be recorded first.
    sent, options = _recording_options(prefix)
    workers = [Tracker("http://collector.test", "t", **options) for _ in range(2)]
    workers[1].record_request(page(route="/on", client_addr=ADDRESS, elapsed=0.01))
    workers[1].peek()
    time.sleep(0.05)
    # Asked for 0.2 s ago, before "/on" was: its response is what the browser followed.
    workers[0].record_request(page(route="/in", client_addr=ADDRESS, elapsed=0.2))
    assert one_visit_sent(workers, sent) == b'"route":"/in","duration":"<10s","pages":"2"'


def test_asyncio_callers_never_wait_on_redis_and_nothing_is_lost(
    worker: Callable[..., Worker],
) -> None:
    emitted = Emitted()
    store, _ = worker(emitted)

    async def app_requests() -> float:
        # On an event loop, record() hands the round trip to a worker thread.
        started = time.perf_counter()
        view(store, "/entry", settle=False)
        view(store, "/second", settle=False)
        return time.perf_counter() - started

    assert asyncio.run(app_requests()) < 0.05
    time.sleep(GAP + 0.1)
    store.close()  # drains the queued links into Redis, then emits what is over
    assert emitted.summary() == {("/entry", "<10s", "2"): 1}


def test_a_hanging_redis_does_not_stall_the_event_loop() -> None:
    import socket

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        settings = TrackerSettings.build(
            {
                "endpoint": "http://collector.test",
                "write_token": "test-token",
                "visits_store": f"redis://127.0.0.1:{silent.getsockname()[1]}/0",
                "visits_secret": SECRET,
            }
        )
        store = RedisVisits(settings, Emitted(), Counters(), RateLimitedLog())

        async def app_requests() -> float:
            started = time.perf_counter()
            for _ in range(5):
                view(store, "/entry", settle=False)
            return time.perf_counter() - started

        # Made on the loop, each would wait out visits_redis_timeout (50 ms) or more: all
        # five together stay under one such wait, with room for a loaded CI machine.
        assert asyncio.run(app_requests()) < 0.045
        closer = threading.Thread(target=store.close, daemon=True)
        closer.start()
        closer.join(0.1)  # a dead Redis may hold close(); the process is not held


def test_visits_left_open_by_a_stopped_app_arrive_when_it_starts_again(
    prefix: str, redis_client: redis.Redis
) -> None:
    sent, options = _recording_options(prefix)
    before = Tracker("http://collector.test", "t", **options)
    before.record_request(page(route="/in", client_addr=ADDRESS))
    before.record_request(page(route="/on", client_addr=ADDRESS))
    assert before.shutdown(5)  # the deploy stops every worker; the visit is still open
    assert b'"kind":"visit"' not in b"".join(sent)
    # Its data outlives a stop far longer than the gap plus an hour (a day and more).
    (data,) = redis_client.scan_iter(match=prefix + "*:visit:*")
    assert redis_client.pttl(data) > 24 * 3600 * 1000
    time.sleep(GAP + 0.1)
    # The new worker sweeps as it starts and sends without waiting for a request.
    after = Tracker("http://collector.test", "t", **options)
    claimed = [r for r in after.peek() if isinstance(r, Visit)]
    assert [(r.route, r.duration, r.pages) for r in claimed] == [("/in", "<10s", "2")]
    assert after.stats().recorded == 0  # no request was needed
    assert after.shutdown(2)
    assert b'"route":"/in","duration":"<10s","pages":"2"' in b"".join(sent)


def test_two_pages_asked_for_within_one_second_keep_their_order(
    worker: Callable[..., Worker], redis_client: redis.Redis, prefix: str
) -> None:
    # A quick click or a redirect: the next page is asked for within the same second, and
    # its worker reaches Redis first. Whole seconds cannot order the two; the entry is
    # still the page asked for first.
    emitted = Emitted()
    first_worker, _ = worker(emitted, visit_gap=60)  # whole-second units
    next_worker, _ = worker(emitted, visit_gap=60)
    second = float(int(time.time()))
    for store, route, asked in ((next_worker, "/next", second + 0.4), (first_worker, "/", second)):
        store.record(ADDRESS, None, BROWSER, "shop.example", route, now=asked)
        store.settle(5)
    (data,) = redis_client.scan_iter(match=prefix + "*:visit:*")
    assert redis_client.hmget(data, "route", "pages") == [b"/", b"2"]
    # A later page asked for in that same second is not the entry either.
    next_worker.record(ADDRESS, None, BROWSER, "shop.example", "/later", now=second + 0.7)
    next_worker.settle(5)
    assert redis_client.hmget(data, "route", "pages") == [b"/", b"3"]


def test_a_visit_written_by_an_older_worker_keeps_its_entry(
    worker: Callable[..., Worker], redis_client: redis.Redis, prefix: str
) -> None:
    # During a rolling deploy an older worker's visit holds its entry time in whole units
    # under "at": a newer worker continues it without comparing times of another unit.
    emitted = Emitted()
    store, counters = worker(emitted, visit_gap=60)
    second = float(int(time.time()))
    store.record(ADDRESS, None, BROWSER, "shop.example", "/old-entry", now=second + 0.5)
    store.settle(5)
    (data,) = redis_client.scan_iter(match=prefix + "*:visit:*")
    redis_client.hdel(data, "asked")
    redis_client.hset(data, "at", int(second))
    store.record(ADDRESS, None, BROWSER, "shop.example", "/earlier", now=second - 5)
    store.settle(5)
    assert redis_client.hmget(data, "route", "pages", "asked") == [b"/old-entry", b"2", None]
    assert counters.errors == 0
