"""What one request can change in released cells, measured through the SDK's own visit
linking, stays within what the privacy budget is divided by (``catalogue.Effect``).

Neighbouring datasets: a random stream of page loads from a few browsers, with and
without one of its requests. Each is turned into records the way the Tracker does it (a
request record, a pageview whose entry flag comes from the real ``MemoryVisits``, and
the finished visits it emits), then into the cells of every released marginal.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from headcount import Tracker
from headcount._visits import MemoryVisits
from headcount_collector.release.catalogue import MARGINALS, UNITS, Marginal
from headcount_collector.tables import TABLES

Cells = Counter[tuple[str, str, int, str, tuple[object, ...]]]


@dataclass(frozen=True)
class PageLoad:
    browser: int
    at: float
    route: str
    referrer: str


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def records(loads: Sequence[PageLoad], gap: float) -> list[tuple[str, int, tuple[object, ...]]]:
    """(kind, hour, dims in the table's column order), one per counted record."""
    settings = Tracker("http://c.test", "t", enabled=False, visit_gap=gap).settings
    clock = Clock()
    out: list[tuple[str, int, tuple[object, ...]]] = []

    def emit(finished: Sequence[tuple[object, ...]]) -> None:
        for _, hour, route, duration, pages in finished:
            out.append(("visit", int(hour), (route, duration, pages)))  # type: ignore[call-overload]

    visits = MemoryVisits(settings, emit, clock=clock)
    for load in loads:
        clock.now = load.at
        hour = int(load.at) // 3600 * 3600
        started = visits.record(f"198.51.100.{load.browser}", None, "Firefox", "a.test", load.route)
        entry = load.referrer != "(internal)" if started is None else bool(started)
        out.append(("request", hour, (load.route, "GET", "2xx", "10ms-25ms")))
        out.append(("pageview", hour, (load.route, load.referrer, "", "", "", int(entry))))
    clock.now = loads[-1].at + 10 * gap if loads else 0.0
    visits.sweep()
    return out


def cells(recs: Sequence[tuple[str, int, tuple[object, ...]]]) -> Cells:
    counted: Cells = Counter()
    for kind, hour, dims in recs:
        columns = dict(zip(TABLES[kind].dimensions, dims, strict=True))
        for marginal in MARGINALS[kind]:
            if any(columns[c] != v for c, v in marginal.where):
                continue
            key = tuple(columns[c] for c in marginal.dims)
            for res, bucket in (("h", hour), ("d", hour // 86400 * 86400)):
                counted[(kind, res, bucket, marginal.code, key)] += 1
    return counted


def random_stream(rng: random.Random, gap: float) -> list[PageLoad]:
    loads: list[PageLoad] = []
    for browser in range(rng.randint(1, 4)):
        at = rng.uniform(0, 3 * 3600)
        for _ in range(rng.randint(1, 6)):
            route = rng.choice(("/", "/docs", "/blog/{slug}", "/pricing"))
            referrer = (
                "(internal)" if rng.random() < 0.7 else rng.choice(("(direct)", "github.com"))
            )
            loads.append(PageLoad(browser, at, route, referrer))
            # Some steps stay inside the gap, some leave it, some only together.
            at += rng.choice((0.3, 0.6, 0.9, 1.5)) * gap
    return sorted(loads, key=lambda load: load.at)


@pytest.mark.parametrize("seed", range(300))
def test_one_request_changes_released_cells_no_more_than_the_budget_allows(seed: int) -> None:
    rng = random.Random(seed)
    gap = 1800.0
    loads = random_stream(rng, gap)
    unit = UNITS["request"]
    profile = unit.profiles[0]
    effects: dict[tuple[str, str], object] = {
        (kind, m.code): rule(m) for kind, rule in profile.items() for m in MARGINALS[kind]
    }
    full = cells(records(loads, gap))
    for index in range(len(loads)):
        neighbour = cells(records([*loads[:index], *loads[index + 1 :]], gap))
        keys = set(full) | set(neighbour)
        squared: Counter[tuple[str, str, str]] = Counter()
        for key in keys:
            kind, res, _, code, _ = key
            change = full[key] - neighbour[key]
            squared[(kind, res, code)] += change * change
            if neighbour[key] == 0 and full[key] > 0:
                assert full[key] <= unit.largest_new_cell(), key
        total = 0
        for (kind, _res, code), value in squared.items():
            effect = effects[(kind, code)]
            assert value <= effect.squared, (seed, index, kind, code, value)  # type: ignore[attr-defined]
            total += value
        assert total <= unit.load()


def test_the_marginals_are_the_ones_the_weights_describe() -> None:
    # A new marginal must come with its effect: the budget is divided by their sum.
    for kind, rule in UNITS["request"].profiles[0].items():
        for marginal in MARGINALS[kind]:
            assert isinstance(marginal, Marginal)
            effect = rule(marginal)
            assert effect.squared >= 1
            assert effect.new_cells >= 1
