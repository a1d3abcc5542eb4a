"""Hot-path cost: nanoseconds to record one request, Headcount vs. two baselines.

Run from the repository root: .venv/bin/python bench/hotpath.py [--rounds N] [--per-round N]

Baselines, measured in the same run and interleaved round by round so machine noise hits
all of them alike:
- prometheus_client: one Counter and one Histogram, both labelled route/method/status,
  i.e. what a metrics middleware does per request.
- posthog capture(): one event with the same properties, queued in memory. `send=False`
  starts no consumer thread and the host is an unused local port, so nothing is sent.

Headcount is measured on a log-like stream (``log_stream``: new and returning browsers,
the corpus's user agents, thousands of routes and referring sites, campaign links, bots;
built before timing and replayed once, in order, so caches miss as they would) and per
kind of request (an API call, an internal pageview, an external pageview with utm_*
parameters, a bot, a static asset), each with visits on (the default). prometheus_client
is measured on the same stream's route/method/status labels too. The stream's routes are
marked as the integrations mark a router's rules and a CMS's page paths (the app's own text,
whose coarsening the tracker remembers); the ", set_route" row replays its warm pageviews
as if the app's views had named every route, which is never taken on trust, and the
", visits off" row the same pageviews with visits off: what the visit link costs. Each figure is the
median over rounds of the mean ns/call within a round.

Visits: the same internal pageview with visits off, in memory (one returning browser, and
a stream of new browsers filling a 100,000-visit table), each against visits off. With
``--redis URL`` also the Redis store, whose cost is one round trip per pageview; it is
measured on fewer calls and reported against visits off from the same run.
"""

from __future__ import annotations

import argparse
import copy
import gc
import hashlib
import hmac
import random
import secrets
import statistics
import time
import uuid
from bisect import bisect_left
from collections.abc import Callable, Sequence
from itertools import accumulate
from pathlib import Path
from typing import Any

import httpx

import headcount
from _provenance import print_provenance
from headcount import RequestInfo
from headcount._visits._link import LINK_BYTES, AgentStates, link_material

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
# Paths and domains are invented: nothing here is a real visitor's request.
SITE = "shop.example"
CORPUS = Path(__file__).resolve().parents[1] / "tests" / "data" / "user_agents.tsv"
# Shares of the requests an app server sees on a server-rendered site whose assets are
# mostly served by a CDN or the proxy: a third pageviews, a sixth bots (as reported by
# CDN operators for ordinary sites), the rest API calls, assets, redirects and errors.
STREAM_SHARES = {"pageview": 34, "api": 26, "asset": 14, "bot": 16, "other": 10}
NEW_BROWSER = 0.3  # share of browser requests from a browser not seen before


def load_agents() -> tuple[list[str], list[str]]:
    """(browser user agents, bot user agents) from the labelled corpus."""
    browsers: list[str] = []
    bots: list[str] = []
    for line in CORPUS.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            label, _source, agent = line.split("\t")
            (browsers if label == "browser" else bots).append(agent)
    return browsers, bots


class Zipf:
    """Draws from ``items``, the k-th one with weight 1/k**exponent."""

    def __init__(self, items: list[str], exponent: float = 1.1) -> None:
        self.items = items
        self.cumulative = list(accumulate(1 / rank**exponent for rank in range(1, len(items) + 1)))

    def pick(self, rng: random.Random) -> str:
        return self.items[bisect_left(self.cumulative, rng.random() * self.cumulative[-1])]


class _Browser:
    __slots__ = ("address", "agent", "page")

    def __init__(self, address: str, agent: str, page: str) -> None:
        self.address = address
        self.agent = agent
        self.page = page


def log_stream(count: int, seed: int = 18) -> tuple[list[str], list[RequestInfo]]:
    """``count`` requests shaped like an access log's, in log order, and their kinds (keys
    of STREAM_SHARES; every "pageview" is a browser's HTML 200 GET).

    Browsers arrive new (a fresh address, a user agent drawn Zipf-like from the corpus's
    browsers, so common ones repeat) or come back (a recent browser more likely than an
    old one), and move between pages. 3,000 page routes (a CMS with one route per page,
    more than the route cache holds) drawn Zipf-like, 40 API routes; referrers from
    2,000 other sites (search engines most often), from the site itself, or none;
    campaign links with utm_* parameters; bots from the corpus's 2,100 bot user agents.
    """
    rng = random.Random(seed)
    browser_agents, bot_agents = load_agents()
    agents, bots = Zipf(browser_agents), Zipf(bot_agents, 0.8)
    pages = ["/", "/products/<slug>", "/cart", "/search", "/blog/<slug>", "/about"]
    pages += [f"/docs/section-{n // 40}/page-{n}/" for n in range(3000 - len(pages))]
    page = Zipf(pages, 1.0)
    api_routes = [f"/api/v1/resource-{n}/<int:id>" for n in range(40)]
    sites = [
        "www.google.com",
        "www.bing.com",
        "duckduckgo.com",
        "news.ycombinator.com",
        "t.co",
        "www.facebook.com",
        "l.instagram.com",
        "www.reddit.com",
    ]
    sites += [f"{prefix}blog-{n}.example.{tld}" for n, (prefix, tld) in enumerate(
        (rng.choice(("", "www.", "m.")), rng.choice(("com", "org", "net", "co.uk", "de")))
        for _ in range(2000 - len(sites)))]  # fmt: skip
    site = Zipf(sites)
    campaigns = [f"utm_source=news-{n % 7}&utm_medium=email&utm_campaign=spring-{n}"
                 for n in range(150)]  # fmt: skip
    campaigns += [f"utm_source=ads&utm_campaign=c{n}&gclid=x{n}" for n in range(50)]
    kinds = rng.choices(list(STREAM_SHARES), list(STREAM_SHARES.values()), k=count)
    seen: list[_Browser] = []
    stream: list[RequestInfo] = []

    def browser() -> _Browser:
        if not seen or rng.random() < NEW_BROWSER:
            n = len(seen) + 1
            address = (
                f"2001:db8:{n >> 16:x}:{n & 0xFFFF:x}::1" if n % 4 == 0
                else f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"
            )  # fmt: skip
            agent = agents.pick(rng)
            seen.append(_Browser(address, agent, ""))
            return seen[-1]
        return seen[max(0, len(seen) - 1 - int(rng.expovariate(1 / 200)))]

    for kind in kinds:
        elapsed = rng.lognormvariate(-3.5, 1.0)
        if kind == "bot":
            route = page.pick(rng)
            stream.append(RequestInfo(
                "GET", route, rng.choice((200, 200, 200, 404, 301)), elapsed, host=SITE,
                user_agent=bots.pick(rng), content_type="text/html",
                client_addr=f"192.0.2.{rng.randrange(256)}",
            ))  # fmt: skip
            continue
        who = browser()
        if kind == "pageview":
            route = page.pick(rng)
            roll = rng.random()
            query: str | None = None
            referer: str | None
            fetch_site: str | None
            if who.page and roll < 0.6:
                referer, fetch_site = f"https://{SITE}{who.page}", "same-origin"
            elif roll < 0.75:
                referer, fetch_site = None, "none"
            else:
                path = rng.choice(("", "search?q=x", "r/python/", "post/1"))
                referer = f"https://{site.pick(rng)}/{path}"
                fetch_site = "cross-site"
                if rng.random() < 0.3:
                    query = rng.choice(campaigns)
            if rng.random() < 0.1:
                fetch_site = None  # browsers without Fetch Metadata
            who.page = route.replace("<slug>", "x")
            stream.append(RequestInfo(
                "GET", route, 200, elapsed, host=SITE, referer=referer,
                sec_fetch_site=fetch_site, sec_fetch_dest="document" if fetch_site else None,
                query_string=query, user_agent=who.agent,
                content_type="text/html; charset=utf-8", client_addr=who.address,
            ))  # fmt: skip
        elif kind == "api":
            stream.append(RequestInfo(
                rng.choice(("GET", "GET", "POST", "PUT", "DELETE")), rng.choice(api_routes),
                rng.choice((200, 200, 200, 201, 204, 400, 401, 404, 500)), elapsed, host=SITE,
                referer=f"https://{SITE}/", sec_fetch_site="same-origin", sec_fetch_dest="empty",
                user_agent=who.agent, content_type="application/json", client_addr=who.address,
            ))  # fmt: skip
        elif kind == "asset":
            stream.append(RequestInfo(
                "GET", "/static/<path:filename>", rng.choice((200, 200, 304)), elapsed,
                host=SITE, referer=f"https://{SITE}/", sec_fetch_site="same-origin",
                sec_fetch_dest=rng.choice(("style", "script", "image", "font")),
                user_agent=who.agent, content_type="text/css", client_addr=who.address,
            ))  # fmt: skip
        else:  # redirects, not-found pages and unmatched paths
            status = rng.choice((301, 302, 404, 404))
            stream.append(RequestInfo(
                "GET", None if status == 404 else page.pick(rng), status,
                elapsed, host=SITE, sec_fetch_site="none", sec_fetch_dest="document",
                user_agent=who.agent, content_type="text/html", client_addr=who.address,
            ))  # fmt: skip
    for info in stream:
        # Router rules and a CMS's page paths, as the integrations mark them (an app's own
        # set_route is not: see named_by_the_app).
        info.route_from_app = True
    return kinds, stream


def named_by_the_app(stream: Sequence[RequestInfo]) -> list[RequestInfo]:
    """``stream`` with every route as if the app's views had named it with set_route,
    which the tracker never takes on trust: a route with an ``{id}`` in its coarsening is
    then worked out again on every request."""
    named = [copy.copy(info) for info in stream]
    for info in named:
        info.route_from_app = False
    return named


PROMETHEUS = "prometheus_client counter+histogram"
SET_ROUTE = ", set_route"
VISITS_OFF = ", visits off"


def new_tracker(**options: Any) -> headcount.Tracker:
    # The collector is an in-process mock: nothing leaves the machine, even at exit.
    accept = httpx.MockTransport(lambda request: httpx.Response(202, json={"accepted": 1}))
    return headcount.Tracker(
        "http://collector.invalid",
        "bench-token",
        flush_interval=86400,
        transport=accept,
        **options,
    )


def headcount_runner(kind: str, **options: Any) -> Callable[[int], None]:
    tracker = new_tracker(**options)
    info = REQUESTS[kind]

    def run(n: int) -> None:
        record = tracker.record_request
        for _ in range(n):
            record(info)

    return run


def replay(
    stream: list[RequestInfo],
    record: Callable[[RequestInfo], None],
    warm: Sequence[RequestInfo] = (),
    new_window: Callable[[], object] = lambda: None,
) -> Callable[[int], None]:
    """A runner that records the stream's next ``n`` requests: each one once, in order,
    after ``warm`` (recorded at once, untimed). ``new_window`` starts each call: a send."""
    for info in warm:
        record(info)
    new_window()
    position = 0

    def run(n: int) -> None:
        nonlocal position
        new_window()
        end = position + n
        for info in stream[position:end]:
            record(info)
        position = end

    return run


def headcount_replay(
    stream: list[RequestInfo], warm: Sequence[RequestInfo], **options: Any
) -> Callable[[int], None]:
    tracker = new_tracker(**options)
    # The sender swaps the count table out every flush_interval, an O(1) swap under the
    # table's lock; here once per round (2,000 requests by default, a minute of a busy
    # site). Without it a table that is never sent fills up, and every new key would take
    # the overflow path, which no real process does for long.
    return replay(stream, tracker.record_request, warm, tracker._state.table.swap)


def prometheus_stream_runner(
    stream: list[RequestInfo], warm: Sequence[RequestInfo]
) -> Callable[[int], None]:
    from prometheus_client import CollectorRegistry, Counter, Histogram

    registry = CollectorRegistry()
    labels = ["route", "method", "status"]
    requests = Counter("http_requests", "Requests", labels, registry=registry)
    latency = Histogram("http_request_duration_seconds", "Latency", labels, registry=registry)

    def record(info: RequestInfo) -> None:
        # What prometheus-flask-exporter does per request: labels from the matched rule.
        route, method, status = info.route or "unmatched", info.method, str(info.status)
        requests.labels(route, method, status).inc()
        latency.labels(route, method, status).observe(info.elapsed)

    return replay(stream, record, warm)


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
    tracker = new_tracker()
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
    parser.add_argument(
        "--warm", type=int, default=100_000, help="requests a warm process has already seen"
    )
    parser.add_argument("--redis", metavar="URL", help="also measure the Redis visit store")
    parser.add_argument("--only-visits", action="store_true", help="skip everything else")
    args = parser.parse_args()
    print_provenance()
    if not args.only_visits:
        compare_with_baselines(args)
    compare_visits(args)
    compare_link_hashes(args)


def compare_with_baselines(args: argparse.Namespace) -> None:
    calls = args.per_round * (args.rounds + 1)
    # Pageviews are a third of the stream: three times as long a stream gives as many
    # pageviews as the pageview-only runners replay. The log's first ``--warm`` requests
    # are what a process that has been up a while has already seen.
    kinds, log = log_stream(args.warm + calls * 3)
    pageviews = [info for kind, info in zip(kinds, log, strict=True) if kind == "pageview"]
    warm_pageviews = pageviews[: kinds[: args.warm].count("pageview")]
    share = kinds.count("pageview") / len(kinds)
    runners: dict[str, Callable[[int], None]] = {}
    cold: list[RequestInfo] = []
    for when, warm, warm_views in (
        ("cold", cold, cold),
        ("warm", log[: args.warm], warm_pageviews),
    ):
        views = pageviews[len(warm_views) :][:calls]
        runners[f"headcount, stream {when}"] = headcount_replay(log[len(warm) :], warm)
        runners[f"headcount, stream {when}, pageviews"] = headcount_replay(views, warm_views)
        runners[f"{PROMETHEUS}, stream {when}"] = prometheus_stream_runner(log[len(warm) :], warm)
        runners[f"{PROMETHEUS}, stream {when}, pageviews"] = prometheus_stream_runner(
            views, warm_views
        )
    runners[f"headcount, stream warm, pageviews{SET_ROUTE}"] = headcount_replay(
        named_by_the_app(views), named_by_the_app(warm_pageviews)
    )
    runners[f"headcount, stream warm, pageviews{VISITS_OFF}"] = headcount_replay(
        views, warm_pageviews, visits=False
    )
    runners.update({f"headcount {kind}": headcount_runner(kind) for kind in REQUESTS})
    runners[PROMETHEUS] = prometheus_runner()
    # Only the posthog run is capped in size: its queue keeps every event.
    runners["posthog capture()"] = posthog_runner(calls)
    medians = measure(runners, args.rounds, args.per_round)

    posthog = medians["posthog capture()"]
    print(
        f"log: {len(log)} requests, {share:.0%} pageviews, "
        f"{len({info.client_addr for info in log})} client addresses, "
        f"{len({info.user_agent for info in log})} user agents, "
        f"{len({info.route for info in log})} routes, "
        f"{len({info.referer for info in log})} referrers; "
        f"the warm rows start after its first {args.warm} requests"
    )
    print(f"median ns per recorded request ({args.rounds} rounds x {args.per_round} calls)")
    print("x prom: cost as a share of prometheus_client's on the same requests (goal: <= 0.50)")
    print(f"{'':52} {'ns':>8} {'prom ns':>8} {'x prom':>7} {'posthog/x':>10}")
    for name, ns in medians.items():
        # A stream's row against prometheus on the same stream, the rest against the
        # fixed request.
        kind = name.removeprefix("headcount").removesuffix(SET_ROUTE).removesuffix(VISITS_OFF)
        same = f"{PROMETHEUS}{kind}"
        prometheus = medians.get(same, medians[PROMETHEUS])
        print(f"{name:52} {ns:8.0f} {prometheus:8.0f} {ns / prometheus:7.2f} {posthog / ns:9.1f}x")


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


def link_hash_runners() -> dict[str, Callable[[int], None]]:
    """Keyed PRFs the standard library offers for the visit link, on one pageview's link
    material (a browser's address, user agent and host: 136 bytes); the first row is how
    the memory store makes it: the state after the user agent and host remembered per
    browser kind, then the address."""
    info = REQUESTS["pageview-internal"]
    address = info.client_addr or ""
    material = link_material(address, info.user_agent, info.host)
    secret = secrets.token_bytes(32)
    agents = AgentStates(secret)
    agents.state(info.user_agent, info.host)

    def remembered_state(n: int) -> None:
        for _ in range(n):
            state = agents.get((info.user_agent, info.host))
            if state is None:
                state = agents.state(info.user_agent, info.host)
            hasher = state.copy()
            hasher.update(address.encode())
            hasher.digest()

    keyed_b = hashlib.blake2b(key=secret, digest_size=LINK_BYTES)
    keyed_s = hashlib.blake2s(key=secret, digest_size=LINK_BYTES)

    def copy_of(keyed: hashlib.blake2b | hashlib.blake2s) -> Callable[[int], None]:
        def run(n: int) -> None:
            for _ in range(n):
                hasher = keyed.copy()
                hasher.update(material)
                hasher.digest()

        return run

    def keyed_per_call(n: int) -> None:
        for _ in range(n):
            hashlib.blake2b(material, key=secret, digest_size=LINK_BYTES).digest()

    def hmac_sha256(n: int) -> None:
        for _ in range(n):
            hmac.digest(secret, material, "sha256")

    def whole_material(n: int) -> None:
        for _ in range(n):
            hasher = keyed_b.copy()
            hasher.update(link_material(address, info.user_agent, info.host))
            hasher.digest()

    return {
        "blake2b, agent's state remembered (used)": remembered_state,
        "blake2b, material built per link (until 12-05)": whole_material,
        "blake2b, keyed once, copied": copy_of(keyed_b),
        "blake2b, keyed per call": keyed_per_call,
        "blake2s, keyed once, copied": copy_of(keyed_s),
        "hmac-sha256": hmac_sha256,
    }


def compare_link_hashes(args: argparse.Namespace) -> None:
    medians = measure(link_hash_runners(), args.rounds, args.per_round)
    used = medians["blake2b, agent's state remembered (used)"]
    print()
    print(f"visit link hash: median ns per link ({args.rounds} rounds x {args.per_round})")
    print(f"{'':46} {'ns':>8} {'x used':>7}")
    for name, ns in medians.items():
        print(f"{name:46} {ns:8.0f} {ns / used:7.2f}")


if __name__ == "__main__":
    main()
