"""The sealed-noise release model: what a reader of a noised site can and cannot see."""

from __future__ import annotations

import math
import sys
from collections import Counter
from datetime import timedelta
from fractions import Fraction
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from headcount_collector.release import sampler
from headcount_collector.release.policy import release_policy, rho_for
from tests.collector.conftest import pageview
from tests.collector.noise_harness import (
    FIRST_DAY,
    NoisedCollector,
    day_params,
    local_ts,
    noised_collector,
)

DAY_END = local_ts(FIRST_DAY, 23)


@pytest.fixture
def noised(tmp_path: Path, store_url: str) -> Any:
    with noised_collector(tmp_path, store_url=store_url) as collector:
        yield collector


def _load_day(collector: NoisedCollector) -> None:
    records = [
        pageview(route="/", n=200, hour=local_ts(FIRST_DAY, 9)),
        pageview(route="/docs", n=80, hour=local_ts(FIRST_DAY, 9), referrer="github.com"),
        pageview(route="/", n=150, hour=local_ts(FIRST_DAY, 14)),
        pageview(route="/lonely", n=1, hour=local_ts(FIRST_DAY, 14), referrer="alice.github.io"),
    ]
    assert collector.send(records, DAY_END) == {"accepted": 4}


def test_nothing_is_released_before_its_hour_is_sealed(noised: NoisedCollector) -> None:
    _load_day(noised)
    body = noised.stats(interval="hour", **day_params(FIRST_DAY))
    assert body["rows"] == []
    assert body["totals"] == []
    # 14:00 is sealed at 17:00 (hour end + 2 h grace); 9:00 long before.
    noised.seal_everything(local_ts(FIRST_DAY, 16) + 3599)
    hours = {
        row["time"][11:13]
        for row in noised.stats(interval="hour", **day_params(FIRST_DAY))["totals"]
    }
    assert hours == {"09"}
    noised.seal_everything(local_ts(FIRST_DAY, 17))
    hours = {
        row["time"][11:13]
        for row in noised.stats(interval="hour", **day_params(FIRST_DAY))["totals"]
    }
    assert hours == {"09", "14"}


def test_released_numbers_are_noisy_sealed_and_identical_on_every_ask(
    noised: NoisedCollector,
) -> None:
    _load_day(noised)
    noised.seal_everything(local_ts(FIRST_DAY + timedelta(days=2)))
    params = {"interval": "hour", "by": "route", **day_params(FIRST_DAY)}
    first = noised.stats(**params)
    assert all(noised.stats(**params) == first for _ in range(5))
    routes = {row["route"] for row in first["rows"]}
    assert "/lonely" not in routes  # one visitor's page does not appear at all
    assert {"/", "/docs"} <= routes
    policy = release_policy()
    threshold = policy.budgets["request"].threshold
    for row in first["rows"]:
        assert row["count"] >= threshold
        assert row["error"] == pytest.approx(
            1.96 * math.sqrt(float(policy.budgets["request"].variance)), abs=0.1
        )
    assert first["privacy"]["epsilon"] == policy.epsilon
    assert first["privacy"]["delta"] == policy.delta
    assert "request" in first["privacy"]["unit"]
    referrers = noised.stats(by="referrer", interval="total", **day_params(FIRST_DAY))["rows"]
    assert "alice.github.io" not in {row["referrer"] for row in referrers}


def test_a_late_record_never_changes_a_sealed_value(noised: NoisedCollector) -> None:
    _load_day(noised)
    noised.seal_everything(local_ts(FIRST_DAY, 20))
    hourly = {"interval": "hour", **day_params(FIRST_DAY)}
    before = noised.stats(**hourly)
    # 9:00 is sealed; its day is not. The answer says how much arrived late.
    answer = noised.send([pageview(route="/", n=40, hour=local_ts(FIRST_DAY, 9))], DAY_END)
    assert answer == {"accepted": 1, "late": 40}
    noised.seal_everything(local_ts(FIRST_DAY + timedelta(days=2)))
    assert noised.stats(**hourly) == {
        **before,
        "sealed_until": noised.stats(**hourly)["sealed_until"],
    }
    # The late counts are in the day, which was still open when they came.
    day_total = noised.stats(interval="day", **day_params(FIRST_DAY))["totals"][0]["count"]
    assert abs(day_total - 471) < 40


def test_long_ranges_use_daily_cells_and_partial_days_use_hours(noised: NoisedCollector) -> None:
    for offset in range(10):
        day = FIRST_DAY + timedelta(days=offset)
        noised.send([pageview(route="/", n=300, hour=local_ts(day, 10))], local_ts(day, 23))
    noised.seal_everything(local_ts(FIRST_DAY + timedelta(days=12)))
    variance = float(release_policy().budgets["request"].variance)
    ten_days = {"from": FIRST_DAY.isoformat(), "to": (FIRST_DAY + timedelta(days=10)).isoformat()}
    total = noised.stats(interval="total", **ten_days)["totals"][0]
    # Ten daily cells, not 240 hourly ones.
    assert total["error"] == pytest.approx(1.96 * math.sqrt(10 * variance), abs=0.1)
    assert abs(total["count"] - 3000) < 5 * math.sqrt(10 * variance)
    partial = noised.stats(interval="total", to=f"{FIRST_DAY}T12", **{"from": f"{FIRST_DAY}T08"})
    assert partial["totals"][0]["error"] == pytest.approx(1.96 * math.sqrt(variance), abs=0.1)


def test_csv_rows_carry_error_bars_and_the_guarantee(noised: NoisedCollector) -> None:
    _load_day(noised)
    noised.seal_everything(local_ts(FIRST_DAY + timedelta(days=2)))
    response = noised.client.get(
        "/v1/stats",
        params={"by": "route", "format": "csv", **day_params(FIRST_DAY)},
        headers={"Authorization": "Bearer hcr_test-read-token-blog-0001"},
    )
    assert response.status_code == 200
    lines = response.text.splitlines()
    assert lines[0] == "time,route,count,error"
    assert all(len(line.split(",")) == 4 for line in lines[1:])
    assert response.headers["x-headcount-mode"] == "sealed-noise"
    assert response.headers["x-headcount-epsilon"] == "7"
    assert "x-headcount-withheld" not in response.headers


def test_too_many_filters_are_a_clear_400(noised: NoisedCollector) -> None:
    response = noised.client.get(
        "/v1/stats",
        params=[("filter", "route:/")] * 9,
        headers={"Authorization": "Bearer hcr_test-read-token-blog-0001"},
    )
    assert response.status_code == 400
    assert response.json()["parameter"] == "filter"


def test_several_sealers_agree_on_every_value(tmp_path: Path, store_url: str) -> None:
    with noised_collector(tmp_path / "a", store_url=store_url) as first:
        _load_day(first)
        with noised_collector(tmp_path / "b", store_url=store_url) as second:
            first.clock.now = second.clock.now = local_ts(FIRST_DAY + timedelta(days=2))
            for _ in range(3):
                first.client.app.state.seal_all()  # type: ignore[attr-defined]
                second.client.app.state.seal_all()  # type: ignore[attr-defined]
            params = {"interval": "hour", "by": "route", **day_params(FIRST_DAY)}
            assert first.stats(**params) == second.stats(**params)
            assert first.stats(**params)["rows"]


# --- The sampler ---------------------------------------------------------------------


def _chi_square(observed: Counter[int], pmf: dict[int, float], draws: int) -> tuple[float, int]:
    """Chi-square statistic over bins with expected counts >= 5 (tails pooled)."""
    stat, bins, tail_obs, tail_exp = 0.0, 0, 0, 0.0
    for value, p in pmf.items():
        expected = p * draws
        if expected >= 5:
            stat += (observed[value] - expected) ** 2 / expected
            bins += 1
        else:
            tail_obs += observed[value]
            tail_exp += expected
    tail_obs += sum(n for value, n in observed.items() if value not in pmf)
    if tail_exp > 0:
        stat += (tail_obs - tail_exp) ** 2 / tail_exp
        bins += 1
    return stat, bins - 1


def _chi_square_critical(dof: int) -> float:
    # Wilson-Hilferty approximation of the 99.9th percentile.
    z = 3.09
    return dof * (1 - 2 / (9 * dof) + z * math.sqrt(2 / (9 * dof))) ** 3


@pytest.mark.parametrize("variance", [Fraction(2), Fraction(3481, 100)])
def test_discrete_gaussian_matches_its_probability_mass_function(variance: Fraction) -> None:
    draws = 20_000
    observed = Counter(sampler.discrete_gaussian(variance) for _ in range(draws))
    reach = int(12 * math.sqrt(variance)) + 2
    weights = {x: math.exp(-(x * x) / (2 * float(variance))) for x in range(-reach, reach + 1)}
    total = sum(weights.values())
    stat, dof = _chi_square(observed, {x: w / total for x, w in weights.items()}, draws)
    assert stat < _chi_square_critical(dof), (stat, dof)


@pytest.mark.parametrize("scale", [Fraction(1), Fraction(5, 2)])
def test_discrete_laplace_matches_its_probability_mass_function(scale: Fraction) -> None:
    draws = 20_000
    observed = Counter(sampler.discrete_laplace(scale) for _ in range(draws))
    reach = int(25 * scale) + 2
    weights = {x: math.exp(-abs(x) / float(scale)) for x in range(-reach, reach + 1)}
    total = sum(weights.values())
    stat, dof = _chi_square(observed, {x: w / total for x, w in weights.items()}, draws)
    assert stat < _chi_square_critical(dof), (stat, dof)


def test_the_sampling_path_holds_no_float_and_uses_only_the_given_randomness() -> None:
    floats: list[str] = []
    asked: list[int] = []

    def randbelow(n: int) -> int:
        asked.append(n)
        import secrets

        return secrets.randbelow(n)

    def watch(frame: FrameType, event: str, arg: object) -> Any:
        if frame.f_code.co_filename == sampler.__file__:
            for name, value in frame.f_locals.items():
                if isinstance(value, float):
                    floats.append(f"{frame.f_code.co_name}.{name}")
            return watch
        return None

    sys.settrace(watch)
    try:
        values = [sampler.discrete_gaussian(Fraction(3481, 100), randbelow) for _ in range(300)]
    finally:
        sys.settrace(None)
    assert floats == []
    assert all(isinstance(v, int) for v in values)
    assert asked
    assert all(isinstance(n, int) and n >= 1 for n in asked)


def test_bad_sampler_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="variance"):
        sampler.discrete_gaussian(Fraction(0))
    with pytest.raises(ValueError, match="scale"):
        sampler.discrete_laplace(Fraction(-1))
    with pytest.raises(ValueError, match="gamma"):
        sampler.bernoulli_exp(Fraction(-1, 2))


def test_the_budget_conversion_round_trips() -> None:
    rho = rho_for(6.0, 5e-7)
    assert rho + 2 * math.sqrt(rho * math.log(1 / 5e-7)) == pytest.approx(6.0)
    weaker, stronger = release_policy(epsilon=8.0), release_policy(epsilon=2.0)
    assert weaker.budgets["request"].variance < stronger.budgets["request"].variance
    assert weaker.budgets["request"].threshold < stronger.budgets["request"].threshold


# --- Upgrades and retention ------------------------------------------------------------


def test_a_database_from_before_sealed_noise_upgrades_in_place_and_releases_its_history(
    tmp_path: Path,
) -> None:
    import sqlite3

    from headcount_collector.stores.migrations import SQLITE, latest_version, migrations

    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    # Schema version 2, as the previous release created it, with counts and a batch id.
    conn.execute("CREATE TABLE hc_meta (key TEXT PRIMARY KEY, value TEXT)")
    for statements in migrations(SQLITE)[:2]:
        for statement in statements:
            conn.execute(statement)
    conn.execute("INSERT INTO hc_meta VALUES ('schema_version', '2')")
    hour = local_ts(FIRST_DAY, 10)
    day = local_ts(FIRST_DAY)
    for res, bucket in (("h", hour), ("d", day)):
        conn.execute(
            "INSERT INTO hc_pageview VALUES ('blog', ?, ?, '/', '(direct)', '', '', '', 1, 400)",
            (res, bucket),
        )
    conn.execute("INSERT INTO hc_batch VALUES ('blog', ?, ?)", ("ab" * 16, hour + 1234))
    conn.close()
    with noised_collector(tmp_path, store_url=f"sqlite:///{path}") as collector:
        collector.seal_everything(local_ts(FIRST_DAY + timedelta(days=2)))
        hourly = collector.stats(interval="hour", **day_params(FIRST_DAY))["totals"]
        daily = collector.stats(interval="day", **day_params(FIRST_DAY))["totals"]
    assert [row["time"][11:13] for row in hourly] == ["10"]
    assert abs(hourly[0]["count"] - 400) < 40
    assert abs(daily[0]["count"] - 400) < 40
    conn = sqlite3.connect(path)
    try:
        received = conn.execute("SELECT received FROM hc_batch").fetchall()
        version = conn.execute("SELECT value FROM hc_meta WHERE key = 'schema_version'").fetchone()[
            0
        ]
    finally:
        conn.close()
    assert received == [(hour,)]  # arrival kept to the hour only
    assert int(version) == latest_version()


def test_retention_drops_released_cells_with_their_counts(tmp_path: Path) -> None:
    from headcount_collector.config import load_sites

    with noised_collector(tmp_path) as collector:
        _load_day(collector)
        collector.seal_everything(local_ts(FIRST_DAY + timedelta(days=2)))
        assert collector.stats(interval="hour", **day_params(FIRST_DAY))["totals"]
        site = load_sites(tmp_path / "sites.toml").get("blog")
        assert site is not None
        # Past both hourly_days and keep_days: everything of that day goes.
        later = local_ts(FIRST_DAY + timedelta(days=site.keep_days + 5))
        collector.store.seal_state("blog")
        collector.store.apply_retention(site, later, 7 * 86400)
        assert collector.stats(interval="hour", **day_params(FIRST_DAY))["totals"] == []
        assert collector.stats(interval="day", **day_params(FIRST_DAY))["totals"] == []


def test_retention_keeps_true_counts_until_they_are_sealed(tmp_path: Path) -> None:
    import sqlite3

    from headcount_collector.config import load_sites

    with noised_collector(tmp_path) as collector:
        _load_day(collector)
        site = load_sites(tmp_path / "sites.toml").get("blog")
        assert site is not None
        # Past hourly_days: the hourly rows would be rolled up, but nothing is sealed yet,
        # so retention must leave them for sealing to release first.
        later = local_ts(FIRST_DAY + timedelta(days=site.hourly_days + 5))
        collector.store.apply_retention(site, later, 7 * 86400)
        collector.seal_everything(later)
        conn = sqlite3.connect(tmp_path / "noise.sqlite3")
        try:
            released_hours = conn.execute(
                "SELECT COUNT(*) FROM hc_rel_pageview WHERE site = 'blog' AND res = 'h'"
            ).fetchone()[0]
        finally:
            conn.close()
        assert released_hours > 0
        # And once sealed, the next retention run rolls them up as usual.
        collector.store.apply_retention(site, later, 7 * 86400)
        conn = sqlite3.connect(tmp_path / "noise.sqlite3")
        try:
            left = conn.execute(
                "SELECT COUNT(*) FROM hc_pageview WHERE site = 'blog' AND res = 'h'"
            ).fetchone()[0]
        finally:
            conn.close()
        assert left == 0


def test_a_csv_answer_without_a_breakdown_holds_the_totals(noised: NoisedCollector) -> None:
    """The dashboard's CSV link of a total asks exactly this: it must not be empty."""
    import csv
    import io

    from tests.collector.conftest import read_auth

    _load_day(noised)
    noised.seal_everything(local_ts(FIRST_DAY + timedelta(days=1), 12))
    params = {"interval": "hour", **day_params(FIRST_DAY)}
    totals = noised.stats(**params)["totals"]
    assert len(totals) == 2
    answer = noised.client.get("/v1/stats", params={**params, "format": "csv"}, headers=read_auth())
    assert answer.status_code == 200
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert [(row["time"], int(row["count"]), float(row["error"])) for row in rows] == [
        (total["time"], total["count"], total["error"]) for total in totals
    ]
