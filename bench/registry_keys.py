"""What deriving keys and records from the registry (``wire.KINDS``) costs, against
functions written out by hand for each kind, measured in the same run.

Run from the repository root: .venv/bin/python bench/registry_keys.py [--rounds N]

Two comparisons, A/B-interleaved round by round (the order flips every round), medians of
the per-round mean reported as a ratio derived / hand-written:

1. Collector ingest: the storage key of each record of a realistic decoded batch
   (``tables.RECORD_KEYS``) vs. one direct function per kind, as ingest had before.
2. SDK flush: ``to_records`` over a send window's keys vs. one constructor call per kind.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable, Sequence

from _provenance import print_provenance
from headcount import wire
from headcount._table import Key, to_records
from headcount_collector.tables import RECORD_KEYS

HOUR = 1_764_000_000 // 3600 * 3600


def _props(props: dict[str, str]) -> str:
    return "{" + ",".join(f'"{k}":"{props[k]}"' for k in sorted(props)) + "}"


# The baseline: one direct function per kind.
def _pageview_key(r: wire.Pageview) -> tuple[str | int, ...]:
    return (
        r.route,
        r.referrer,
        r.utm_source or "",
        r.utm_medium or "",
        r.utm_campaign or "",
        1 if r.entry else 0,
    )


HAND_KEYS: dict[type, Callable[..., tuple[str | int, ...]]] = {
    wire.Pageview: _pageview_key,
    wire.Request: lambda r: (r.route, r.method, r.status, r.latency),
    wire.Event: lambda r: (r.name, r.route, _props(r.props)),
    wire.Bot: lambda r: (r.category,),
    wire.Visit: lambda r: (r.route, r.duration, r.pages),
}


def hand_records(counts: Sequence[tuple[Key, int]]) -> list[wire.Record]:
    out: list[wire.Record] = []
    for key, n in counts:
        kind = key[0]
        if kind == "request":
            _, hour, route, method, status, latency = key  # type: ignore[misc]
            out.append(
                wire.Request(
                    hour=hour, route=route, method=method, status=status, latency=latency, n=n
                )
            )
        elif kind == "pageview":
            _, hour, route, referrer, source, medium, campaign, entry = key  # type: ignore[misc]
            out.append(
                wire.Pageview(
                    hour=hour,
                    route=route,
                    referrer=referrer,
                    entry=entry,
                    n=n,
                    utm_source=source,
                    utm_medium=medium,
                    utm_campaign=campaign,
                )
            )
        elif kind == "event":
            _, hour, name, route, props = key  # type: ignore[misc]
            out.append(wire.Event(hour=hour, name=name, route=route, props=dict(props), n=n))  # type: ignore[arg-type]
        elif kind == "visit":
            _, hour, route, duration, pages = key  # type: ignore[misc]
            out.append(wire.Visit(hour=hour, route=route, duration=duration, pages=pages, n=n))  # type: ignore[arg-type]
        else:
            _, hour, category = key  # type: ignore[misc]
            out.append(wire.Bot(hour=hour, category=category, n=n))
    return out


def window(size: int, seed: int = 7) -> list[tuple[Key, int]]:
    """A send window's keys: mostly requests and pageviews, some bots, events, visits."""
    rng = random.Random(seed)
    routes = [f"/r{i}/{{id}}" for i in range(300)]
    keys: dict[Key, int] = {}
    while len(keys) < size:
        route = rng.choice(routes)
        roll = rng.random()
        key: Key
        if roll < 0.45:
            key = ("request", HOUR, route, "GET", "2xx", rng.choice(wire.LATENCY_LABELS[:6]))
        elif roll < 0.8:
            utm = rng.choice([None, "mail", "news"])
            referrer = rng.choice(["(direct)", "(internal)", "example.org", "google.com"])
            key = (
                "pageview",
                HOUR,
                route,
                referrer,
                utm,
                utm and "email",
                None,
                rng.random() < 0.5,
            )
        elif roll < 0.88:
            key = ("bot", HOUR, rng.choice(wire.BOT_CATEGORIES))
        elif roll < 0.94:
            key = ("event", HOUR, "signup", route, (("plan", rng.choice(["free", "pro"])),))
        else:
            key = (
                "visit",
                HOUR,
                route,
                rng.choice(wire.DURATION_LABELS),
                rng.choice(wire.PAGES_LABELS),
            )
        keys[key] = keys.get(key, 0) + 1
    return list(keys.items())


def measure(run: Callable[[], object], calls: int) -> float:
    start = time.perf_counter_ns()
    run()
    return (time.perf_counter_ns() - start) / calls


def compare(
    name: str, derived: Callable[[], object], hand: Callable[[], object], calls: int, rounds: int
) -> None:
    times: dict[str, list[float]] = {"derived": [], "hand": []}
    for round_index in range(rounds):
        order = [("derived", derived), ("hand", hand)]
        if round_index % 2:
            order.reverse()
        for label, run in order:
            times[label].append(measure(run, calls))
    derived_ns = statistics.median(times["derived"])
    hand_ns = statistics.median(times["hand"])
    print(
        f"{name:<34} derived {derived_ns:7.0f} ns  hand-written {hand_ns:7.0f} ns"
        f"  ratio {derived_ns / hand_ns:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    print_provenance()
    counts = window(2000)
    records = to_records(counts)
    assert hand_records(counts) == records  # the baseline computes the same thing
    assert [HAND_KEYS[type(r)](r) for r in records] == [RECORD_KEYS[type(r)][1](r) for r in records]

    def derived_keys() -> None:
        for record in records:
            RECORD_KEYS[type(record)][1](record)

    def hand_keys() -> None:
        for record in records:
            HAND_KEYS[type(record)](record)

    compare("ingest: storage key per record", derived_keys, hand_keys, len(records), args.rounds)
    compare(
        "flush: to_records per key",
        lambda: to_records(counts),
        lambda: hand_records(counts),
        len(counts),
        args.rounds,
    )


if __name__ == "__main__":
    main()
