"""Tracker behaviour seen through peek() and stats(): what gets counted, and how."""

from __future__ import annotations

import threading
import tracemalloc
from typing import Any, TypeVar

import msgspec
import pytest

import headcount
from headcount import RequestInfo, Tracker
from headcount.wire import Batch, Bot, Event, Pageview, Record, Request, Visit

from .conftest import BROWSER, HOUR, accepting_transport, page

KindT = TypeVar("KindT", Pageview, Request, Event, Bot, Visit)


def kinds(records: list[Record], kind: type[KindT]) -> list[KindT]:
    return [r for r in records if isinstance(r, kind)]


def total(records: list[Record], kind: type[KindT]) -> int:
    return sum(r.n for r in kinds(records, kind))


def assert_valid_on_the_wire(records: list[Record]) -> None:
    """The collector decodes strictly with the same schema; so do we."""
    body = msgspec.json.encode(
        Batch(batch_id="0" * 32, sender="t", sender_version="1", records=records)
    )
    decoded = msgspec.json.decode(body, type=Batch)
    assert decoded.records == records


def test_public_facade_is_exact() -> None:
    assert sorted(headcount.__all__) == sorted(
        [
            "ConfigurationError",
            "ConfigurationWarning",
            "HeadcountError",
            "RequestInfo",
            "Tracker",
            "TrackerSettings",
            "TrackerStats",
            "__version__",
            "generalize_path",
            "normalize_route",
            "set_route",
        ]
    )
    for name in headcount.__all__:
        assert hasattr(headcount, name)


def test_a_pageview_counts_as_request_and_pageview(tracker: Tracker) -> None:
    tracker.record_request(page(referer="https://www.google.com/search?q=x"))
    records = tracker.peek()
    (request,) = kinds(records, Request)
    (pageview,) = kinds(records, Pageview)
    assert request == Request(
        hour=HOUR, route="/articles/{id}", method="GET", status="2xx", latency="25ms-50ms", n=1
    )
    assert pageview == Pageview(
        hour=HOUR, route="/articles/{id}", referrer="google.com", entry=True, n=1
    )
    assert tracker.stats().recorded == 1


def test_same_coarse_request_is_one_key(tracker: Tracker) -> None:
    for article in range(50):
        tracker.record_request(page(elapsed=0.031 + article / 10_000))
    records = tracker.peek()
    assert len(kinds(records, Request)) == 1
    assert total(records, Request) == 50
    assert total(records, Pageview) == 50


def test_internal_navigation_is_not_an_entry(tracker: Tracker) -> None:
    tracker.record_request(page(referer="https://shop.example/", sec_fetch_site="same-origin"))
    (pageview,) = kinds(tracker.peek(), Pageview)
    assert pageview.referrer == "(internal)"
    assert pageview.entry is False


@pytest.mark.parametrize(
    ("overrides", "is_pageview"),
    [
        ({}, True),
        ({"content_type": "application/xhtml+xml"}, True),
        ({"content_type": "TEXT/HTML"}, True),
        ({"sec_fetch_dest": None}, True),  # older browsers send no Sec-Fetch-* at all
        ({"method": "HEAD"}, False),
        ({"method": "POST"}, False),
        ({"status": 304}, False),
        ({"status": 404}, False),
        ({"status": 500}, False),
        ({"content_type": "application/json"}, False),
        ({"content_type": None}, False),
        ({"purpose": "prefetch"}, False),
        ({"purpose": "prefetch;prerender"}, False),
        ({"sec_fetch_dest": "iframe"}, False),
        ({"sec_fetch_dest": "empty"}, False),
        ({"user_agent": "curl/8.0"}, False),
        ({"user_agent": None}, False),
        ({"route": "/healthz"}, False),
        ({"route": "/static/<path:filename>"}, False),
        ({"route": "/admin/users/<int:id>"}, False),
        ({"route": "/favicon.ico"}, False),
    ],
)
def test_pageview_rules(tracker: Tracker, overrides: dict[str, object], is_pageview: bool) -> None:
    tracker.record_request(page(**overrides))
    records = tracker.peek()
    assert total(records, Pageview) == (1 if is_pageview else 0)
    # Every request, whatever it is, feeds the request counter.
    assert total(records, Request) == 1


def test_bots_count_as_bot_and_request_only(tracker: Tracker) -> None:
    tracker.record_request(page(user_agent="Mozilla/5.0 (compatible; Googlebot/2.1)"))
    tracker.record_request(page(user_agent="Mozilla/5.0 (compatible; GPTBot/1.2)"))
    tracker.record_request(page(user_agent="Mozilla/5.0 (compatible; GPTBot/1.2)"))
    records = tracker.peek()
    assert {r.category: r.n for r in kinds(records, Bot)} == {"search": 1, "ai": 2}
    assert total(records, Request) == 3
    assert total(records, Pageview) == 0


def test_a_bot_without_a_category_word_is_other(tracker: Tracker) -> None:
    tracker.record_request(page(user_agent="curl/8.5.0"))
    records = tracker.peek()
    assert kinds(records, Bot) == [Bot(hour=HOUR, n=1, category="other")]
    assert total(records, Request) == 1
    assert total(records, Pageview) == 0


def pageview_routes(routes: list[str], **options: Any) -> list[str]:
    t = Tracker(enabled=True, endpoint="http://c.test", write_token="t",
                transport=accepting_transport(), **options)  # fmt: skip
    try:
        for route in routes:
            t.record_request(page(route=route))
        return sorted(p.route for p in kinds(t.peek(), Pageview))
    finally:
        t.shutdown(1)


def test_exclude_routes_additions_keep_the_defaults() -> None:
    routes = ["/private/area", "/healthz", "/static/app.css", "/admin/users", "/pricing"]
    assert pageview_routes(routes, exclude_routes=["/private*"]) == ["/pricing"]


def test_exclude_default_routes_false_replaces_the_defaults() -> None:
    routes = ["/private/area", "/healthz", "/admin/users", "/pricing"]
    assert pageview_routes(routes, exclude_routes=["/private*"], exclude_default_routes=False) == [
        "/admin/users",
        "/healthz",
        "/pricing",
    ]


def test_an_integration_can_exclude_a_request_whatever_its_route(tracker: Tracker) -> None:
    tracker.record_request(page(route="/django-admin/", excluded=True))
    records = tracker.peek()
    assert total(records, Pageview) == 0
    assert total(records, Request) == 1


def test_unmatched_route_is_never_the_raw_path(tracker: Tracker) -> None:
    tracker.record_request(page(route=None, status=404))
    (request,) = kinds(tracker.peek(), Request)
    assert request.route == "(unmatched)"


def test_nothing_identifying_survives_hostile_requests(tracker: Tracker) -> None:
    secrets_in_input = ["alice@example.com", "hunter2", "203.0.113.9", "8f14e45fceea167a5a36dedd"]
    hostile = RequestInfo(
        "GET",
        "/reset/alice@example.com/8f14e45fceea167a5a36dedd4bea2543",
        200,
        0.01,
        host="shop.example",
        referer="https://alice:hunter2@203.0.113.9/?email=alice@example.com",
        query_string="email=alice@example.com&utm_source=alice@example.com&token=hunter2",
        user_agent=BROWSER + " alice@example.com",
        content_type="text/html",
        client_addr="203.0.113.9",
    )
    tracker.record_request(hostile)
    records = tracker.peek()
    assert_valid_on_the_wire(records)
    encoded = msgspec.json.encode(records).decode()
    for secret in secrets_in_input:
        assert secret not in encoded
    assert "Mozilla" not in encoded


@pytest.mark.parametrize(
    "info",
    [
        RequestInfo("GET", "/x", 200, 0.01, referer="x" * 10_000, content_type="text/html",
                    user_agent=BROWSER),
        RequestInfo("GET", "/x", 200, 0.01, referer="https://\r\nEvil: 1", user_agent=BROWSER,
                    content_type="text/html"),
        RequestInfo("GET", "/ü/🎉", 200, 0.01, host="ünïcode.example", referer="https://ünïcode.example/",
                    user_agent=BROWSER, content_type="text/html"),
        RequestInfo("\x00", "\x00", -1, -5.0, host="\x00", referer="\x00", sec_fetch_site="\x00",
                    sec_fetch_dest="\x00", purpose="\x00", query_string="\x00", user_agent="\x00",
                    content_type="\x00"),
        RequestInfo("GET", "/x", 200, float("nan"), user_agent=BROWSER, content_type="text/html",
                    query_string="utm_source=" + "%" * 5000),
    ],
)  # fmt: skip
def test_malformed_requests_still_count_and_stay_valid(tracker: Tracker, info: RequestInfo) -> None:
    tracker.record_request(info)
    records = tracker.peek()
    assert total(records, Request) == 1
    assert_valid_on_the_wire(records)
    assert tracker.stats().errors == 0


def test_wrong_types_are_swallowed_and_counted(tracker: Tracker) -> None:
    broken = RequestInfo("GET", "/x", "200", "fast")  # type: ignore[arg-type]
    tracker.record_request(broken)  # must not raise into the app
    tracker.record_request(object())  # type: ignore[arg-type]
    assert tracker.stats().errors == 2
    tracker.record_request(page())
    assert total(tracker.peek(), Request) == 1


def test_max_keys_overflow_counts_into_other_and_keeps_totals() -> None:
    t = Tracker("http://c.test", "t", max_keys=10, transport=accepting_transport())
    try:
        for i in range(100):
            t.record_request(RequestInfo("GET", f"/r{chr(97 + i % 26)}{i // 26}", 200, 0.01,
                                         user_agent=BROWSER, content_type="application/json"))  # fmt: skip
        records = t.peek()
        assert total(records, Request) == 100
        # Folding starts at a random point between half of max_keys and max_keys.
        assert len(records) <= 11
        other = [r for r in kinds(records, Request) if r.route == "(other)"]
        kept = len(records) - len(other)
        assert 5 <= kept <= 10
        assert sum(r.n for r in other) == 100 - kept
        assert t.stats().overflowed == 100 - kept
    finally:
        t.shutdown(1)


def test_a_flood_of_distinct_routes_leaves_memory_flat() -> None:
    t = Tracker("http://c.test", "t", max_keys=1000, transport=accepting_transport())
    try:

        def flood(start: int) -> None:
            for i in range(start, start + 20_000):
                t.record_request(RequestInfo("GET", f"/p{i}x", 200, 0.01, user_agent=BROWSER))

        tracemalloc.start()
        try:
            # Fills the table and every bounded cache, all traced.
            flood(0)
            before = tracemalloc.get_traced_memory()[0]
            for start in range(100_000, 500_000, 100_000):
                flood(start)
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        # 80,000 more distinct routes held anywhere would take several MB; a bounded
        # cache that evicts as it goes only moves within its dict's resize steps.
        assert grown < 400_000, grown
        assert total(t.peek(), Request) == 100_000
    finally:
        t.shutdown(1)


def test_events(tracker: Tracker) -> None:
    tracker.event("signup", route="/join/<plan>", plan="Pro", trial=True, seats=3)
    tracker.event("signup", route="/join/<plan>", seats=3, plan="pro", trial="true")
    tracker.event("download")
    (event, other) = sorted(kinds(tracker.peek(), Event), key=lambda e: e.name)
    assert other == Event(hour=event.hour, name="signup", route="/join/{plan}",
                          props={"plan": "pro", "seats": "3", "trial": "true"}, n=2)  # fmt: skip
    assert event.name == "download"
    assert event.route == "(unmatched)"
    assert_valid_on_the_wire(tracker.peek())


@pytest.mark.parametrize(
    ("name", "props"),
    [
        ("Signup", {}),
        ("", {}),
        ("sign up", {}),
        ("x" * 65, {}),
        ("ok", {"email": "alice@example.com"}),
        ("ok", {"user": "12345678"}),
        ("ok", {"Bad-Key": "x"}),
        ("ok", {"v": "has space"}),
        ("ok", {"v": 1.5}),
        ("ok", {f"k{i}": "v" for i in range(17)}),
    ],
)
def test_invalid_events_are_dropped_and_counted(
    tracker: Tracker, name: str, props: dict[str, object]
) -> None:
    tracker.event(name, **props)  # type: ignore[arg-type]
    assert tracker.peek() == []
    assert tracker.stats().errors == 1


def test_disabled_tracker_records_nothing_and_starts_no_thread() -> None:
    threads_before = threading.active_count()
    t = Tracker(enabled=False)  # no endpoint or token needed
    for _ in range(10):
        t.record_request(page())
    t.event("signup")
    assert t.peek() == []
    assert t.stats() == headcount.TrackerStats()
    assert t.flush(1) is True
    assert threading.active_count() == threads_before
    assert t.shutdown(1) is True


def test_thread_starts_on_first_record_not_at_construction() -> None:
    t = Tracker("http://c.test", "t", transport=accepting_transport(), flush_interval=86400)
    try:

        def names() -> list[str]:
            return [th.name for th in threading.enumerate()]

        assert names().count("headcount-sender") == sum(
            1 for th in threading.enumerate() if th.name == "headcount-sender"
        )
        before = names().count("headcount-sender")
        t.record_request(page())
        assert names().count("headcount-sender") == before + 1
    finally:
        t.shutdown(1)


def test_recording_after_shutdown_is_ignored(tracker: Tracker) -> None:
    tracker.record_request(page())
    assert tracker.shutdown(1) is True
    tracker.record_request(page())
    assert tracker.peek() == []
    assert tracker.stats().recorded == 1


def test_concurrent_recording_loses_nothing(tracker: Tracker) -> None:
    def work() -> None:
        for _ in range(2000):
            tracker.record_request(page())

    threads = [threading.Thread(target=work) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert total(tracker.peek(), Request) == 16_000
    assert tracker.stats().recorded == 16_000


def test_hourly_schedule_is_the_default_and_holds_counts_until_flush() -> None:
    # No send_schedule given: by default the collector learns only the hour of a count.
    t = Tracker("http://c.test", "t", transport=accepting_transport(), flush_interval=86400)
    try:
        t.record_request(page())
        state = t._state
        # The periodic send would release nothing: this hour is still running.
        assert state.collect("due") == []
        assert total(t.peek(), Request) == 1  # still visible while held
        assert t.flush(2) is True
        assert t.peek() == []
        assert t.stats().sent == 1
    finally:
        t.shutdown(1)


def test_hourly_hold_releases_each_hour_at_a_random_moment_of_the_next() -> None:
    import random

    from headcount._schedule import HourlyHold

    hour = 1_700_000_000 // 3600 * 3600
    releases = []
    for seed in range(20):
        hold = HourlyHold(max_keys=100, settle=70, rng=random.Random(seed))
        hold.add({("bot", hour, "search"): 3, ("bot", hour + 3600, "search"): 1}, now=hour + 100)
        assert hold.take_due(now=hour + 3600 + 69) == {}
        release = next(t for t in range(hour + 3600, hour + 7201, 10) if hold.take_due(now=t) != {})
        releases.append(release)
        # The later hour is still held, and flush/shutdown can take it at once.
        assert hold.take_due(everything=True) == {("bot", hour + 3600, "search"): 1}
    assert all(hour + 3600 + 70 <= r <= hour + 7200 for r in releases)
    assert len(set(releases)) > 10  # spread over the hour, not a fixed offset


def _release_moment(hold: Any, start: float, key: Any) -> float:
    """When ``key`` leaves the hold, stepping the clock by 10 s from ``start``."""
    t = start
    while key not in hold.take_due(now=t):
        t += 10
        assert t < start + 3 * 3600
    return t


def test_a_visit_that_ends_after_its_hour_left_waits_for_the_next_hours_release() -> None:
    # A visit is counted under the hour it began, but only once it ends, often after
    # that hour's counts have left. Sent at once, its arrival would time the visitor's
    # departure; it waits for a random moment of the hour after the one it ended in.
    import random

    from headcount._schedule import HourlyHold

    hour = 1_700_000_000 // 3600 * 3600
    visit = ("visit", hour, "/pricing", ">=30m", "5-9")
    ends, arrivals = [], []
    for seed in range(40):
        rng = random.Random(seed)
        hold = HourlyHold(max_keys=100, settle=70, rng=random.Random(seed))
        hold.add({("bot", hour, "search"): 1}, now=hour + 3000)
        # The visit's own hour has left by the time it ends (sometime in the next hour).
        assert hold.take_due(now=hour + 7200) == {("bot", hour, "search"): 1}
        ended = hour + 7200 + rng.uniform(0, 3599)
        hold.add({visit: 1}, now=ended)
        arrival = _release_moment(hold, ended, visit)
        ends.append(ended)
        arrivals.append(arrival)
    assert all(hour + 3 * 3600 + 70 <= a <= hour + 4 * 3600 + 10 for a in arrivals)
    # The arrival says nothing about when in its hour the visit ended.
    early = [a for e, a in zip(ends, arrivals, strict=True) if e < hour + 7200 + 1800]
    late = [a for e, a in zip(ends, arrivals, strict=True) if e >= hour + 7200 + 1800]
    assert early
    assert late
    assert abs(sum(early) / len(early) - sum(late) / len(late)) < 900


def test_which_batch_carries_a_late_visit_never_depends_on_its_hours_moment() -> None:
    # A review: a visit of hour H that ended in hour H+1 rode in H's batch if it ended
    # before that batch's random moment and in the next one if after, so the batch that
    # carried it told the operator it ended in the last minutes of the hour.
    import random

    from headcount._schedule import HourlyHold

    hour = 1_700_000_000 // 3600 * 3600
    visit = ("visit", hour, "/a", "1m-2m", "2-3")
    request = ("request", hour, "/a", "GET", "2xx", "<10ms")
    for seed in range(40):
        rng = random.Random(seed)
        hold = HourlyHold(max_keys=100, settle=70, rng=random.Random(seed))
        hold.add({request: 1}, now=hour + 1800)
        ended = hour + 3600 + 70 + rng.uniform(0, 3529)  # while H's window may be held
        hold.add({visit: 1}, now=ended)
        t = ended
        while request not in (batch := hold.take_due(now=t)):
            t += 10
        assert visit not in batch  # never rides with its own hour's window
        assert hour + 2 * 3600 + 70 <= _release_moment(hold, t, visit) <= hour + 3 * 3600 + 10


def test_a_request_of_an_hours_last_moments_leaves_with_its_own_hour() -> None:
    # Collected just after the hour ended (the sender's flush interval), a request still
    # joins its own hour's window: it must not stand out by arriving an hour later.
    import random

    from headcount._schedule import HourlyHold

    hour = 1_700_000_000 // 3600 * 3600
    for seed in range(20):
        hold = HourlyHold(max_keys=100, settle=76, rng=random.Random(seed))
        request = ("request", hour, "/", "GET", "2xx", "<10ms")
        hold.add({request: 1}, now=hour + 3600 + 66)
        arrival = _release_moment(hold, hour + 3600 + 66, request)
        assert hour + 3600 + 76 <= arrival <= hour + 7200 + 10


def test_a_late_count_and_its_hours_own_are_summed_when_both_leave_at_once() -> None:
    from headcount._schedule import HourlyHold

    hour = 1_700_000_000 // 3600 * 3600
    visit = ("visit", hour, "/", "<10s", "1")
    hold = HourlyHold(max_keys=100, settle=70)
    hold.add({visit: 2}, now=hour + 600)
    hold.add({visit: 3}, now=hour + 2 * 3600 + 5)  # the first window is still held
    hold.add({visit: 4}, now=hour + 3 * 3600 + 5)
    assert hold.snapshot() == {visit: 9}
    assert hold.take_due(everything=True) == {visit: 9}


def test_records_leave_in_an_order_that_says_nothing_of_the_order_of_requests() -> None:
    # Sent in the order keys were first counted, one hour's records on a quiet site
    # would retrace a visitor's path: arrived, opened a clinic page, signed in, booked.
    path = [
        page(route="/", referer="https://www.reddit.com/r/x"),
        page(route="/clinic/testing"),
        page(route="/login", method="POST", content_type=None),
        page(route="/appointments", method="POST", content_type=None),
    ]
    sent = []
    for order in (path, path[::-1], path[2:] + path[:2]):
        tracker = Tracker(
            "http://c.test", "t", transport=accepting_transport(), flush_interval=86400,
            clock=lambda: HOUR + 60, send_schedule="immediate",
        )  # fmt: skip
        try:
            for info in order:
                tracker.record_request(info)
            sent.append(tracker._state.collect("everything"))
            assert tracker.peek() == []
        finally:
            tracker.shutdown(1)
    assert sent[0] == sent[1] == sent[2]
    assert {r.route for r in kinds(sent[0], Request)} == {
        "/", "/clinic/testing", "/login", "/appointments"
    }  # fmt: skip


def test_hand_built_keys_put_each_value_where_the_registry_says(tracker: Tracker) -> None:
    # The hot path builds its count-table keys as tuples; the records are made from them
    # by the registry's order, so a value out of place shows up in the wrong field.
    tracker.record_request(
        page(
            referer="https://news.example.org/story",
            query_string="utm_source=mail&utm_medium=email&utm_campaign=launch",
            elapsed=0.3,
        )
    )
    tracker.record_request(
        page(method="POST", status=404, elapsed=2.0, content_type=None, route_from_app=True)
    )
    tracker.record_request(page(user_agent="Googlebot/2.1 (+http://www.google.com/bot.html)"))
    tracker.event("signup", route="/join", plan="pro")
    hour = HOUR  # the fixture's clock
    records = tracker.peek()
    assert kinds(records, Pageview) == [
        Pageview(
            hour=hour,
            route="/articles/{id}",
            referrer="example.org",
            entry=True,
            n=1,
            utm_source="mail",
            utm_medium="email",
            utm_campaign="launch",
        )
    ]
    assert Request(
        hour=hour, route="/articles/{id}", method="POST", status="4xx", latency="1s-2.5s", n=1
    ) in kinds(records, Request)
    assert kinds(records, Bot) == [Bot(hour=hour, category="search", n=1)]
    assert kinds(records, Event) == [
        Event(hour=hour, name="signup", route="/join", props={"plan": "pro"}, n=1)
    ]


def test_a_finished_visit_key_follows_the_registry() -> None:
    from headcount._table import to_records
    from headcount._visits._link import finished_visit
    from headcount.wire import Visit, duration_label, pages_label

    assert to_records([(finished_visit(7200, "/docs", 95.0, 3), 2)]) == [
        Visit(hour=7200, route="/docs", duration=duration_label(95.0, 3), pages=pages_label(3), n=2)
    ]
