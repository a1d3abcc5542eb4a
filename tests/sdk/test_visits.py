"""Visits in memory: boundaries, expiry, key rotation, the table's bound and shutdown.

Time comes from an injected clock, so every gap is exact and no test sleeps, except the
few that prove the real sender thread sweeps on its own.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest

from headcount import ConfigurationError, Tracker
from headcount._settings import TrackerSettings
from headcount._table import VisitKey
from headcount._visits import KEY_LIFETIME, MemoryVisits
from headcount._visits._link import AgentStates
from headcount.testing import RecordingCollector
from headcount.wire import Visit

from .conftest import BROWSER, page

START = 1_800_000_000.0  # the start of a UTC hour
GAP = 1800.0
OTHER_BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


class FakeClock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Emitted:
    """Collects what the store emits, as the tracker's count table would."""

    def __init__(self) -> None:
        self.keys: list[VisitKey] = []

    def __call__(self, keys: Sequence[VisitKey]) -> None:
        self.keys.extend(keys)

    def take(self) -> list[VisitKey]:
        keys, self.keys = self.keys, []
        return sorted(keys)


def make_store(clock: FakeClock, emitted: Emitted, **options: object) -> MemoryVisits:
    settings = TrackerSettings.build(
        {"endpoint": "http://collector.test", "write_token": "t", "visit_gap": GAP, **options}
    )
    return MemoryVisits(settings, emitted, clock=clock)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def emitted() -> Emitted:
    return Emitted()


@pytest.fixture
def store(clock: FakeClock, emitted: Emitted) -> MemoryVisits:
    return make_store(clock, emitted)


def view(
    store: MemoryVisits,
    route: str = "/",
    address: str | None = "203.0.113.7",
    user_agent: str | None = BROWSER,
    host: str | None = "shop.example",
    forwarded_for: str | None = None,
) -> None:
    store.record(address, forwarded_for, user_agent, host, route)


def visit(route: str, duration: str, pages: str, hour: float = START) -> VisitKey:
    return ("visit", int(hour), route, duration, pages)


# --- what a visit is -----------------------------------------------------------------


def test_a_single_pageview_is_a_visit_of_no_duration(
    store: MemoryVisits, clock: FakeClock, emitted: Emitted
) -> None:
    view(store, "/pricing")
    clock.advance(GAP)
    store.sweep()
    assert emitted.take() == [visit("/pricing", "0s", "1")]


def test_pageviews_closer_than_the_gap_are_one_visit_entered_at_the_first(
    store: MemoryVisits, clock: FakeClock, emitted: Emitted
) -> None:
    view(store, "/blog")
    clock.advance(GAP - 1)
    view(store, "/about")
    clock.advance(GAP - 1)
    view(store, "/contact")
    store.sweep()
    assert emitted.take() == []  # still open: the last pageview was just now
    clock.advance(GAP)
    store.sweep()
    # 2 * (GAP - 1) seconds between the first and the last pageview: over 30 minutes.
    assert emitted.take() == [visit("/blog", ">=30m", "3-4")]


def test_a_gap_of_exactly_visit_gap_starts_a_new_visit(
    store: MemoryVisits, clock: FakeClock, emitted: Emitted
) -> None:
    view(store, "/a")
    clock.advance(5)
    view(store, "/b")
    clock.advance(GAP)
    view(store, "/c")  # closes the idle visit itself, before any sweep
    assert emitted.take() == [visit("/a", "<10s", "2")]
    clock.advance(GAP)
    store.sweep()
    assert emitted.take() == [visit("/c", "0s", "1")]


def test_a_visit_that_follows_an_idle_one_starts_afresh_in_its_own_hour(
    store: MemoryVisits, clock: FakeClock, emitted: Emitted
) -> None:
    for route in ("/a", "/b", "/c"):
        view(store, route)
        clock.advance(60)
    clock.advance(2 * 3600)  # idle, not swept: the next pageview ends that visit itself
    view(store, "/d")
    assert emitted.take() == [visit("/a", "2m-5m", "3-4")]
    clock.advance(20)
    view(store, "/e")
    assert store.record("203.0.113.7", None, BROWSER, "shop.example", "/f") is False
    clock.advance(GAP)
    store.sweep()
    # Its own start, hour and entry route, and only its own pages.
    assert emitted.take() == [visit("/d", "10s-30s", "3-4", hour=START + 2 * 3600)]


@pytest.mark.parametrize(
    ("pages", "step", "duration", "pages_label"),
    [
        (2, 9.99, "<10s", "2"),
        (2, 10, "10s-30s", "2"),
        (3, 15, "30s-1m", "3-4"),
        (4, 20, "1m-2m", "3-4"),
        (5, 30, "2m-5m", "5-9"),
        (9, 70, "5m-10m", "5-9"),
        (10, 100, "10m-30m", "10+"),
        (40, 60, ">=30m", "10+"),
    ],
)
def test_duration_and_pages_ranges(
    store: MemoryVisits,
    clock: FakeClock,
    emitted: Emitted,
    pages: int,
    step: float,
    duration: str,
    pages_label: str,
) -> None:
    for i in range(pages):
        if i:
            clock.advance(step)
        view(store, "/start" if i == 0 else "/next")
    clock.advance(GAP)
    store.sweep()
    assert emitted.take() == [visit("/start", duration, pages_label)]


def test_a_visit_counts_in_the_hour_it_started(
    store: MemoryVisits, clock: FakeClock, emitted: Emitted
) -> None:
    clock.advance(3600 - 60)
    view(store, "/late")
    clock.advance(120)  # into the next hour
    view(store, "/later")
    clock.advance(GAP)
    store.sweep()
    assert emitted.take() == [visit("/late", "2m-5m", "2")]


def test_address_user_agent_and_host_each_tell_visits_apart(
    store: MemoryVisits, clock: FakeClock, emitted: Emitted
) -> None:
    view(store, "/1")
    view(store, "/2", address="203.0.113.8")
    view(store, "/3", user_agent=OTHER_BROWSER)
    view(store, "/4", host="other.example")
    view(store, "/1-again")
    assert len(store) == 4
    clock.advance(GAP)
    store.sweep()
    assert emitted.take() == sorted(
        [
            visit("/1", "<10s", "2"),
            visit("/2", "0s", "1"),
            visit("/3", "0s", "1"),
            visit("/4", "0s", "1"),
        ]
    )


def test_a_request_without_a_client_address_is_never_linked(
    store: MemoryVisits, clock: FakeClock, emitted: Emitted
) -> None:
    view(store, address=None)
    view(store, address="")
    assert len(store) == 0
    store.close()
    assert emitted.take() == []


def test_missing_or_hostile_headers_never_raise(
    store: MemoryVisits, clock: FakeClock, emitted: Emitted
) -> None:
    view(store, "/a", user_agent=None, host=None)
    view(store, "/a", user_agent="\udcff\x00\n" + "x" * 100_000, host="\udcfe")
    view(store, "/a", user_agent="日本語 Ünïcødé")
    # A user agent is only told apart by its first 512 characters.
    view(store, "/long", user_agent="A" * 512 + "one")
    view(store, "/long", user_agent="A" * 512 + "two")
    store.close()
    assert emitted.take() == sorted(
        [
            visit("/a", "0s", "1"),
            visit("/a", "0s", "1"),
            visit("/a", "0s", "1"),
            visit("/long", "<10s", "2"),
        ]
    )


def test_a_browser_stays_linked_whatever_its_user_agents_cached_hash_state_went_through(
    store: MemoryVisits, clock: FakeClock, emitted: Emitted
) -> None:
    view(store, "/first")
    # More browser kinds than the store keeps hash states for: the first one's is
    # pushed out and made again, to the same link.
    for number in range(5000):
        view(store, "/crowd", address="198.51.100.1", user_agent=f"{BROWSER} build/{number}")
    view(store, "/first-again")
    # A host too long to be kept is hashed afresh each time, to the same link.
    long_host = "a" * 300 + ".example"
    view(store, "/long-host", host=long_host)
    view(store, "/long-host-again", host=long_host)
    store.close()
    visits = Counter(emitted.take())
    assert visits[visit("/first", "<10s", "2")] == 1
    assert visits[visit("/long-host", "<10s", "2")] == 1
    assert visits[visit("/crowd", "0s", "1")] == 5000


def test_the_user_agent_hash_states_are_bounded_whatever_clients_send() -> None:
    agents = AgentStates(b"k" * 32, maxsize=3)
    for number in range(10):
        agents.state(f"agent {number}", "shop.example")
    assert len(agents) == 3
    assert agents.get(("agent 9", "shop.example")) is not None
    assert agents.get(("agent 0", "shop.example")) is None
    # What no client should be able to make large is never kept; the longest that are.
    agents.state("A" * 512, "h" * 262)
    assert agents.get(("A" * 512, "h" * 262)) is not None
    agents.state("A" * 513, "shop.example")
    agents.state("agent", "h" * 263)
    assert agents.get(("A" * 513, "shop.example")) is None
    assert agents.get(("agent", "h" * 263)) is None


def test_a_link_is_the_keyed_blake2b_of_the_user_agent_host_and_address() -> None:
    secret = bytes(range(32))
    agents = AgentStates(secret)
    agent, host, address = f"{BROWSER} Ünïcødé", "shop.example", "2001:db8::7"
    agent_bytes, host_bytes = agent.encode(), host.encode()
    fields = b"".join(
        (
            len(agent_bytes).to_bytes(4, "big"),
            agent_bytes,
            len(host_bytes).to_bytes(4, "big"),
            host_bytes,
        )
    )
    material = fields + bytes((1 - len(fields)) % 128) + address.encode()
    expected = hashlib.blake2b(material, key=secret, digest_size=16).digest()
    agents.state(agent, host)
    for _ in range(2):  # hashing an address into a copy leaves the remembered state as it was
        state = agents.get((agent, host))
        assert state is not None
        link = state.copy()
        link.update(address.encode())
        assert link.digest() == expected


def test_headers_holding_nul_cannot_run_into_each_other(
    store: MemoryVisits, clock: FakeClock, emitted: Emitted
) -> None:
    view(store, "/1", user_agent="x", host="h")
    view(store, "/2", user_agent="x", host="h\x00")
    view(store, "/3", user_agent="x\x00", host="h")
    view(store, "/4", user_agent="x\x00h", host="")
    view(store, "/5", user_agent="x", host="\x00" * 120)
    # No user agent and an empty one are the same browser kind, as are no host and "".
    view(store, "/6", user_agent=None, host=None)
    view(store, "/6-again", user_agent="", host="")
    assert len(store) == 6


def test_the_key_rotation_and_closing_drop_every_hash_state_made_with_the_key(
    store: MemoryVisits, clock: FakeClock, emitted: Emitted
) -> None:
    view(store, "/")
    old_states = store._agents
    assert len(old_states) == 1
    clock.advance(KEY_LIFETIME)
    store.sweep()
    assert store._agents is not old_states
    assert len(store._agents) == 0
    # Nor does any outlive the store.
    view(store, "/")
    assert len(store._agents) == 1
    store.close()
    assert len(store._agents) == 0


def test_a_clock_stepping_back_never_makes_a_negative_duration(
    store: MemoryVisits, clock: FakeClock, emitted: Emitted
) -> None:
    view(store, "/a")
    clock.advance(-50)
    view(store, "/b")
    clock.advance(GAP + 100)
    store.sweep()
    assert emitted.take() == [visit("/a", "<10s", "2")]


# --- expiry, rotation, bounds, shutdown --------------------------------------------


def test_the_sweep_closes_only_idle_visits(
    store: MemoryVisits, clock: FakeClock, emitted: Emitted
) -> None:
    view(store, "/idle", address="198.51.100.1")
    view(store, "/busy", address="198.51.100.2")
    clock.advance(GAP - 10)
    view(store, "/busy", address="198.51.100.2")
    clock.advance(10)
    store.sweep()
    assert emitted.take() == [visit("/idle", "0s", "1")]
    assert len(store) == 1
    clock.advance(GAP)
    store.sweep()
    assert emitted.take() == [visit("/busy", "10m-30m", "2")]
    assert len(store) == 0


def test_a_sweep_of_many_idle_visits_closes_them_all(
    store: MemoryVisits, clock: FakeClock, emitted: Emitted
) -> None:
    for i in range(5000):
        view(store, "/", address=f"10.0.{i // 256}.{i % 256}")
    clock.advance(GAP)
    store.sweep()
    assert len(emitted.take()) == 5000
    assert len(store) == 0


def test_the_key_rotation_ends_every_open_visit_and_links_nothing_across_it(
    store: MemoryVisits, clock: FakeClock, emitted: Emitted
) -> None:
    # One browser active every ten minutes for a whole day and more: never idle. The
    # 145th pageview comes exactly when the key is due, so it starts a second visit.
    for _ in range(int(KEY_LIFETIME // 600) + 3):
        view(store, "/")
        clock.advance(600)
    store.close()
    assert emitted.take() == [
        visit("/", ">=30m", "10+"),
        visit("/", "10m-30m", "3-4", hour=START + KEY_LIFETIME),
    ]


def test_the_key_rotation_happens_without_any_request(
    store: MemoryVisits, clock: FakeClock, emitted: Emitted
) -> None:
    clock.advance(KEY_LIFETIME - 60)
    view(store, "/a")
    clock.advance(59)
    store.sweep()
    assert emitted.take() == []
    clock.advance(1)
    store.sweep()  # not idle, but its key is due: the visit ends
    assert emitted.take() == [visit("/a", "0s", "1", hour=START + KEY_LIFETIME - 3600)]
    view(store, "/a")  # the same browser, a fresh key: a new visit
    clock.advance(5)
    view(store, "/b")
    store.close()
    assert emitted.take() == [visit("/a", "<10s", "2", hour=START + KEY_LIFETIME)]


def test_a_full_table_closes_the_least_recently_active_visit(
    clock: FakeClock, emitted: Emitted
) -> None:
    store = make_store(clock, emitted, max_visits=3)
    view(store, "/a", address="192.0.2.1")
    clock.advance(1)
    view(store, "/b", address="192.0.2.2")
    clock.advance(1)
    view(store, "/c", address="192.0.2.3")
    clock.advance(1)
    view(store, "/a2", address="192.0.2.1")  # /a is active again: /b is now the oldest
    clock.advance(1)
    view(store, "/d", address="192.0.2.4")
    assert emitted.take() == [visit("/b", "0s", "1")]
    assert len(store) == 3
    store.close()
    assert emitted.take() == sorted(
        [visit("/a", "<10s", "2"), visit("/c", "0s", "1"), visit("/d", "0s", "1")]
    )


def test_close_ends_every_open_visit(
    store: MemoryVisits, clock: FakeClock, emitted: Emitted
) -> None:
    view(store, "/a", address="192.0.2.1")
    view(store, "/b", address="192.0.2.2")
    clock.advance(12)
    view(store, "/b", address="192.0.2.2")
    store.close()
    assert emitted.take() == sorted([visit("/a", "0s", "1"), visit("/b", "10s-30s", "2")])
    assert len(store) == 0


def test_concurrent_pageviews_are_all_counted(
    store: MemoryVisits, clock: FakeClock, emitted: Emitted
) -> None:
    def browse(thread: int) -> None:
        for i in range(2000):
            view(store, "/", address=f"10.{thread}.{i % 50}.1")

    threads = [threading.Thread(target=browse, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.close()
    visits = emitted.take()
    assert len(visits) == 200
    assert Counter(v[4] for v in visits) == {"10+": 200}


# --- through the Tracker -------------------------------------------------------------


def visits_of(collector: RecordingCollector) -> Counter[tuple[object, ...]]:
    return collector.counts(Visit, "route", "duration", "pages")


def make_tracker(collector: RecordingCollector, **options: Any) -> Tracker:
    settings: dict[str, Any] = {"flush_interval": 86400, **options}
    return Tracker(
        "http://collector.test", "test-token", transport=collector.transport(), **settings
    )


def test_the_tracker_sends_finished_visits_at_shutdown_and_declares_the_mode() -> None:
    collector = RecordingCollector()
    tracker = make_tracker(collector)
    for route in ("/blog", "/about"):
        tracker.record_request(page(route=route, client_addr="203.0.113.7"))
    tracker.record_request(page(route="/pricing", client_addr="203.0.113.8"))
    # Not pageviews, so never part of a visit: an API call, a 404, a bot.
    tracker.record_request(
        page(
            route="/api", method="POST", content_type="application/json", client_addr="203.0.113.9"
        )
    )
    tracker.record_request(page(route="/x", status=404, client_addr="203.0.113.9"))
    tracker.record_request(page(user_agent="Googlebot/2.1", client_addr="203.0.113.9"))
    assert tracker.flush(5)
    assert visits_of(collector) == {}  # a flush leaves open visits open
    assert tracker.shutdown(5)
    assert visits_of(collector) == {
        ("/blog", "<10s", "2"): 1,
        ("/pricing", "0s", "1"): 1,
    }
    assert {batch.visits for batch in collector.batches} == {"memory"}


def test_a_visit_starts_in_its_pageviews_hour_however_long_the_request_took() -> None:
    # Visits are ordered by when each page was asked for (the request's start), but a
    # visit never starts before the hour its first pageview is counted in: an import
    # only sends hours it checked, and a request time may be anything.
    collector = RecordingCollector()
    tracker = make_tracker(collector, clock=FakeClock(START + 0.004))
    tracker.record_request(page(route="/a", client_addr="203.0.113.7", elapsed=0.01))
    tracker.record_request(page(route="/b", client_addr="203.0.113.8", elapsed=math.inf))
    assert tracker.shutdown(5)
    assert tracker.stats().errors == 0
    assert visits_of(collector) == {("/a", "0s", "1"): 1, ("/b", "0s", "1"): 1}
    assert {visit.hour for visit in collector.records(Visit)} == {int(START)}


def test_visits_off_links_nothing_and_says_so() -> None:
    collector = RecordingCollector()
    tracker = make_tracker(collector, visits=False)
    for _ in range(3):
        tracker.record_request(page(client_addr="203.0.113.7"))
    assert tracker.shutdown(5)
    assert visits_of(collector) == {}
    assert {batch.visits for batch in collector.batches} == {"off"}
    assert sum(batch.records[0].n for batch in collector.batches if batch.records) > 0


def test_the_sender_thread_ends_idle_visits_without_any_request() -> None:
    collector = RecordingCollector()
    tracker = make_tracker(
        collector, flush_interval=0.05, visit_gap=0.05, send_schedule="immediate"
    )
    try:
        tracker.record_request(page(route="/alone", client_addr="203.0.113.7"))
        deadline = time.monotonic() + 10
        while not visits_of(collector) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert visits_of(collector) == {("/alone", "0s", "1"): 1}
    finally:
        tracker.shutdown(2)
    assert visits_of(collector) == {("/alone", "0s", "1"): 1}


def test_trusted_proxies_attribute_pageviews_to_the_forwarded_client() -> None:
    collector = RecordingCollector()
    tracker = make_tracker(collector, trusted_proxies=["127.0.0.1"])
    # Two clients behind the same proxy; one of them forges an extra address on the left.
    tracker.record_request(page(client_addr="127.0.0.1", forwarded_for="198.51.100.1"))
    tracker.record_request(page(client_addr="127.0.0.1", forwarded_for="10.9.9.9, 198.51.100.1"))
    tracker.record_request(page(client_addr="127.0.0.1", forwarded_for="198.51.100.2"))
    assert tracker.shutdown(5)
    assert sorted(visits_of(collector).items()) == [
        (("/articles/{id}", "0s", "1"), 1),
        (("/articles/{id}", "<10s", "2"), 1),
    ]


# --- settings ------------------------------------------------------------------------


def build(options: dict[str, object], env: dict[str, str] | None = None) -> TrackerSettings:
    return TrackerSettings.build(
        {"endpoint": "http://collector.test", "write_token": "t", **options}, env or {}
    )


def test_visit_settings_defaults_and_modes() -> None:
    settings = build({})
    assert (settings.visits_mode, settings.visit_gap, settings.max_visits) == (
        "memory",
        1800.0,
        100_000,
    )
    assert build({"visits": False}).visits_mode == "off"
    redis_options: dict[str, object] = {
        "visits_store": "redis://127.0.0.1:6379/0",
        "visits_secret": "s" * 24 + "0123456789",
    }
    assert build(redis_options).visits_mode == "redis"


def test_visit_settings_from_the_environment() -> None:
    settings = build(
        {},
        {
            "HEADCOUNT_VISITS": "off",
            "HEADCOUNT_VISIT_GAP": "900",
            "HEADCOUNT_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1 ,::1",
            "HEADCOUNT_VISITS_STORE": "rediss://:pw@redis.internal:6380/2",
        },
    )
    assert settings.visits_mode == "off"
    assert settings.visit_gap == 900.0
    assert settings.trusted_proxies == ("10.0.0.0/8", "127.0.0.1/32", "::1/128")
    assert settings.visits_store.startswith("rediss://")


@pytest.mark.parametrize(
    "options",
    [
        {"visits": "yes"},
        {"visit_gap": 0},
        {"visit_gap": 86401},
        {"visit_gap": float("nan")},
        {"max_visits": 0},
        {"max_visits": 1.5},
        {"trusted_proxies": "127.0.0.1"},
        {"trusted_proxies": ["not-an-address"]},
        {"trusted_proxies": ["10.0.0.0/33"]},
        {"trusted_proxies": [127]},
        {"visits_store": "postgres://db"},
        {"visits_store": 6379},
        {"visits_redis_timeout": 0},
        {"visits_redis_prefix": "has space"},
    ],
)
def test_invalid_visit_settings_are_refused(options: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        build(options)


def test_a_refused_visits_store_is_never_echoed() -> None:
    with pytest.raises(ConfigurationError) as caught:
        build({"visits_store": "memcache://user:s3cret-pw@host"})
    assert "s3cret-pw" not in str(caught.value)
