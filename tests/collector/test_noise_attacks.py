"""Every attack of the privacy review, run 200 times against the real app.

Each trial plants a rare group (or not: a fair coin ``b`` decides), runs the attack with
an ordinary read token (and the write token where the attack pads), and lets the
attacker guess ``b``. With sealed noise, the rate of right guesses must stay within what
the site's stated guarantee allows: no one holding every released number can beat
``policy.best_guess_accuracy()`` (mu-Gaussian DP with mu = sqrt(2 rho), plus delta); the
slack covers 200 trials' sampling error. The same attack against a site that opted out
of noise succeeds every time, which is what shows each test can fail.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from headcount_collector.config import load_sites
from headcount_collector.release.policy import release_policy
from tests.collector.conftest import pageview
from tests.collector.noise_harness import (
    FIRST_DAY,
    NoisedCollector,
    binomial_slack,
    day_params,
    local_ts,
    noised_collector,
)

pytestmark = pytest.mark.timeout(240)

TRIALS = 200
QUIET_HOUR = 3
BUSY_HOURS = (9, 12, 15)

Plant = Callable[[date, int], list[dict[str, Any]]]
Guess = Callable[[NoisedCollector, date], int]


def _event(name: str, hour: int, n: int = 1, **props: str) -> dict[str, Any]:
    return {"kind": "event", "hour": hour, "name": name, "route": "/", "props": props, "n": n}


def _background(day: date) -> list[dict[str, Any]]:
    return [pageview(route="/", n=120, hour=local_ts(day, h)) for h in BUSY_HOURS]


def _run_attack(
    tmp_path: Path, plant: Plant, guess: Guess, *, noise: bool, trials: int = TRIALS
) -> float:
    with noised_collector(tmp_path, noise=noise) as collector:
        bits: list[int] = []
        days = [FIRST_DAY + timedelta(days=i) for i in range(trials)]
        for day in days:
            bit = secrets.randbelow(2)
            bits.append(bit)
            # Sent the same day, as the SDK would: nothing in it is late.
            collector.send(plant(day, bit), local_ts(day, 23))
        if noise:
            collector.seal_everything(local_ts(days[-1] + timedelta(days=3)))
        right = sum(guess(collector, day) == bit for day, bit in zip(days, bits, strict=True))
    return right / trials


def _bound() -> float:
    # The test sites leave epsilon and delta at their defaults (tests.conftest).
    return release_policy().best_guess_accuracy() + binomial_slack(TRIALS)


def _hourly_totals(collector: NoisedCollector, day: date, **extra: str) -> dict[str, int]:
    body = collector.stats(interval="hour", **day_params(day), **extra)
    return {row["time"][11:13]: row["count"] for row in body["totals"]}


def _total(collector: NoisedCollector, **params: str) -> int:
    totals = collector.stats(**params)["totals"]
    return int(sum(row["count"] for row in totals))


# --- 1. Two queries recover a suppressed hour ---------------------------------------


def _plant_rare_hour(day: date, bit: int) -> list[dict[str, Any]]:
    return [
        *_background(day),
        pageview(route="/rare", n=2 + bit, hour=local_ts(day, QUIET_HOUR)),
    ]


def _guess_day_minus_hours(collector: NoisedCollector, day: date) -> int:
    day_total = _total(collector, interval="day", **day_params(day))
    visible = sum(_hourly_totals(collector, day).values())
    return int(day_total - visible >= 2.5)


def _guess_shifted_window(collector: NoisedCollector, day: date) -> int:
    until = (day + timedelta(days=1)).isoformat()
    with_hour = _total(collector, interval="total", to=until, **{"from": f"{day}T03"})
    without = _total(collector, interval="total", to=until, **{"from": f"{day}T04"})
    return int(with_hour - without >= 2.5)


@pytest.mark.parametrize(
    "guess", [_guess_day_minus_hours, _guess_shifted_window], ids=["day-minus-hours", "shifted"]
)
def test_differencing_two_queries_learns_no_more_than_the_guarantee(
    tmp_path: Path, guess: Guess
) -> None:
    assert _run_attack(tmp_path / "exact", _plant_rare_hour, guess, noise=False, trials=40) == 1
    rate = _run_attack(tmp_path / "noise", _plant_rare_hour, guess, noise=True)
    assert rate <= _bound(), f"attack guessed right in {rate:.0%} of trials"


# --- 2. Rebuilding the hour x route table ----------------------------------------------


def _plant_rare_route(day: date, bit: int) -> list[dict[str, Any]]:
    # /rare is seen often enough over the day to be shown, but only twice or three
    # times in its quiet hour.
    return [
        *_plant_rare_hour(day, bit),
        *(pageview(route="/rare", n=10, hour=local_ts(day, h)) for h in BUSY_HOURS),
    ]


def _guess_hour_by_route_table(collector: NoisedCollector, day: date) -> int:
    by_day = collector.stats(interval="day", by="route", **day_params(day))["rows"]
    rare_day = sum(row["count"] for row in by_day if row["route"] == "/rare")
    by_hour = collector.stats(interval="hour", by="route", **day_params(day))["rows"]
    rare_visible = sum(row["count"] for row in by_hour if row["route"] == "/rare")
    return int(rare_day - rare_visible >= 2.5)


def test_rebuilding_the_hour_by_route_table_learns_no_more_than_the_guarantee(
    tmp_path: Path,
) -> None:
    plant, guess = _plant_rare_route, _guess_hour_by_route_table
    assert _run_attack(tmp_path / "exact", plant, guess, noise=False, trials=40) == 1
    rate = _run_attack(tmp_path / "noise", plant, guess, noise=True)
    assert rate <= _bound(), f"attack guessed right in {rate:.0%} of trials"


# --- 3. Filters recover a rare event property value and its hour -----------------------


def _plant_rare_property(day: date, bit: int) -> list[dict[str, Any]]:
    records = [_event("signup", local_ts(day, h), 100, plan="free") for h in BUSY_HOURS]
    if bit:
        records.append(_event("signup", local_ts(day, QUIET_HOUR), 1, plan="pro"))
    return records


def _guess_rare_property(collector: NoisedCollector, day: date) -> int:
    # All signups of the day minus the common value leaves the rare one.
    every = _total(collector, metric="events", interval="day", **day_params(day))
    free = _total(
        collector, metric="events", interval="day", filter="prop:plan:free", **day_params(day)
    )
    return int(every - free >= 0.5)


def test_filtering_for_a_rare_property_learns_no_more_than_the_guarantee(
    tmp_path: Path,
) -> None:
    plant, guess = _plant_rare_property, _guess_rare_property
    assert _run_attack(tmp_path / "exact", plant, guess, noise=False, trials=40) == 1
    rate = _run_attack(tmp_path / "noise", plant, guess, noise=True)
    sites = load_sites(tmp_path / "noise" / "sites.toml")
    site = sites.get("blog")
    assert site is not None
    assert rate <= site.policy.best_guess_accuracy() + binomial_slack(TRIALS)


# --- 4. One response pins hidden counts down -------------------------------------------


SINGLETON_REFERRERS = ("bbc.co.uk", "lemonde.fr", "spiegel.de", "nos.nl", "elpais.com")


def _plant_singleton_referrers(day: date, bit: int) -> list[dict[str, Any]]:
    hour = local_ts(day, QUIET_HOUR)
    return [
        *_background(day),
        *(pageview(referrer=domain, hour=hour) for domain in SINGLETON_REFERRERS[: 4 + bit]),
    ]


def _guess_from_one_response(collector: NoisedCollector, day: date) -> int:
    body = collector.stats(interval="hour", by="referrer", **day_params(day))
    quiet = [row for row in body["totals"] if row["time"][11:13] == f"{QUIET_HOUR:02d}"]
    withheld = body.get("withheld", 0)
    return int(bool(quiet) and (quiet[0]["count"] >= 4.5 or withheld >= 5))


def test_a_single_response_does_not_pin_hidden_counts(tmp_path: Path) -> None:
    plant, guess = _plant_singleton_referrers, _guess_from_one_response
    assert _run_attack(tmp_path / "exact", plant, guess, noise=False, trials=40) == 1
    rate = _run_attack(tmp_path / "noise", plant, guess, noise=True)
    assert rate <= _bound(), f"attack guessed right in {rate:.0%} of trials"
    # And the fields that used to carry true counts are gone from noised answers.
    with noised_collector(tmp_path / "fields", noise=True) as collector:
        body = collector.stats(interval="hour", by="referrer", **day_params(FIRST_DAY))
        assert "withheld" not in body
        assert "k" not in body
        assert body["privacy"]["mode"] == "sealed-noise"


# --- 5. Padding turns the threshold into a yes/no oracle --------------------------------


def _padding(noise: bool) -> int:
    # The attacker pads to one below what shows a cell: k - 1 without noise, and the
    # published threshold - 1 with it (its best choice: the victim alone tips it over).
    return release_policy().budgets["request"].threshold - 1 if noise else 4


def _plant_with_padding(noise: bool) -> Plant:
    def plant(day: date, bit: int) -> list[dict[str, Any]]:
        hour = local_ts(day, QUIET_HOUR)
        records = [*_background(day)]
        records.append(pageview(referrer="alice.github.io", n=_padding(noise), hour=hour))
        if bit:  # the victim's own click, through the live site
            records.append(pageview(referrer="alice.github.io", hour=hour))
        return records

    return plant


def _guess_from_presence(collector: NoisedCollector, day: date) -> int:
    rows = collector.stats(interval="hour", by="referrer", **day_params(day))["rows"]
    return int(
        any(
            row["referrer"] == "alice.github.io" and row["time"][11:13] == f"{QUIET_HOUR:02d}"
            for row in rows
        )
    )


def test_padding_to_the_threshold_learns_no_more_than_the_guarantee(tmp_path: Path) -> None:
    guess = _guess_from_presence
    exact = _run_attack(
        tmp_path / "exact", _plant_with_padding(False), guess, noise=False, trials=40
    )
    assert exact == 1
    rate = _run_attack(tmp_path / "noise", _plant_with_padding(True), guess, noise=True)
    assert rate <= _bound(), f"attack guessed right in {rate:.0%} of trials"
