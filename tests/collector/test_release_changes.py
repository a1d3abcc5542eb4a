"""Two release promises of docs/privacy.md, each pinned by a test that fails when it is
broken: a seal's noise is all drawn before its transaction ("The noise and the
guarantee", Sampler), and what changing a site's parameters later does to what was
already released ("Changing the parameters")."""

from __future__ import annotations

import math
import re
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import date, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from headcount_collector.app import create_app
from headcount_collector.config import Settings, Site, load_sites
from headcount_collector.release.policy import ReleasePolicy, release_policy
from headcount_collector.release.sealing import NoisePool, seal_due, seal_history
from headcount_collector.stores import open_store
from tests.collector.conftest import auth, batch_body, pageview, read_auth
from tests.collector.noise_harness import (
    FIRST_DAY,
    MovingClock,
    NoisedCollector,
    day_params,
    local_ts,
    noised_collector,
)
from tests.collector.test_batch_ids import execute_on
from tests.conftest import READ_TOKEN, site_file_text
from tests.dashboard._data import week_of_records

# --- Noise is drawn before the seal's transaction (docs/privacy.md, "Sampler") --------


class _PoolThatSamplesOnlyWhilePreparing(NoisePool):
    """The collector's pool, with randomness that fails outside ``prepare``: a seal that
    samples inside its transaction (an empty or short pool) raises instead of sealing."""

    def __init__(self) -> None:
        self.preparing = False
        self.uniform_draws = 0
        self.spent = 0
        super().__init__(self._randbelow_while_preparing)

    def _randbelow_while_preparing(self, n: int) -> int:
        if not self.preparing:
            raise AssertionError("noise was sampled after the pool was prepared")
        self.uniform_draws += 1
        return secrets.randbelow(n)

    def prepare(self, policy: ReleasePolicy, rows: Mapping[str, int]) -> None:
        self.preparing = True
        try:
            super().prepare(policy, rows)
        finally:
            self.preparing = False

    def draw(self, variance: Fraction) -> int:
        self.spent += 1
        return super().draw(variance)


def _blog(collector: NoisedCollector) -> Site:
    site = collector.client.app.state.sites.get("blog")  # type: ignore[attr-defined]
    assert isinstance(site, Site)
    return site


def test_live_sealing_spends_only_noise_drawn_before_its_transaction(
    tmp_path: Path, store_url: str
) -> None:
    # Three days of every kind of record (pageviews, requests, visits, bots, events: both
    # noise budgets), sealed by the collector's own entry point with a pool whose
    # randomness works only inside prepare().
    now = local_ts(FIRST_DAY + timedelta(days=3), 15)
    with noised_collector(tmp_path, store_url=store_url) as collector:
        assert collector.send(week_of_records(now), now)["accepted"]
        pool = _PoolThatSamplesOnlyWhilePreparing()
        report = seal_due(
            collector.store, _blog(collector), local_ts(FIRST_DAY + timedelta(days=5)), pool
        )
        assert not report.behind
        assert report.steps > 0
        assert report.cells > 0
        # Every cell released took a draw from the pool, and the pool was filled before.
        assert pool.spent >= report.cells
        assert pool.uniform_draws > 0
        # Both noise budgets were spent: event cells were released as well.
        events = {"metric": "events", "interval": "day", "from": FIRST_DAY.isoformat()}
        assert collector.stats(**events)["totals"]


def test_an_imports_history_seal_spends_only_noise_drawn_before_its_transaction(
    tmp_path: Path, store_url: str
) -> None:
    with noised_collector(tmp_path, store_url=store_url) as collector:
        origin = collector.store.seal_origins("blog")["h"]
        # Three days of history before the site's origin, as the importer sends it.
        records = week_of_records(origin - 3600)
        response = collector.client.post(
            "/v1/import/ingest", content=batch_body(records), headers=auth()
        )
        assert response.status_code == 202, response.text
        pool = _PoolThatSamplesOnlyWhilePreparing()
        start = min(record["hour"] for record in records)
        released = seal_history(
            collector.store, _blog(collector), start, origin, collector.clock(), pool
        )
        assert released > 0
        assert pool.spent >= released
        assert pool.uniform_draws > 0


# --- Changing the parameters later (docs/privacy.md, "Changing the parameters") -------

LATER_EPSILON = 3.0
SECOND_DAY = FIRST_DAY + timedelta(days=3)


def _busy_day(day: date) -> list[dict[str, Any]]:
    """Pageviews on three routes, each hour far above the threshold at either epsilon."""
    return [
        pageview(route=route, n=n, hour=local_ts(day, hour))
        for hour in (9, 14)
        for route, n in (("/", 900), ("/docs", 600), ("/pricing", 400))
    ]


def _true_counts(records: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in records:
        counts[record["route"]] = counts.get(record["route"], 0) + record["n"]
    return counts


@contextmanager
def _restarted(
    tmp_path: Path, store_url: str, now: float, *, epsilon: float
) -> Iterator[NoisedCollector]:
    """The same collector started again on the same database, the blog's entry now
    setting ``epsilon``."""
    tmp_path.mkdir(parents=True)
    sites = tmp_path / "sites.toml"
    text = site_file_text(hourly_days=3660, keep_days=36600, noise=True)
    assert text.count("hourly_days = 3660\n") == 1  # only the blog's entry
    sites.write_text(
        text.replace("hourly_days = 3660\n", f"hourly_days = 3660\nepsilon = {epsilon}\n"),
        encoding="utf-8",
    )
    clock = MovingClock(now)
    store = open_store(store_url)
    settings = Settings(config_path=str(sites), seal_interval=1e6, retention_interval=1e6)
    app = create_app(settings, store, load_sites(sites), clock=clock)
    try:
        with TestClient(app) as client:
            yield NoisedCollector(client, clock, store, store_url, settings)
    finally:
        store.close()


def _error_of(variance: Fraction) -> float:
    return 1.96 * math.sqrt(float(variance))


def test_a_later_epsilon_applies_to_new_cells_and_sealed_cells_keep_their_noise(
    tmp_path: Path, store_url: str
) -> None:
    hourly = {"interval": "hour", "by": "route", **day_params(FIRST_DAY)}
    daily = {"interval": "day", "by": "route", **day_params(FIRST_DAY)}
    sealed_at = local_ts(FIRST_DAY + timedelta(days=2))
    with noised_collector(tmp_path / "before", store_url=store_url) as before:
        before.send(_busy_day(FIRST_DAY), local_ts(FIRST_DAY, 23))
        before.seal_everything(sealed_at)
        released = {"hourly": before.stats(**hourly), "daily": before.stats(**daily)}
    old_variance = release_policy().budgets["request"].variance
    for name, cells in (("hourly", 6), ("daily", 3)):
        answer = released[name]
        assert len(answer["rows"]) == cells, name
        assert answer["privacy"]["epsilon"] == 7
        for row in answer["rows"]:
            assert row["error"] == pytest.approx(_error_of(old_variance), abs=0.1)

    with _restarted(tmp_path / "after", store_url, sealed_at, epsilon=LATER_EPSILON) as after:
        assert _blog(after).policy.epsilon == LATER_EPSILON
        later = {"interval": "hour", "by": "route", **day_params(SECOND_DAY)}
        after.send(_busy_day(SECOND_DAY), local_ts(SECOND_DAY, 23))
        after.seal_everything(local_ts(SECOND_DAY + timedelta(days=2)))
        # The cells sealed before the change: the same values, with the same error bars.
        for name, params in (("hourly", hourly), ("daily", daily)):
            answer = after.stats(**params)
            assert answer["rows"] == released[name]["rows"], name
            assert answer["totals"] == released[name]["totals"], name
        # Cells sealed after it: drawn with the new epsilon's (larger) noise.
        new_variance = release_policy(epsilon=LATER_EPSILON).budgets["request"].variance
        assert new_variance > 2 * old_variance
        fresh = after.stats(**later)
        assert len(fresh["rows"]) == 6
        for row in fresh["rows"]:
            assert row["error"] == pytest.approx(_error_of(new_variance), abs=0.1)


LATER_DAY = FIRST_DAY + timedelta(days=5)


@contextmanager
def _epsilon_lowered(
    tmp_path: Path, store_url: str, visitor: bool = False
) -> Iterator[NoisedCollector]:
    """A busy FIRST_DAY sealed at epsilon 7; then the site restarted at LATER_EPSILON and a
    busy LATER_DAY sealed (with ``visitor``: one more pageview, at 03:00 two days on)."""
    with noised_collector(tmp_path / "before", store_url=store_url) as before:
        before.send(_busy_day(FIRST_DAY), local_ts(FIRST_DAY, 23))
        before.seal_everything(local_ts(FIRST_DAY + timedelta(days=2)))
        assert before.stats(interval="day", **day_params(FIRST_DAY))["privacy"] == (
            _blog(before).policy.describe()
        )  # nothing changed yet
    now = local_ts(FIRST_DAY + timedelta(days=2))
    with _restarted(tmp_path / "after", store_url, now, epsilon=LATER_EPSILON) as after:
        after.send(_busy_day(LATER_DAY), local_ts(LATER_DAY, 23))
        if visitor:
            lone = pageview(route="/", n=1, hour=local_ts(LATER_DAY + timedelta(days=2), 3))
            after.send([lone], local_ts(LATER_DAY + timedelta(days=2), 4))
        after.seal_everything(local_ts(LATER_DAY + timedelta(days=4)))
        yield after


def test_an_answer_states_the_weakest_parameters_its_cells_were_sealed_under(
    tmp_path: Path, store_url: str
) -> None:
    """Lowering epsilon promises more only for cells sealed from then on: an answer that
    covers older cells must still state the epsilon they were released with."""
    first, later = day_params(FIRST_DAY), day_params(LATER_DAY)
    both = {"from": first["from"], "to": later["to"]}
    with _epsilon_lowered(tmp_path, store_url) as after:
        old = after.stats(interval="hour", by="route", **first)["privacy"]
        assert (old["epsilon"], old["delta"]) == (7.0, 1e-6)
        ((params),) = old["sealed_under"]
        assert (params["epsilon"], params["delta"]) == (7.0, 1e-6)
        assert params["sealed_from"] <= first["from"] < params["sealed_until"]
        assert "parameters changed" in old["parameters_note"]
        # Only cells sealed under the new epsilon: it alone is stated.
        new = after.stats(interval="day", **later)["privacy"]
        assert new == _blog(after).policy.describe()
        assert new["epsilon"] == LATER_EPSILON
        spanning = after.stats(interval="day", **both)["privacy"]
        assert spanning["epsilon"] == 7.0
        assert sorted(p["epsilon"] for p in spanning["sealed_under"]) == [LATER_EPSILON, 7.0]
        # A CSV answer carries the same statement in its headers.
        for params_, epsilon in ((both, "7"), (later, "3")):
            answer = after.client.get(
                "/v1/stats",
                params={"interval": "day", "format": "csv", **params_},
                headers=read_auth(),
            )
            assert answer.status_code == 200
            assert answer.headers["x-headcount-epsilon"] == epsilon
            assert answer.headers["x-headcount-delta"] == "1e-06"
        # So do the site's declaration and its privacy page, over all it released.
        declared = after.client.get("/v1/schema", headers=read_auth()).json()["site"]["privacy"]
        assert declared["epsilon"] == 7.0
        assert len(declared["sealed_under"]) == 2
        page = _page_text(after)
        assert "The parameters changed." in page
        assert "(7, 1e-06) from" in page
        assert "(3, 1e-06) from" in page
        # A dashboard page comparing with the earlier period states the weakest of all
        # its answers, not only its own period's.
        signed = after.client.post(
            "/dashboard/sign-in",
            data={"token": READ_TOKEN},
            headers={"sec-fetch-site": "same-origin"},
            follow_redirects=False,
        )
        assert signed.status_code == 303, signed.text
        # One day sealed under epsilon 3 only; the period it is compared with is the
        # same weekday a week before: FIRST_DAY, sealed under 7.
        week_on = (FIRST_DAY + timedelta(days=7)).isoformat()
        period = {"period": "custom", "from": week_on, "to": week_on}
        alone = after.client.get("/dashboard/blog", params=period).text
        assert "ε = 3.0" in alone
        assert "Parameters changed" not in alone
        compared = after.client.get("/dashboard/blog", params={**period, "compare": "1"}).text
        assert "ε = 7.0, δ = 1e-06" in compared
        assert "Parameters changed" in compared


def test_the_parameters_recorded_never_date_a_visit(tmp_path: Path) -> None:
    """What is recorded about the parameters is the time sealed under them, never which
    hours held counts: one more visitor, alone in an hour, changes no statement."""
    stated = []
    for visitor in (False, True):
        url = f"sqlite:///{tmp_path / f'visitor-{visitor}.sqlite3'}"
        with _epsilon_lowered(tmp_path / f"visitor-{visitor}", url, visitor) as after:
            everything = {
                "from": FIRST_DAY.isoformat(),
                "to": (LATER_DAY + timedelta(days=3)).isoformat(),
            }
            answers = [
                after.stats(interval="day", **everything)["privacy"],
                after.stats(interval="hour", **day_params(LATER_DAY + timedelta(days=2)))[
                    "privacy"
                ],
                after.client.get("/v1/schema", headers=read_auth()).json()["site"]["privacy"],
            ]
            stated.append(answers)
    assert stated[0] == stated[1]


def test_an_upgraded_database_says_which_parameters_it_did_not_record(
    tmp_path: Path, store_url: str
) -> None:
    """Cells sealed before schema version 9 have no parameters on record: an answer over
    them says so rather than vouching for today's."""
    with noised_collector(tmp_path / "v8", store_url=store_url) as before:
        before.send(_busy_day(FIRST_DAY), local_ts(FIRST_DAY, 23))
        before.seal_everything(local_ts(FIRST_DAY + timedelta(days=2)))
    # The database as version 8 left it: no table of parameters.
    execute = execute_on(store_url)
    execute("DROP TABLE hc_seal_params", ())
    execute("UPDATE hc_meta SET value = '8' WHERE key = 'schema_version'", ())
    now = local_ts(FIRST_DAY + timedelta(days=2))
    with _restarted(tmp_path / "v9", store_url, now, epsilon=7.0) as upgraded:
        answer = upgraded.stats(interval="day", by="route", **day_params(FIRST_DAY))
        privacy = answer["privacy"]
        assert privacy["epsilon"] == 7.0
        assert [p["epsilon"] for p in privacy["sealed_under"]] == [None]
        assert "schema version 9" in privacy["parameters_note"]
        assert len(answer["rows"]) == 3  # the cells themselves are unchanged


def _page_text(collector: NoisedCollector) -> str:
    response = collector.client.get("/privacy/blog")
    assert response.status_code == 200
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.text))


def test_switching_to_exact_counts_later_releases_the_sealed_history_exactly_and_says_so(
    tmp_path: Path, store_url: str
) -> None:
    records = _busy_day(FIRST_DAY)
    truth = _true_counts(records)
    total = {"interval": "total", "by": "route", **day_params(FIRST_DAY)}
    sealed_at = local_ts(FIRST_DAY + timedelta(days=2))
    with noised_collector(tmp_path / "noised", store_url=store_url) as noised:
        noised.send(records, local_ts(FIRST_DAY, 23))
        noised.seal_everything(sealed_at)
        answer = noised.stats(**total)
        assert answer["privacy"]["mode"] == "sealed-noise"
        assert {row["route"] for row in answer["rows"]} == set(truth)
        page = _page_text(noised)
        assert "differential privacy" in page
        assert "its numbers are exact" not in page

    with noised_collector(tmp_path / "exact", noise=False, store_url=store_url) as exact:
        exact.clock.now = sealed_at
        # The day sealed with noise is now answered from its true counts, by the hour too.
        answer = exact.stats(**total)
        assert answer["privacy"]["mode"] == "exact"
        assert {row["route"]: row["count"] for row in answer["rows"]} == truth
        hourly = exact.stats(interval="hour", **day_params(FIRST_DAY))
        assert [(row["time"][11:13], row["count"]) for row in hourly["totals"]] == [
            ("09", sum(truth.values()) // 2),
            ("14", sum(truth.values()) // 2),
        ]
        assert all("error" not in row for row in answer["rows"])
        # The site's privacy page says so from then on, and no longer states the guarantee.
        page = _page_text(exact)
        assert "This site has opted out of noise: its numbers are exact." in page
        assert "differential privacy" not in page
