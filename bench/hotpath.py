"""Hot-path cost: nanoseconds to record one request, Headcount vs. two baselines.

Run: .venv/bin/python bench/hotpath.py [--rounds N] [--per-round N]

Baselines, measured in the same run and interleaved round by round so machine noise hits
all of them alike:
- prometheus_client: one Counter and one Histogram, both labelled route/method/status,
  i.e. what a metrics middleware does per request.
- posthog capture(): one event with the same properties, queued in memory. `send=False`
  starts no consumer thread and the host is an unused local port, so nothing is sent.

Headcount is measured per kind of request (an API call, an internal pageview, an external
pageview with utm_* parameters, a bot) and on a realistic mix of them. Each figure is the
median over rounds of the mean ns/call within a round.

Visits: the same internal pageview with visits off, in memory (one returning browser, and
a stream of new browsers filling a 100,000-visit table), each against visits off. With
``--redis URL`` also the Redis store, whose cost is one round trip per pageview; it is
measured on fewer calls and reported against visits off from the same run.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
import uuid
from collections.abc import Callable

import httpx

import headcount
from _provenance import print_provenance
from headcount import RequestInfo

BROWSER = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
)
REQUESTS = {
    "api": RequestInfo(
        "POST", "/api/orders/<int:id>", 201, 0.031, host="shop.example",
        user_agent=BROWSER, content_type="application/json",
    ),
    "pageview-internal": RequestInfo(
        "GET", "/products/<slug>", 200, 0.045, host="shop.example",
        referer="https://shop.example/products/", sec_fetch_site="same-origin",
        sec_fetch_dest="document", user_agent=BROWSER, content_type="text/html; charset=utf-8",
        client_addr="203.0.113.7",
    ),
    "pageview-external-utm": RequestInfo(
        "GET", "/", 200, 0.012, host="shop.example",
        referer="https://www.google.com/search?q=shoes", sec_fetch_site="cross-site",
        sec_fetch_dest="document", query_string="utm_source=newsletter&utm_medium=email&ref=1",
        user_agent=BROWSER, content_type="text/html; charset=utf-8", client_addr="198.51.100.4",
    ),
    "bot": RequestInfo(
        "GET", "/products/<slug>", 200, 0.02, host="shop.example",
        user_agent="Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        content_type="text/html",
    ),
    "static-asset": RequestInfo(
        "GET", "/static/<path:filename>", 200, 0.002, host="shop.example",
        referer="https://shop.example/", sec_fetch_site="same-origin", sec_fetch_dest="style",
        user_agent=BROWSER, content_type="text/css",
    ),
}  # fmt: skip
# Rough shape of a server-rendered site's traffic: mostly assets and API calls.
MIX = (
    ["api"] * 4 + ["static-asset"] * 3 + ["pageview-internal"] * 2
    + ["pageview-external-utm"] + ["bot"]
)  # fmt: skip


def headcount_runner(kind: str, **options: object) -> Callable[[int], None]:
    # The collector is an in-process mock: nothing leaves the machine, even at exit.
    accept = httpx.MockTransport(lambda request: httpx.Response(202, json={"accepted": 1}))
    tracker = headcount.Tracker(
        "http://collector.invalid",
        "bench-token",
        flush_interval=86400,
        transport=accept,
        **options,  # type: ignore[arg-type]
    )
    infos = [REQUESTS[k] for k in MIX] if kind == "mix" else [REQUESTS[kind]]

    def run(n: int) -> None:
        record = tracker.record_request
        count = len(infos)
        for i in range(n):
            record(infos[i % count])

    return run


def new_browsers(count: int) -> list[RequestInfo]:
    """Internal pageviews from ``count`` different addresses: each one a new visit."""
    base = REQUESTS["pageview-internal"]
    return [
        RequestInfo(
            base.method, base.route, base.status, base.elapsed, host=base.host,
            referer=base.referer, sec_fetch_site=base.sec_fetch_site,
            sec_fetch_dest=base.sec_fetch_dest, user_agent=base.user_agent,
            content_type=base.content_type, client_addr=f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
        )
        for i in range(count)
    ]  # fmt: skip


def visit_runners(redis_url: str | None) -> dict[str, Callable[[int], None]]:
    runners = {
        "pageview visits=off": headcount_runner("pageview-internal", visits=False),
        "pageview visits=memory, returning": headcount_runner("pageview-internal"),
    }
    # More browsers than the table holds: the bound (closing the oldest) is exercised too.
    browsers = new_browsers(150_000)
    tracker = headcount.Tracker(
        "http://collector.invalid",
        "bench-token",
        flush_interval=86400,
        transport=httpx.MockTransport(lambda request: httpx.Response(202, json={})),
    )
    position = 0

    def run_new(n: int) -> None:
        nonlocal position
        record = tracker.record_request
        count = len(browsers)
        for _ in range(n):
            record(browsers[position % count])
            position += 1

    runners["pageview visits=memory, new browsers"] = run_new
    if redis_url:
        runners["pageview visits=redis, returning"] = headcount_runner(
            "pageview-internal",
            visits_store=redis_url,
            visits_redis_prefix=f"headcount-bench:{uuid.uuid4().hex}:",
            visits_redis_timeout=1.0,
            visits_secret="bench-visits-secret-0123456789abcdefghij",
        )
    return runners


def prometheus_runner() -> Callable[[int], None]:
    from prometheus_client import CollectorRegistry, Counter, Histogram

    registry = CollectorRegistry()
    labels = ["route", "method", "status"]
    requests = Counter("http_requests", "Requests", labels, registry=registry)
    latency = Histogram("http_request_duration_seconds", "Latency", labels, registry=registry)

    def run(n: int) -> None:
        for _ in range(n):
            requests.labels("/api/orders/{id}", "POST", "201").inc()
            latency.labels("/api/orders/{id}", "POST", "201").observe(0.031)

    return run


def posthog_runner(total_calls: int) -> Callable[[int], None]:
    from posthog import Posthog

    client = Posthog(
        "phc_bench",
        host="http://127.0.0.1:9",
        send=False,  # queue only: no consumer thread, no request
        max_queue_size=total_calls + 1,  # never measure the queue-full drop path
        flush_at=total_calls + 1,
        flush_interval=86400,
        disable_geoip=True,
        enable_exception_autocapture=False,
    )
    properties = {"route": "/api/orders/{id}", "method": "POST", "status": 201}

    def run(n: int) -> None:
        for _ in range(n):
            client.capture("request", distinct_id="anonymous", properties=properties)

    return run


def measure(
    runners: dict[str, Callable[[int], None]], rounds: int, per_round: int
) -> dict[str, float]:
    samples: dict[str, list[float]] = {name: [] for name in runners}
    for run in runners.values():
        run(per_round)  # warm caches
    gc.disable()
    try:
        for _ in range(rounds):
            for name, run in runners.items():
                start = time.perf_counter_ns()
                run(per_round)
                samples[name].append((time.perf_counter_ns() - start) / per_round)
    finally:
        gc.enable()
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--per-round", type=int, default=2000)
    parser.add_argument("--redis", metavar="URL", help="also measure the Redis visit store")
    parser.add_argument("--only-visits", action="store_true", help="skip everything else")
    args = parser.parse_args()
    print_provenance()
    if not args.only_visits:
        compare_with_baselines(args)
    compare_visits(args)


def compare_with_baselines(args: argparse.Namespace) -> None:
    runners: dict[str, Callable[[int], None]] = {
        f"headcount {kind}": headcount_runner(kind) for kind in [*REQUESTS, "mix"]
    }
    runners["prometheus_client counter+histogram"] = prometheus_runner()
    # Only the posthog run is capped in size: its queue keeps every event.
    runners["posthog capture()"] = posthog_runner(args.per_round * (args.rounds + 1))
    medians = measure(runners, args.rounds, args.per_round)

    prometheus = medians["prometheus_client counter+histogram"]
    posthog = medians["posthog capture()"]
    print(f"median ns per recorded request ({args.rounds} rounds x {args.per_round} calls)")
    print(f"{'':40} {'ns':>8} {'prometheus/x':>13} {'posthog/x':>10}")
    for name, ns in medians.items():
        print(f"{name:40} {ns:8.0f} {prometheus / ns:12.1f}x {posthog / ns:9.1f}x")


def compare_visits(args: argparse.Namespace) -> None:
    runners = visit_runners(args.redis)
    redis_name = "pageview visits=redis, returning"
    redis_run = runners.pop(redis_name, None)
    medians = measure(runners, args.rounds, args.per_round)
    if redis_run is not None:
        # A round trip per call: fewer calls, interleaved with visits off again.
        calls = max(50, args.per_round // 20)
        paired = {redis_name: redis_run, "visits off (paired)": runners["pageview visits=off"]}
        medians.update(measure(paired, max(5, args.rounds // 4), calls))
    off = medians["pageview visits=off"]
    print()
    print(f"visits: median ns per recorded pageview ({args.rounds} rounds x {args.per_round})")
    print(f"{'':40} {'ns':>10} {'x/visits off':>13} {'+ns':>9}")
    for name, ns in medians.items():
        print(f"{name:40} {ns:10.0f} {ns / off:12.2f}x {ns - off:9.0f}")


if __name__ == "__main__":
    main()
