"""Release promises of the README and docs/privacy.md, each pinned by a test that fails
when the promise is broken: noise drawn from the OS's randomness, a sealing watermark set
by the clock alone, the documented thresholds and noise, and an exact site saying so."""

from __future__ import annotations

import inspect
import math
import re
import secrets
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from headcount_collector.app import create_app
from headcount_collector.config import Settings, load_sites, parse_sites, token_digest
from headcount_collector.dashboard._periods import PRESETS
from headcount_collector.pending import PendingBatch
from headcount_collector.query import METRICS
from headcount_collector.release import sampler
from headcount_collector.release.catalogue import UNITS
from headcount_collector.release.policy import release_policy
from headcount_collector.release.sealing import MAX_STEPS_PER_CALL, NoisePool
from headcount_collector.stores import open_store
from tests._servers import CollectorProcess, start_collector
from tests.collector.conftest import auth, read_auth
from tests.collector.noise_harness import (
    BERLIN,
    FIRST_DAY,
    MovingClock,
    day_params,
    local_ts,
    noised_collector,
)
from tests.conftest import READ_TOKEN, WRITE_TOKEN, site_file_text
from tests.dashboard._data import week_of_records

# --- Noise comes from the OS (README "Privacy"; docs/privacy.md "Sampler") -------------


def _hours_of(day: date) -> list[int]:
    """The hours that start inside a local day of the blog's zone (23 or 25 across DST)."""
    return list(range(local_ts(day), local_ts(day + timedelta(days=1)), 3600))


def _database_with_a_day_of_traffic(path: Path, day: date) -> None:
    """A database whose counts were stored before any sealing (an upgraded one): the
    collector releases them from its first sealing pass on."""
    store = open_store(f"sqlite:///{path}")
    try:
        store.migrate()
        counts: dict[tuple[str, int, tuple[str | int, ...]], int] = {
            ("pageview", hour, ("/", "(direct)", "", "", "", 1)): 300 for hour in _hours_of(day)
        }
        batch = PendingBatch("blog", secrets.token_hex(16), counts, len(counts), zone=BERLIN)
        assert store.commit([batch], int(time.time())) == [True]
    finally:
        store.close()


def _hourly_totals(server: CollectorProcess, day: date) -> list[tuple[str, int]]:
    answer = httpx.get(
        f"{server.url}/v1/stats",
        params={"interval": "hour", **day_params(day)},
        headers=read_auth(),
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return [(row["time"], row["count"]) for row in answer.json()["totals"]]


@pytest.mark.slow
def test_two_independent_collectors_draw_different_noise_for_the_same_counts(
    tmp_path: Path,
) -> None:
    # Two real collectors, each its own process on its own copy of the same counts. Noise
    # from the OS differs between them; a seeded generator (per process or per pool)
    # would replay the same draws, and every released value would match.
    day = datetime.now(BERLIN).date() - timedelta(days=2)  # sealed, inside hourly_days
    hours = len(_hours_of(day))
    site_file = tmp_path / "sites.toml"
    site_file.write_text(site_file_text(noise=True), encoding="utf-8")
    servers: list[CollectorProcess] = []
    try:
        for name in ("first", "second"):
            directory = tmp_path / name
            directory.mkdir()
            _database_with_a_day_of_traffic(directory / "headcount.sqlite3", day)
            servers.append(start_collector(directory, site_file))
        released: list[list[tuple[str, int]]] = []
        for server in servers:

            def sealed(server: CollectorProcess = server) -> bool:
                # It seals its backlog as it starts; 300 an hour always clears the threshold.
                return len(_hourly_totals(server, day)) == hours

            server.wait_until(sealed)
            released.append(_hourly_totals(server, day))
    finally:
        for server in servers:
            server.stop()
    first, second = released
    assert [hour for hour, _ in first] == [hour for hour, _ in second]
    assert any(count != 300 for _, count in first)  # noised at all
    # Two draws of sd 7 coincide with probability about 4 %: most hours must differ.
    differing = sum(a != b for (_, a), (_, b) in zip(first, second, strict=True))
    assert differing >= hours // 2, (first, second)


def test_the_noise_pool_draws_through_secrets_and_fresh_pools_do_not_repeat() -> None:
    randbelow = inspect.signature(NoisePool).parameters["randbelow"].default
    assert randbelow is secrets.randbelow
    for function in (
        sampler.discrete_gaussian,
        sampler.discrete_laplace,
        sampler.bernoulli_exp,
        sampler.bernoulli,
    ):
        assert inspect.signature(function).parameters["randbelow"].default is secrets.randbelow
    variance = release_policy().budgets["request"].variance
    draws: list[list[int]] = []
    for pool in (NoisePool(), NoisePool()):
        pool.fill(variance, 64)
        draws.append([pool.draw(variance) for _ in range(64)])
    assert draws[0] != draws[1]


# --- The watermark during a backlog (docs/privacy.md "How numbers are released", 2.) --

BACKLOG_DAYS = MAX_STEPS_PER_CALL + 12


def _watermarks_while_catching_up(
    tmp_path: Path, hours_with_counts: list[int]
) -> list[tuple[dict[str, int], dict[str, str | None]]]:
    """Store the counts while sealing is stopped, then work the backlog off one sealing
    call at a time; after each call, the stored watermarks and what readers see."""
    with noised_collector(tmp_path) as collector:
        by_day: dict[int, list[dict[str, Any]]] = {}
        for hour in hours_with_counts:
            record = {
                "kind": "pageview",
                "hour": hour,
                "route": "/",
                "referrer": "(direct)",
                "entry": True,
                "n": 60,
            }
            by_day.setdefault(hour // 86400, []).append(record)
        for records in by_day.values():
            # Sent after the last of them ended: a collector that was down, not sealing.
            assert collector.send(records, max(r["hour"] for r in records) + 3600)["accepted"]
        collector.clock.now = local_ts(FIRST_DAY + timedelta(days=BACKLOG_DAYS))
        seen: list[tuple[dict[str, int], dict[str, str | None]]] = []
        behind = True
        while behind:
            behind = collector.client.app.state.seal_all()  # type: ignore[attr-defined]
            answer = collector.stats(interval="hour", **day_params(FIRST_DAY))
            seen.append((collector.store.seal_state("blog"), answer["sealed_until"]))
            assert len(seen) < 10
        return seen


def test_during_a_backlog_the_watermark_moves_by_the_clock_not_by_the_counts(
    tmp_path: Path,
) -> None:
    days = [FIRST_DAY + timedelta(days=offset) for offset in range(BACKLOG_DAYS)]
    dense = [hour for day in days for hour in _hours_of(day)]
    sparse = [local_ts(FIRST_DAY + timedelta(days=20), 10)]
    with_counts = _watermarks_while_catching_up(tmp_path / "dense", dense)
    with_few = _watermarks_while_catching_up(tmp_path / "sparse", sparse)
    with_none = _watermarks_while_catching_up(tmp_path / "empty", [])
    assert with_few == with_counts
    assert with_none == with_counts
    # A real backlog: the first call stopped at its step limit, on a local midnight.
    assert len(with_counts) > 1
    first_call, _ = with_counts[0]
    assert first_call["h"] == local_ts(FIRST_DAY + timedelta(days=MAX_STEPS_PER_CALL - 1))
    assert first_call["d"] == local_ts(FIRST_DAY + timedelta(days=MAX_STEPS_PER_CALL - 1))
    last_call, sealed_until = with_counts[-1]
    assert sealed_until["day"] == f"{days[-1]}T00:00:00+02:00"
    assert last_call["h"] == local_ts(FIRST_DAY + timedelta(days=BACKLOG_DAYS)) - 2 * 3600


# --- The documented numbers (README "Privacy"; docs/privacy.md 3. and "The noise") ----


def test_the_documented_thresholds_and_noise_hold_at_the_default_settings() -> None:
    # A site that sets nothing about its privacy: every parameter is the default.
    text = f"""
[[sites]]
id = "plain"
write_token_sha256 = "{token_digest(WRITE_TOKEN).hex()}"
read_token_sha256 = "{token_digest(READ_TOKEN).hex()}"
"""
    site = parse_sites(text, "sites.toml").get("plain")
    assert site is not None
    for policy in (site.policy, release_policy()):
        assert policy.noise
        assert (policy.epsilon, policy.delta) == (7.0, 1e-6)
        assert policy.budgets["request"].threshold == 42
        assert policy.budgets["event"].threshold == 15
        described = policy.describe()
        assert described["threshold"] == {"request": 42, "event": 15}
        assert described["noise_sd"] == {"request": 7.04, "event": 2.41}
        # "34 per resolution, 68 in all, at the defaults a noise standard deviation of 7.0"
        assert UNITS["request"].load() == 68
        sd = math.sqrt(float(policy.budgets["request"].variance))
        assert round(sd, 1) == 7.0
        # mu = sqrt(2 rho) ~ 1.17; the best guess is right with probability about 72 %.
        assert round(policy.mu, 2) == 1.17
        assert round(policy.best_guess_accuracy(), 2) == 0.72
    # k only ever raises a threshold: at the default k = 5 it is not what sets them.
    assert site.k == 5
    assert site.policy.budgets == release_policy(k=1).budgets


# --- A site with exact_counts says so (README "GET /v1/stats", "Dashboard") ----------


@pytest.fixture
def exact_site(tmp_path: Path) -> Iterator[TestClient]:
    """Both test sites opt out of noise (``site_file_text``'s default), with a week of
    traffic on the blog."""
    sites = tmp_path / "sites.toml"
    sites.write_text(site_file_text(), encoding="utf-8")
    clock = MovingClock(local_ts(FIRST_DAY + timedelta(days=3), 15))
    store = open_store(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    settings = Settings(config_path=str(sites), seal_interval=1e6, retention_interval=1e6)
    with TestClient(create_app(settings, store, load_sites(sites), clock=clock)) as client:
        body = {"batch_id": "e" * 32, "sender": "t", "sender_version": "1"}
        answer = client.post(
            "/v1/ingest", json={**body, "records": week_of_records(clock.now)}, headers=auth()
        )
        assert answer.status_code == 202, answer.text
        yield client
    store.close()


@pytest.mark.parametrize("metric", sorted(METRICS))
def test_every_json_answer_of_an_exact_site_carries_the_warning(
    exact_site: TestClient, metric: str
) -> None:
    # "prop" groups by one declared property: the blog's signup event declares "plan".
    dimensions = ["prop:plan" if d == "prop" else d for d in METRICS[metric][2]]
    asked: list[dict[str, str]] = [
        {"interval": "total"},
        {"interval": "day"},
        *({"interval": "hour", "by": dimension} for dimension in dimensions),
    ]
    for params in asked:
        params = {"metric": metric, "from": FIRST_DAY.isoformat(), **params}
        answer = exact_site.get("/v1/stats", params=params, headers=read_auth())
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["privacy"]["mode"] == "exact", params
        warning = body["privacy"]["warning"]
        assert isinstance(warning, str)
        assert "exact" in warning
        assert "reveal" in warning
        # The old per-response suppression, not the sealed release's fields.
        assert body["k"] == 5
        assert "withheld" in body
        assert "sealed_until" not in body
        csv = exact_site.get("/v1/stats", params={**params, "format": "csv"}, headers=read_auth())
        assert csv.headers["x-headcount-mode"] == "exact"
    pageviews = exact_site.get("/v1/stats", params={"interval": "total"}, headers=read_auth())
    assert pageviews.json()["totals"][0]["count"] > 0  # a real answer, not an empty one


def _dashboard_views(client: TestClient) -> list[str]:
    """Every period preset, with and without the comparison, a custom range, and every
    page of the blog the overview links to (route pages, "more" lists)."""
    views = [f"/dashboard/blog?period={preset}" for preset in PRESETS]
    views += [f"{view}&compare=1" for view in views]
    views.append(f"/dashboard/blog?period=custom&from={FIRST_DAY}&to={FIRST_DAY + timedelta(1)}")
    linked: set[str] = set()
    for view in list(views):
        page = client.get(view).text
        for href in re.findall(r'href="(/dashboard/blog[/?][^"]*)"', page):
            if not href.startswith("/dashboard/blog/csv"):
                linked.add(href.replace("&amp;", "&"))
    assert any(href.startswith("/dashboard/blog/route?") for href in linked)
    return views + sorted(linked)


def test_every_dashboard_view_of_an_exact_site_shows_the_exact_counts_banner(
    exact_site: TestClient,
) -> None:
    answer = exact_site.post(
        "/dashboard/sign-in", data={"token": READ_TOKEN}, follow_redirects=False
    )
    assert answer.status_code == 303
    views = _dashboard_views(exact_site)
    assert len(views) > 20
    for view in views:
        page = exact_site.get(view)
        assert page.status_code == 200, view
        assert "<strong>Exact counts:</strong>" in page.text, view
        assert "Sealed noise" not in page.text, view
